"""PostgreSQL create against raw psycopg and LangGraph's PostgresSaver, on one server.

Run ``python benchmarks/pg_create.py URL`` (or set ``CHECKPOINTDB_URL``), with
URL a ``postgresql+psycopg://`` database the benchmark may write to: it
works in schemas of its own and drops them afterwards. ``--rounds`` and
``--calls`` change the size (about a minute with the defaults).

What is measured, per call, with the same ~1 KB JSON state and compaction
and the cap off:

* ``checkpointdb create``: ``CheckpointManager.create``;
* ``raw psycopg``: the same two statements, as the store's repository
  compiled them (take the next seq in the session row, insert the
  checkpoint reading that seq), on one psycopg connection, written the
  plain way: ``execute``, ``fetchone``, ``commit`` (BEGIN is a round trip
  of its own there: 4 in all);
* ``raw psycopg, pipelined``: the same statements and round trip as
  checkpointdb: BEGIN, ``SET LOCAL lock_timeout``, both statements and
  COMMIT in one pipeline sync;
* ``PostgresSaver put``: LangGraph's ``PostgresSaver.put``, building its
  checkpoint dict included, when ``langgraph-checkpoint-postgres`` is installed;
* ``checkpointdb get_latest``: one round trip.

Systems run in alternating rounds, so that drift in the machine (2 shared
cores here) hits them alike. Each round gives a median per-call latency;
the figures are the median over rounds with the lowest and highest round,
and ratios of the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import psycopg
from sqlalchemy.engine import make_url

from checkpointdb import CheckpointStore

try:
    from langgraph.checkpoint.base import create_checkpoint, empty_checkpoint
    from langgraph.checkpoint.postgres import PostgresSaver

    HAVE_LANGGRAPH = True
except ImportError:  # langgraph-checkpoint-postgres not installed
    HAVE_LANGGRAPH = False

NO_RETENTION: dict[str, Any] = {"max_checkpoints": None, "compress_after": None}


def payload(step: int) -> dict[str, Any]:
    """About 1 KB of agent-like JSON state."""
    return {
        "step": step,
        "messages": [{"role": "user", "content": f"message {step}-{i} " * 6} for i in range(8)],
        "tools": {"search": {"calls": step, "last": "query text " * 3}},
    }


PAYLOADS = [payload(step) for step in range(100)]

class Raw:
    """checkpointdb's create statements, as its repository compiles them, on plain psycopg."""

    def __init__(
        self, conninfo: str, session: str, statements: dict[str, str], *, pipelined: bool
    ) -> None:
        self.conn = psycopg.connect(conninfo, autocommit=pipelined, prepare_threshold=None)
        self.session = session
        self.pipelined = pipelined
        self.take_seq = statements["allocate"]
        self.insert = statements["insert_at_last_seq"]

    def create(self, i: int) -> None:
        data = json.dumps(PAYLOADS[i % len(PAYLOADS)])
        now = datetime.now(UTC)
        take: dict[str, Any] = {
            "session_id": self.session,
            "now": now,
            "seq_delta": 1,
            "count_delta": 1,
            "bytes_delta": len(data),
            # What a manager with compaction and the cap off writes.
            "max_checkpoints": -1,
            "compress_after": -1,
            "keep_recent": None,
        }
        insert: dict[str, Any] = {
            "session_id": self.session,
            "name": "step",
            "created_at": now,
            "data": data,
            "metadata": "{}",
            "pinned": False,
            "payload_bytes": len(data),
        }
        if not self.pipelined:
            self.conn.execute(self.take_seq, take).fetchone()
            self.conn.execute(self.insert, insert).fetchone()
            self.conn.commit()
            return
        with self.conn.pipeline():
            self.conn.execute("BEGIN")
            self.conn.execute("SET LOCAL lock_timeout = 30000")  # as the store's writes do
            taken = self.conn.execute(self.take_seq, take)
            inserted = self.conn.execute(self.insert, insert)
            self.conn.execute("COMMIT")
        taken.fetchone()
        inserted.fetchone()


