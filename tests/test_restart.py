"""A real restart: a child process writes and exits; a new process finds everything."""

from __future__ import annotations

import json
import subprocess
import sys

from checkpointdb import CheckpointStore

CHILD = r"""
import json, sys
from checkpointdb import CheckpointStore
url, start = sys.argv[1], int(sys.argv[2])
with CheckpointStore(url) as store:
    mgr = store.manager("agent:restart", compress_after=None)
    made = [mgr.create(f"step-{i % 3}", {"i": i, "ü": [i, {"k": None}]}, {"pid": i})
            for i in range(start, start + 5)]
print(json.dumps([cp.to_dict() for cp in made]))
"""


def _child(url: str, start: int) -> list[dict[str, object]]:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, url, str(start)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    written: list[dict[str, object]] = json.loads(result.stdout)
    return written


def test_checkpoints_survive_a_restart_and_the_sequence_continues(backend_url: str) -> None:
    first_run = _child(backend_url, 0)
    second_run = _child(backend_url, 5)
    assert [cp["id"] for cp in second_run] == [f"agent:restart:{i}" for i in range(6, 11)]
    with CheckpointStore(backend_url) as store:
        mgr = store.manager("agent:restart")
        stored = [cp.to_dict() for cp in mgr]
        assert stored == first_run + second_run
        latest = mgr.get_latest()
        assert latest is not None and latest.timestamp.tzinfo is not None
        assert mgr.create("after", {}).id == "agent:restart:11"
