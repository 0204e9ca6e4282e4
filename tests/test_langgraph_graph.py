"""A real LangGraph graph on the saver: killed mid-run, resumed, forked, copied.

The first run is a process of its own, SIGKILLed inside a node; this process
then resumes the thread from what the dead one saved.
"""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import langgraph_graphs
import pytest
from langgraph.types import Command

from checkpointdb.langgraph import CheckpointDBSaver

SCRIPT = Path(langgraph_graphs.__file__)


def _kill_inside_b(url: str, thread: str, marker: Path) -> None:
    worker = subprocess.Popen(
        [sys.executable, str(SCRIPT), "run", url, thread, str(marker)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            if worker.poll() is not None:
                pytest.fail(f"the graph process exited early: {worker.communicate()[1]}")
            assert time.monotonic() < deadline, "the graph process never reached node b"
            time.sleep(0.05)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    assert worker.returncode == -signal.SIGKILL


def _steps(graph: Any, config: dict[str, Any]) -> list[str]:
    return list(graph.get_state(config).values["steps"])


@pytest.mark.slow
def test_graph_killed_mid_run_resumes_forks_and_copies(backend_url: str, tmp_path: Path) -> None:
    thread = "killed"
    config: dict[str, Any] = {"configurable": {"thread_id": thread}}
    _kill_inside_b(backend_url, thread, tmp_path / "in-b")

    with CheckpointDBSaver.from_conn_string(backend_url) as saver:
        graph = langgraph_graphs.build(saver)
        # The dead process saved the input and node a's step; b is next.
        state = graph.get_state(config)
        assert state.values["steps"] == ["a"]
        assert state.next == ("b",)

        # Resume: b runs, ask interrupts; the answer finishes the run.
        graph.invoke(None, config)
        assert graph.get_state(config).next == ("ask",)
        assert graph.invoke(Command(resume="yes"), config)["steps"] == ["a", "b", "ask:yes", "c"]

        history = list(graph.get_state_history(config))
        assert [s.metadata["step"] for s in history] == [4, 3, 2, 1, 0, -1]
        assert [s.next for s in history] == [(), ("c",), ("ask",), ("b",), ("a",), ("__start__",)]
        for newer, older in itertools.pairwise(history):
            assert newer.parent_config == older.config

        # Fork from the state after a: rewrite it, and the fork replays from there.
        after_a = next(s for s in history if s.next == ("b",))
        fork = graph.update_state(after_a.config, {"steps": ["edited"]})
        graph.invoke(None, fork)
        # The fork's run is now the thread's newest: the answer goes to it.
        assert graph.invoke(Command(resume="no"), config)["steps"] == [
            "a",
            "edited",
            "b",
            "ask:no",
            "c",
        ]
        # The original branch is untouched.
        assert _steps(graph, history[0].config) == ["a", "b", "ask:yes", "c"]

        # A copy of the thread runs on its own.
        saver.copy_thread(thread, "copy")
        copy: dict[str, Any] = {"configurable": {"thread_id": "copy"}}
        assert _steps(graph, copy) == _steps(graph, config)
        graph.invoke({"steps": ["again"]}, copy)
        assert graph.invoke(Command(resume="ok"), copy)["steps"][-4:] == [
            "a",
            "b",
            "ask:ok",
            "c",
        ]
        assert _steps(graph, config) == ["a", "edited", "b", "ask:no", "c"]


def test_resume_answers_the_interrupt_in_a_new_saver(new_url: Callable[[], str]) -> None:
    url = new_url()
    config: dict[str, Any] = {"configurable": {"thread_id": "t"}}
    with CheckpointDBSaver.from_conn_string(url) as saver:
        graph = langgraph_graphs.build(saver)
        result = graph.invoke({"steps": []}, config)
        assert result["__interrupt__"][0].value == "continue?"
    with CheckpointDBSaver.from_conn_string(url) as saver:
        graph = langgraph_graphs.build(saver)
        assert graph.invoke(Command(resume="later"), config)["steps"] == [
            "a",
            "b",
            "ask:later",
            "c",
        ]
