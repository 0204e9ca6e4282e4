"""Code the robustness tests run in other processes.

``multiprocessing`` "spawn" children import this module by name (``tests/``
is on ``sys.path`` under pytest, and spawn children inherit ``sys.path``), so
every target here is a module-level function taking picklable arguments.

The crash tests run it as a script instead (``python tests/workers.py
crash-writer DB ACKS``), so that the writer is a plain process to SIGKILL.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import resource
import signal
import sqlite3
import sys
import time
from collections.abc import Sequence
from datetime import timedelta
from multiprocessing.synchronize import Barrier, Event
from queue import Queue
from typing import Any

from checkpointdb import CheckpointStore, StoreFullError

# The crash writer's session and retention policy: compaction runs every few
# creates, and the milestone names (never compacted) make the cap run too.
CRASH_SESSION = "crash"
CRASH_POLICY: dict[str, Any] = {"max_checkpoints": 40, "compress_after": 30, "keep_recent": 5}
_CYCLE = ("plan", "act", "observe", "reflect")

# Seconds a child waits on a barrier or event before giving up.
WAIT = 120.0


def name_for(seq: int) -> str:
    """The checkpoint name the crash writer gives its checkpoint ``seq``."""
    if seq % 10 == 0:
        return f"milestone-{seq}"
    return _CYCLE[seq % len(_CYCLE)]


def digest(data: Any) -> str:
    """A stable fingerprint of a JSON value."""
    text = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def surviving_seqs(
    names: Sequence[str],
    *,
    max_checkpoints: int | None,
    compress_after: int | None,
    keep_recent: int,
) -> list[int]:
    """The seqs the documented retention policy leaves after creating ``names`` in order.

    An independent model of the compaction rule, to compare a database against:
    after each create, if the live count exceeds ``compress_after``, keep the
    first, the newest ``keep_recent`` and the newest of each name among the
    rest; then, above ``max_checkpoints``, drop the oldest after the first.
    ``names[i]`` is the name of seq ``i + 1``.
    """
    live: list[int] = []
    for seq in range(1, len(names) + 1):
        live.append(seq)
        if compress_after is not None and len(live) > compress_after:
            recent = live[len(live) - keep_recent :] if keep_recent else []
            cutoff = recent[0] if recent else seq + 1
            newest_of_name = {names[s - 1]: s for s in live if s < cutoff}
            keep = {live[0], *recent, *newest_of_name.values()}
            live = [s for s in live if s in keep]
        if max_checkpoints is not None and len(live) > max_checkpoints:
            excess = len(live) - max_checkpoints
            live = [live[0], *live[1 + excess :]]
    return live


def crash_writer(path: str, ack_path: str) -> None:
    """Create checkpoints until killed; append "seq digest" to ``ack_path`` after each.

    Each acknowledgement is flushed and fsynced before the next create, so
    every line in the file is a create that had returned. Prints "ready" once
    the store is open.
    """
    rng = random.Random()
    with CheckpointStore(path) as store:
        manager = store.manager(CRASH_SESSION, **CRASH_POLICY)
        info = store.session(CRASH_SESSION)
        seq = 0 if info is None else info.last_seq
        with open(ack_path, "a", encoding="utf-8") as acks:
            print("ready", flush=True)
            while True:
                seq += 1
                data = {"seq": seq, "blob": rng.randbytes(rng.randrange(400)).hex()}
                checkpoint = manager.create(name_for(seq), data, {"pid": os.getpid()})
                if checkpoint.seq != seq:
                    sys.exit(f"expected seq {seq}, create returned {checkpoint.id}")
                acks.write(f"{seq} {digest(data)}\n")
                acks.flush()
                os.fsync(acks.fileno())


def create_checkpoints(
    path: str,
    session_id: str,
    count: int,
    worker: int,
    policy: dict[str, Any],
    barrier: Barrier,
    results: Queue[tuple[int, list[tuple[int, str]], list[str]]],
) -> None:
    """Open the store, wait for every worker, create ``count`` checkpoints.

    Puts ``(worker, [(seq, name), ...], [error, ...])`` on ``results``.
    """
    created: list[tuple[int, str]] = []
    errors: list[str] = []
    with CheckpointStore(path) as store:
        manager = store.manager(session_id, **policy)
        barrier.wait(WAIT)
        for index in range(count):
            name = f"w{worker}-{index % 3}"
            try:
                checkpoint = manager.create(name, {"worker": worker, "index": index})
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
            else:
                created.append((checkpoint.seq, name))
    results.put((worker, created, errors))


def append_until_stopped(
    path: str,
    session_id: str,
    worker: int,
    started: Event,
    stop: Event,
    results: Queue[tuple[int, int, list[str]]],
) -> None:
    """Create checkpoints until ``stop`` is set; puts ``(worker, created, errors)``."""
    created = 0
    errors: list[str] = []
    with CheckpointStore(path) as store:
        manager = store.manager(session_id, max_checkpoints=None, compress_after=None)
        started.set()
        while not stop.is_set():
            try:
                manager.create("append", {"worker": worker, "index": created})
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
            else:
                created += 1
    results.put((worker, created, errors))


def hold_write_lock(path: str, locked: Event, release: Event) -> None:
    """Take SQLite's write lock with a raw connection and keep it until ``release``."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        locked.set()
        release.wait(WAIT)
        connection.execute("COMMIT")
    finally:
        connection.close()


