"""How fast our LangGraph storage can be at best on SQLite, against SqliteSaver.

Run ``python benchmarks/langgraph_floor.py`` (about a minute; ``--rounds``,
``--calls``, ``--rows`` change the size). Needs the ``bench`` extra.

LangGraph's ``SqliteSaver`` keeps a checkpoint as one row: a put is one
``INSERT OR REPLACE`` of a serialized blob holding every channel, a read one
primary-key lookup (and one for pending writes). checkpointdb's saver stores
what the LangGraph integration asks for: the thread is a session row whose
counters every put updates, the checkpoint a row of ``checkpoints`` (with its
lineage) plus its LangGraph id under a unique key, each changed channel a row
of ``langgraph_blobs``. That costs more SQLite work per call whatever the
Python around it does.

This script measures that floor. Besides ``CheckpointDBSaver`` and
``SqliteSaver`` (both at ``synchronous=NORMAL``, WAL), it runs a third
system, *floor*: a plain ``sqlite3`` connection on a file with our schema,
running exactly the statements our saver runs (taken from the saver itself,
so they stay in step with the code) with no Python layer of ours around
them: for ``put`` the JSON and serializer encoding, ``BEGIN IMMEDIATE``, the
statements and ``COMMIT``; for ``get_tuple`` (newest checkpoint) the read
statement and its rows, not even decoded. A fourth, *lean*, puts only what
that storage cannot do without (the session row's counters, the checkpoint
row, a row per changed channel: no LangGraph id row, no parent lookup).
Systems run in interleaved rounds (the order alternating), each round a
batch of calls per system; the ratios are per round (a system's median over
SqliteSaver's median in that round), reported as median and lowest-highest
round.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph_bench import System

from checkpointdb import CheckpointStore
from checkpointdb.langgraph import CheckpointDBSaver

THREAD = "bench"
CONFIG: Any = {"configurable": {"thread_id": THREAD, "checkpoint_ns": ""}}
# The policy our saver stores on a thread's session row (retention off).
POLICY_OFF = (-1, -1, None)


class Floor:
    """Our saver's statements on a bare sqlite3 connection: the least a put or read costs."""

    def __init__(self, path: Path, *, lean: bool = False) -> None:
        # lean: only what the storage cannot do without (the session's
        # counters, the checkpoint row, the changed channels' rows): no
        # LangGraph id row and no parent lookup. Such a file cannot be read.
        self.lean = lean
        with CheckpointStore(path, synchronous="NORMAL") as store:
            ours = CheckpointDBSaver(store)
            self.sql = ours._sql  # the statements our saver runs, as it runs them
            self.repo = store.context().repo
            self.get_next_version = ours.get_next_version
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
            self.conn.execute(f"PRAGMA {pragma}")
        self.serde = JsonPlusSerializer()

    def put(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        """What our put does in SQLite, with only the encoding around it."""
        conf = config["configurable"]
        parent = conf.get("checkpoint_id")
        data = json.dumps({k: v for k, v in checkpoint.items() if k != "channel_values"})
        meta = json.dumps(metadata)
        params: dict[str, Any] = {
            "thread": THREAD,
            "ns": "",
            "id": checkpoint["id"],
            "parent": parent or "",
            "name": "loop",
            "data": data,
            "metadata": meta,
            "bytes": len(data) + len(meta),
            "now": datetime.now(UTC).isoformat(),
            "pinned": False,
        }
        values = checkpoint["channel_values"]
        blobs = []
        for channel, version in new_versions.items():
            type_, value = self.serde.dumps_typed(values[channel])
            blobs.append(
                {
                    "thread": THREAD,
                    "ns": "",
                    "channel": channel,
                    "version": str(version),
                    "type": type_,
                    "value": value,
                }
            )
        cursor = self.conn.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        known = {} if self.lean else dict(cursor.execute(self.sql.find_ids, params).fetchall())
        params["seq"] = self.repo.allocate(
            cursor, THREAD, datetime.now(UTC), params["bytes"], 1, POLICY_OFF
        ).last_seq
        params["parent_seq"] = known.get(parent)
        cursor.execute(self.sql.insert_checkpoint, params)
        if not self.lean:
            cursor.execute(self.sql.insert_id, params)
        cursor.executemany(self.sql.insert_blob, blobs)
        cursor.execute("COMMIT")
        return {
            "configurable": {
                "thread_id": THREAD,
                "checkpoint_ns": "",
                "checkpoint_id": checkpoint["id"],
            }
        }

    def get_tuple(self, config: Any) -> list[Any]:
        """Our read statement for the newest checkpoint, its rows fetched, nothing decoded."""
        return self.conn.execute(self.sql.latest, {"thread": THREAD, "ns": ""}).fetchall()


def interleaved(
    calls: dict[str, Callable[[], Any]], rounds: int, batch: int
) -> dict[str, list[float]]:
    """Each system's median µs per round; the order of systems alternates between rounds."""
    medians: dict[str, list[float]] = {name: [] for name in calls}
    for round_no in range(rounds):
        names = list(calls) if round_no % 2 == 0 else list(reversed(calls))
        for name in names:
            call, samples = calls[name], []
            for _ in range(batch):
                start = time.perf_counter_ns()
                call()
                samples.append((time.perf_counter_ns() - start) / 1000)
            medians[name].append(statistics.median(samples))
    return medians


def report(what: str, medians: dict[str, list[float]]) -> None:
    base = medians["SqliteSaver"]
    print(f"\n{what}")
    print("| system | median µs | lowest-highest round µs | x SqliteSaver | lowest-highest round |")
    print("|---|---|---|---|---|")
    for name, values in medians.items():
        ratios = [v / b for v, b in zip(values, base, strict=True)]
        print(
            f"| {name} | {statistics.median(values):.1f} | {min(values):.1f}-{max(values):.1f} "
            f"| {statistics.median(ratios):.2f} | {min(ratios):.2f}-{max(ratios):.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--calls", type=int, default=200, help="calls per system and round")
    parser.add_argument("--rows", type=int, default=1000, help="checkpoints in the thread first")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lgfloor-") as tmp, ExitStack() as stack:
        store = stack.enter_context(CheckpointStore(Path(tmp) / "ours.db", synchronous="NORMAL"))
        conn = sqlite3.connect(Path(tmp) / "lg.db", check_same_thread=False)
        stack.callback(conn.close)
        lg_saver = SqliteSaver(conn)
        lg_saver.setup()
        conn.execute("PRAGMA synchronous=NORMAL")
        floor = Floor(Path(tmp) / "floor.db")
        lean = Floor(Path(tmp) / "lean.db", lean=True)
        stack.callback(floor.conn.close)
        stack.callback(lean.conn.close)
        systems = {
            "ours (CheckpointDBSaver)": System("ours", CheckpointDBSaver(store), "sqlite"),
            "floor: our statements, raw sqlite3": System("floor", floor, "sqlite"),  # type: ignore[arg-type]
            "floor, lean: no id row, no parent lookup": System("lean", lean, "sqlite"),  # type: ignore[arg-type]
            "SqliteSaver": System("lg", lg_saver, "sqlite"),
        }
        readers = {name: s for name, s in systems.items() if s.saver is not lean}
        for system in systems.values():
            for step in range(args.rows):
                system.put_step(THREAD, step)
        steps = {name: args.rows for name in systems}

        def put(name: str) -> Callable[[], Any]:
            def call() -> None:
                steps[name] += 1
                systems[name].put_step(THREAD, steps[name])

            return call

        report(
            "put (a graph step: two of three channels change), synchronous=NORMAL",
            interleaved({name: put(name) for name in systems}, args.rounds, args.calls),
        )
        report(
            f"get_tuple, newest checkpoint of {args.rows:,}+ (floor: rows fetched, not decoded)",
            interleaved(
                {name: (lambda s=s: s.saver.get_tuple(CONFIG)) for name, s in readers.items()},
                args.rounds,
                args.calls,
            ),
        )


if __name__ == "__main__":
    main()
