"""Async create against sync create, and many tasks at once, on SQLite.

Run ``python benchmarks/async_bench.py`` (about a minute; ``--rounds`` and
``--calls`` change the size); ``bench.py`` runs the same measurement for its
"Async create" section.

What is measured, each system on a fresh file in a scratch directory, at
``synchronous=NORMAL`` with compaction and the cap off (so every system only
appends the same ~1 KB JSON state):

* ``sync create``: ``CheckpointManager.create``, one call after another;
* ``async create``: ``await AsyncCheckpointManager.create``, one call after
  another on one event loop;
* ``LangGraph async put``: ``await AsyncSqliteSaver.aput`` (aiosqlite),
  building its checkpoint dict included, when ``langgraph-checkpoint-sqlite``
  is installed;
* ``50 tasks x 20 creates``: 50 tasks each awaiting 20 creates in one
  session of one async store, as creates per second of wall time;
* two ratios taken within each round: async over sync create latency, and
  the 50 tasks' throughput over one task's (the gain from running writes
  that wait together in one transaction).

Systems run in alternating rounds, so that drift in the machine hits them
alike. Each round gives a median per-call latency (and one throughput); the
figures are the median over the rounds, with the lowest and highest round.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from checkpointdb import AsyncCheckpointStore, CheckpointStore

try:
    from langgraph.checkpoint.base import create_checkpoint, empty_checkpoint
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    HAVE_LANGGRAPH = True
except ImportError:  # langgraph-checkpoint-sqlite (and aiosqlite) not installed
    HAVE_LANGGRAPH = False

SESSION = "bench"
TASKS = 50
CREATES_PER_TASK = 20
NO_RETENTION: dict[str, Any] = {"max_checkpoints": None, "compress_after": None}


def payload(step: int) -> dict[str, Any]:
    """About 1 KB of agent-like JSON state."""
    return {
        "step": step,
        "messages": [{"role": "user", "content": f"message {step}-{i} " * 6} for i in range(8)],
        "tools": {"search": {"calls": step, "last": "query text " * 3}},
    }


PAYLOADS = [payload(step) for step in range(100)]


class Spread:
    """Per-round figures: the median over rounds, and the lowest and highest round."""

    def __init__(self) -> None:
        self.rounds: list[float] = []

    def add(self, value: float) -> None:
        self.rounds.append(value)

    def __str__(self) -> str:
        places = 2 if max(self.rounds) < 100 else 1
        return (
            f"{statistics.median(self.rounds):8.{places}f}  "
            f"({min(self.rounds):.{places}f}-{max(self.rounds):.{places}f})"
        )


async def _timed_async(make: Callable[[int], Coroutine[Any, Any, object]], calls: int) -> float:
    """Median µs of ``calls`` sequential awaits of ``make(i)``."""
    samples = []
    for i in range(calls):
        start = time.perf_counter_ns()
        await make(i)
        samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples) / 1000


async def _many_tasks(store: AsyncCheckpointStore, session: str) -> float:
    """Creates per second: TASKS tasks awaiting CREATES_PER_TASK creates each."""
    mgr = store.manager(session, **NO_RETENTION)

    async def worker(task: int) -> None:
        for i in range(CREATES_PER_TASK):
            await mgr.create("step", PAYLOADS[(task + i) % len(PAYLOADS)])

    start = time.perf_counter()
    await asyncio.gather(*(worker(task) for task in range(TASKS)))
    return TASKS * CREATES_PER_TASK / (time.perf_counter() - start)


class LangGraphAsync:
    """LangGraph's AsyncSqliteSaver through its public API, one thread id."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.step = 0
        self.base = empty_checkpoint()
        self.config: Any = {"configurable": {"thread_id": SESSION, "checkpoint_ns": ""}}

    async def open(self) -> None:
        self._context = AsyncSqliteSaver.from_conn_string(str(self.path))
        self.saver = await self._context.__aenter__()
        await self.saver.setup()
        await self.saver.conn.execute("PRAGMA synchronous = NORMAL")

    async def put(self, i: int) -> None:
        self.step += 1
        checkpoint = create_checkpoint(self.base, None, self.step)
        checkpoint["channel_values"] = PAYLOADS[i % len(PAYLOADS)]
        metadata: Any = {"source": "loop", "step": self.step, "name": "step"}
        self.config = await self.saver.aput(self.config, checkpoint, metadata, {})

    async def close(self) -> None:
        await self._context.__aexit__(None, None, None)


def measure(work: Path, rounds: int, calls: int) -> dict[str, Spread]:
    """Every figure of this benchmark, as a Spread per row name."""
    figures: dict[str, Spread] = {
        "sync create µs": Spread(),
        "async create µs": Spread(),
        f"{TASKS} tasks x {CREATES_PER_TASK} creates /s": Spread(),
        "async / sync create": Spread(),
        f"{TASKS} tasks / one task, creates/s": Spread(),
    }
    if HAVE_LANGGRAPH:
        figures["LangGraph async put µs"] = Spread()
    work.mkdir(parents=True, exist_ok=True)
    runner = asyncio.Runner()
    sync_store = CheckpointStore(work / "sync.db")
    sync_mgr = sync_store.manager(SESSION, **NO_RETENTION)
    try:
        store = runner.run(AsyncCheckpointStore.open(work / "async.db"))
        async_mgr = store.manager(SESSION, **NO_RETENTION)
        peer = LangGraphAsync(work / "langgraph.db") if HAVE_LANGGRAPH else None
        if peer is not None:
            runner.run(peer.open())
        for round_number in range(rounds):
            samples = []
            for i in range(calls):
                start = time.perf_counter_ns()
                sync_mgr.create("step", PAYLOADS[i % len(PAYLOADS)])
                samples.append(time.perf_counter_ns() - start)
            figures["sync create µs"].add(statistics.median(samples) / 1000)
            figures["async create µs"].add(
                runner.run(
                    _timed_async(
                        lambda i: async_mgr.create("step", PAYLOADS[i % len(PAYLOADS)]), calls
                    )
                )
            )
            if peer is not None:
                figures["LangGraph async put µs"].add(runner.run(_timed_async(peer.put, calls)))
            figures[f"{TASKS} tasks x {CREATES_PER_TASK} creates /s"].add(
                runner.run(_many_tasks(store, f"tasks-{round_number}"))
            )
            # Ratios within the round, so that the machine's drift cancels out.
            figures["async / sync create"].add(
                figures["async create µs"].rounds[-1] / figures["sync create µs"].rounds[-1]
            )
            figures[f"{TASKS} tasks / one task, creates/s"].add(
                figures[f"{TASKS} tasks x {CREATES_PER_TASK} creates /s"].rounds[-1]
                * figures["async create µs"].rounds[-1]
                / 1e6
            )
        if peer is not None:
            runner.run(peer.close())
        runner.run(store.close())
    finally:
        sync_store.close()
        runner.close()
    return figures


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=500, help="sequential calls per round")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        figures = measure(Path(scratch), args.rounds, args.calls)
    print(f"SQLite {sqlite3.sqlite_version}; median over {args.rounds} rounds (lowest-highest)")
    for name, spread in figures.items():
        print(f"{name:32} {spread}")


if __name__ == "__main__":
    main()