def open_store(
    path: str, session_id: str, barrier: Barrier, results: Queue[tuple[str, object]]
) -> None:
    """Open the store as soon as every opener is ready; report the session's count or the error."""
    barrier.wait(WAIT)
    try:
        with CheckpointStore(path) as store:
            outcome: tuple[str, object] = ("ok", len(store.manager(session_id)))
    except Exception as exc:
        outcome = ("error", f"{type(exc).__name__}: {exc}")
    results.put(outcome)


def fill_under_file_size_limit(path: str, limit: int, results: Queue[dict[str, Any]]) -> None:
    """Create checkpoints under RLIMIT_FSIZE until a write fails, then lift the limit.

    Reports the error, the session before and after the failure, and what
    the first create after the limit was lifted returned.
    """
    # Without this the kernel kills the process at the limit instead of failing the write.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    report: dict[str, Any] = {}
    with CheckpointStore(path) as store:
        manager = store.manager("full", max_checkpoints=None, compress_after=None)
        manager.create("before-limit", {"i": 0})
        _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
        try:
            for index in range(1, 100_000):
                info = store.session("full")
                report["before"] = None if info is None else (info.checkpoint_count, info.last_seq)
                manager.create("fill", {"i": index, "pad": "x" * 3000})
        except StoreFullError as exc:
            report["error"] = ("StoreFullError", str(exc))
        except Exception as exc:
            report["error"] = (type(exc).__name__, str(exc))
        info = store.session("full")
        report["after"] = None if info is None else (info.checkpoint_count, info.last_seq)
        resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
        report["resumed"] = manager.create("after-limit", {"ok": True}).seq
    results.put(report)


# The session the contention test's writers share, and its retention policy:
# their creates compact and cap it while the maintainer works on it too.
CONTENDED_SESSION = "hot"
CONTENDED_POLICY: dict[str, Any] = {"max_checkpoints": 40, "compress_after": 30, "keep_recent": 5}


def contended_writer(
    url: str, seconds: float, start: Barrier, results: Queue[dict[str, Any]]
) -> None:
    """Create checkpoints in the shared session for ``seconds``; report seqs and errors."""
    report: dict[str, Any] = {"role": "writer", "seqs": [], "errors": []}
    try:
        with CheckpointStore(url) as store:
            manager = store.manager(CONTENDED_SESSION, **CONTENDED_POLICY)
            start.wait(WAIT)
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                try:
                    created = manager.create("step", {"pid": os.getpid(), "pad": "x" * 200})
                except Exception as exc:
                    report["errors"].append(f"{type(exc).__name__}: {exc}")
                else:
                    report["seqs"].append(created.seq)
    except Exception as exc:
        report["errors"].append(f"{type(exc).__name__}: {exc}")
    results.put(report)


def maintainer(url: str, seconds: float, start: Barrier, results: Queue[dict[str, Any]]) -> None:
    """Loop over every maintenance write for ``seconds``, on the shared session and others."""
    report: dict[str, Any] = {"role": "maintainer", "rounds": 0, "errors": []}
    try:
        with CheckpointStore(url) as store:
            hot = store.manager(CONTENDED_SESSION)
            side = store.manager("side")
            start.wait(WAIT)
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                round_number = report["rounds"]
                try:
                    hot.compact(keep_recent=3)
                    store.expire(timedelta(milliseconds=300))
                    newest = hot.get_latest()
                    if newest is not None and hot.pin(newest.id):
                        # Pinned, it outlives every retention rule while it is copied.
                        hot.fork(newest.id, f"fork-{round_number}", history="lineage")
                        hot.unpin(newest.id)
                        store.delete_session(f"fork-{round_number}")
                    side.import_checkpoints(hot.export() if round_number % 5 == 0 else "[]")
                    side.clear()
                    gone = store.manager(f"gone-{round_number}")
                    gone.create("doomed", {"round": round_number})
                    store.delete_session(gone.session_id)
                    if round_number % 10 == 0:
                        store.vacuum()
                except Exception as exc:
                    report["errors"].append(f"{type(exc).__name__}: {exc}")
                report["rounds"] += 1
    except Exception as exc:
        report["errors"].append(f"{type(exc).__name__}: {exc}")
    results.put(report)


def main(argv: list[str]) -> None:
    """Script entry point: ``crash-writer DB ACKS``."""
    command, *args = argv
    if command == "crash-writer":
        crash_writer(*args)
    else:
        sys.exit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
