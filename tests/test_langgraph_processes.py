"""Several processes run LangGraph graphs on one SQLite file at once.

Four processes each run a chat on a thread of their own, and two more run
the same thread (LangGraph lets them: each run continues from the newest
checkpoint it reads, so concurrent runs may branch). Nothing may fail and
every history must be whole: each checkpoint readable, each parent there.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import langgraph_graphs
import pytest

from checkpointdb.langgraph import CheckpointDBSaver

SCRIPT = Path(langgraph_graphs.__file__)
TURNS = 25
# A turn saves the input checkpoint and two loop steps.
CHECKPOINTS_PER_TURN = 3


def _history(saver: CheckpointDBSaver, thread: str) -> list[Any]:
    return list(saver.list({"configurable": {"thread_id": thread}}))


def _assert_whole(saver: CheckpointDBSaver, thread: str, max_roots: int = 1) -> list[Any]:
    history = _history(saver, thread)
    ids = {t.config["configurable"]["checkpoint_id"] for t in history}
    roots = [t for t in history if t.parent_config is None]
    assert 1 <= len(roots) <= max_roots
    for tup in history:
        if tup.parent_config is not None:
            assert tup.parent_config["configurable"]["checkpoint_id"] in ids
            assert saver.get_tuple(tup.parent_config) is not None
    return history


@pytest.mark.slow
def test_six_processes_on_one_file_keep_every_history_whole(tmp_path: Path) -> None:
    url = str(tmp_path / "graphs.db")
    # Create the schema first, so the workers do not all race to create it.
    with CheckpointDBSaver.from_conn_string(url):
        pass
    threads = [f"own-{n}" for n in range(4)] + ["shared", "shared"]
    workers = [
        subprocess.Popen(
            [sys.executable, str(SCRIPT), "chat", url, thread, str(TURNS)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for thread in threads
    ]
    for worker in workers:
        _out, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err

    with CheckpointDBSaver.from_conn_string(url) as saver:
        graph = langgraph_graphs.build_chat(saver)
        for thread in threads[:4]:
            history = _assert_whole(saver, thread)
            assert len(history) == TURNS * CHECKPOINTS_PER_TURN
            messages = graph.get_state({"configurable": {"thread_id": thread}}).values["messages"]
            assert [m.split(":")[0] for m in messages] == [
                text
                for turn in range(TURNS)
                for text in (f"question {turn}", f"answer {2 * turn + 1}")
            ]
        # Two first runs that start together both begin the thread.
        shared = _assert_whole(saver, "shared", max_roots=2)
        assert len(shared) == 2 * TURNS * CHECKPOINTS_PER_TURN
        assert sorted(s.id for s in saver.store.sessions()) == sorted(set(threads))
