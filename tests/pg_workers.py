"""Worker functions for the PostgreSQL multi-process tests.

They live in a module of their own, at module level, so that a ``spawn``
child (a fresh interpreter, as on another host) can import them by name.
Every worker reports one result dict on ``results`` and never raises: an
error comes back as text, so the parent can assert that there were none.
"""

from __future__ import annotations

import os
import time
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from typing import Any

from checkpointdb import CheckpointStore

# Long enough that a child waiting at a test's gate never gives up first.
GATE_BUSY_TIMEOUT = 120.0


def create_in_session(
    url: str,
    session_id: str,
    count: int,
    start: Barrier,
    results: Queue[dict[str, Any]],
) -> None:
    """Open the store, wait for every sibling, then create ``count`` checkpoints.

    Reports the seqs this process was given, in order, and every error.
    """
    report: dict[str, Any] = {"pid": os.getpid(), "session": session_id, "seqs": [], "errors": []}
    try:
        with CheckpointStore(url, busy_timeout=GATE_BUSY_TIMEOUT) as store:
            manager = store.manager(session_id, max_checkpoints=None, compress_after=None)
            start.wait()
            began = time.perf_counter()
            for index in range(count):
                try:
                    checkpoint = manager.create("step", {"pid": os.getpid(), "index": index})
                except Exception as exc:
                    report["errors"].append(f"{type(exc).__name__}: {exc}")
                else:
                    report["seqs"].append(checkpoint.seq)
            report["seconds"] = time.perf_counter() - began
    except Exception as exc:
        report["errors"].append(f"{type(exc).__name__}: {exc}")
    results.put(report)


def open_store(url: str, start: Barrier, results: Queue[dict[str, Any]]) -> None:
    """Wait for every sibling, then open the store (migrating it if needed).

    Reports the schema revision the store is at once open, and any error.
    """
    report: dict[str, Any] = {"pid": os.getpid(), "revision": None, "errors": []}
    try:
        start.wait()
        with CheckpointStore(url, busy_timeout=GATE_BUSY_TIMEOUT) as store:
            report["revision"] = store.schema_revision()
    except Exception as exc:
        report["errors"].append(f"{type(exc).__name__}: {exc}")
    results.put(report)