class LangGraph:
    """LangGraph's PostgresSaver through its public API, one thread id."""

    def __init__(self, conninfo: str) -> None:
        self._context = PostgresSaver.from_conn_string(conninfo)
        self.saver = self._context.__enter__()
        self.saver.setup()
        self.step = 0
        self.base = empty_checkpoint()
        self.config: Any = {"configurable": {"thread_id": "bench", "checkpoint_ns": ""}}

    def put(self, i: int) -> None:
        self.step += 1
        checkpoint = create_checkpoint(self.base, None, self.step)
        checkpoint["channel_values"] = PAYLOADS[i % len(PAYLOADS)]
        metadata: Any = {"source": "loop", "step": self.step, "name": "step"}
        self.config = self.saver.put(self.config, checkpoint, metadata, {})

    def close(self) -> None:
        self._context.__exit__(None, None, None)


def timed(call: Callable[[int], object], calls: int) -> float:
    """Median µs of ``calls`` calls of ``call(i)``."""
    samples = []
    for i in range(calls):
        start = time.perf_counter_ns()
        call(i)
        samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples) / 1000


def main() -> None:
    """Parse arguments, run the rounds, print medians, spreads and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("url", nargs="?", default=os.environ.get("CHECKPOINTDB_URL"))
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    if not args.url or not args.url.startswith("postgresql"):
        parser.error("give a postgresql+psycopg:// URL (or set CHECKPOINTDB_URL)")
    base = make_url(args.url).set(drivername="postgresql")
    admin = base.render_as_string(hide_password=False)
    # Two schemas: LangGraph's tables are called "checkpoints" too.
    schemas = [f"bench_{uuid.uuid4().hex[:8]}", f"bench_lg_{uuid.uuid4().hex[:8]}"]
    with psycopg.connect(admin, autocommit=True) as conn:
        for schema in schemas:
            conn.execute(f"CREATE SCHEMA {schema}")
    conninfos = [
        f"{admin}{'&' if '?' in admin else '?'}options={quote(f'-csearch_path={schema}')}"
        for schema in schemas
    ]
    url = conninfos[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        run(url, conninfos[0], conninfos[1], args.rounds, args.calls)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            for schema in schemas:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")


def run(url: str, conninfo: str, langgraph_conninfo: str, rounds: int, calls: int) -> None:
    """Interleave the systems for ``rounds`` rounds of ``calls`` calls; print the table."""
    store = CheckpointStore(url)
    manager = store.manager("checkpointdb", **NO_RETENTION)
    statements = store.context().repo.statements()
    systems: dict[str, Callable[[int], object]] = {
        "checkpointdb create": lambda i: manager.create("step", PAYLOADS[i % len(PAYLOADS)]),
        "raw psycopg": Raw(conninfo, "raw", statements, pipelined=False).create,
        "raw psycopg, pipelined": Raw(conninfo, "pipelined", statements, pipelined=True).create,
    }
    peer = LangGraph(langgraph_conninfo) if HAVE_LANGGRAPH else None
    if peer is not None:
        systems["PostgresSaver put"] = peer.put
    systems["checkpointdb get_latest"] = lambda i: manager.get_latest()
    figures: dict[str, list[float]] = {name: [] for name in systems}
    try:
        for call in systems.values():  # warm up: connections, caches
            timed(call, 20)
        for _ in range(rounds):
            for name, call in systems.items():
                figures[name].append(timed(call, calls))
    finally:
        store.close()
        if peer is not None:
            peer.close()
    medians = {name: statistics.median(values) for name, values in figures.items()}
    print(f"{'per call, µs':26} {'median':>8}  (lowest-highest round)")
    for name, values in figures.items():
        print(f"{name:26} {medians[name]:8.1f}  ({min(values):.1f}-{max(values):.1f})")
    ours = medians["checkpointdb create"]
    print()
    for name in ("raw psycopg", "raw psycopg, pipelined", "PostgresSaver put"):
        if name in medians:
            # Each round's ratio too: drift between rounds cancels out within one.
            per_round = [
                mine / theirs
                for mine, theirs in zip(figures["checkpointdb create"], figures[name], strict=True)
            ]
            print(
                f"create / {name}: {ours / medians[name]:.2f}x the time "
                f"(rounds {min(per_round):.2f}-{max(per_round):.2f})"
            )
    if not HAVE_LANGGRAPH:
        print("(PostgresSaver left out: pip install langgraph-checkpoint-postgres)")


if __name__ == "__main__":
    main()
