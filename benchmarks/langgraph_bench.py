"""Benchmarks: checkpointdb's LangGraph savers against LangGraph's own, side by side.

Run ``python benchmarks/langgraph_bench.py`` (writes a section of
``benchmarks/RESULTS.md``) or ``--quick`` (10k instead of 100k checkpoints,
fewer rounds; prints only unless ``--write``). Needs the ``bench`` extra.
PostgreSQL columns appear when ``CHECKPOINTDB_TEST_POSTGRES_URL`` is set;
each PostgreSQL system gets a schema of its own, dropped afterwards.

What is measured, in one run, on fresh databases in a scratch directory:

* ``put``: a checkpoint of three channels (a ~1 KB message list, a counter,
  a status) where two change each step, as a graph step does; the parent
  link, metadata and new versions as LangGraph passes them.
* ``put_writes``: two writes of one task on the newest checkpoint.
* ``get_tuple`` of the newest checkpoint and of a random one by id,
  ``list(limit=10)``, and ``list(filter=..., limit=10)`` on a metadata key
  that one checkpoint in 100 carries, each on a thread of 1k and of 100k
  checkpoints.
* File size after a 200-turn chat graph whose ``messages`` channel grows
  every turn (WAL checkpointed into the main file first).

Durability: SQLite's ``synchronous`` decides what a commit costs. LangGraph's
``SqliteSaver`` leaves it at the library's default (FULL in the Debian build
here); ours defaults to NORMAL (WAL: survives any process crash). Writes are
compared at equal durability: SqliteSaver is run at both, ours at both.

Latencies are per call (``time.perf_counter_ns``); systems run in
interleaved rounds (each round every system does a batch), so drift in the
machine hits them alike. Reported: median, p10-p90 spread, and the ratio of
ours to the best LangGraph saver of the same flavour (sync savers against
SqliteSaver / PostgresSaver, async ones against AsyncSqliteSaver /
AsyncPostgresSaver) on the same backend: the median over rounds of the
round's ratio of medians, with the lowest and highest round (below 1: ours
faster). PostgreSQL runs every saver on one server at its default
``synchronous_commit`` (on).
"""

from __future__ import annotations

import argparse
import asyncio
import operator
import os
import platform
import random
import shutil
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any, TypedDict
from urllib.parse import quote

from langgraph.checkpoint.base import BaseCheckpointSaver, empty_checkpoint
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import END, START, StateGraph

from checkpointdb import CheckpointStore
from checkpointdb.aio import AsyncCheckpointStore
from checkpointdb.langgraph import AsyncCheckpointDBSaver, CheckpointDBSaver

RESULTS = Path(__file__).with_name("RESULTS.md")
SECTION = "## LangGraph savers"
MESSAGE = "m" * 100


class System:
    """One saver under test, its sync calls (async savers run on a private loop)."""

    def __init__(self, name: str, saver: BaseCheckpointSaver[Any], backend: str,
                 loop: asyncio.AbstractEventLoop | None = None, ours: bool = False,
                 durability: str = "", reads: bool = True) -> None:
        self.name, self.saver, self.backend, self.loop = name, saver, backend, loop
        # reads=False: a system only in the write comparison (reads do not
        # depend on synchronous, and filling 100k rows at FULL takes minutes).
        self.ours, self.durability, self.reads = ours, durability, reads
        self.flavour = "sync" if loop is None else "async"
        self.version: Any = None
        self.parent: dict[str, Any] | None = None
        self.ids: list[str] = []

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if self.loop is None:
            result = getattr(self.saver, method)(*args, **kwargs)
            return list(result) if method == "list" else result
        if method == "list":
            async def collect() -> list[Any]:
                return [t async for t in self.saver.alist(*args, **kwargs)]

            return self.loop.run_until_complete(collect())
        return self.loop.run_until_complete(getattr(self.saver, "a" + method)(*args, **kwargs))

    def put_step(self, thread: str, step: int) -> None:
        """One graph step's checkpoint: messages and counter change, status stays."""
        self.version = self.saver.get_next_version(self.version, None)
        first = self.parent is None
        checkpoint = empty_checkpoint()
        checkpoint["channel_values"] = {
            "messages": [MESSAGE] * 10, "counter": step, "status": "running",
        }
        status_version = self.first_version if not first else self.version
        if first:
            self.first_version = self.version
        checkpoint["channel_versions"] = {
            "messages": self.version, "counter": self.version, "status": status_version,
        }
        checkpoint["versions_seen"] = {"node": {"messages": self.version}}
        new = {"messages": self.version, "counter": self.version}
        if first:
            new["status"] = self.version
        config: dict[str, Any] = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
        if self.parent is not None:
            config["configurable"]["checkpoint_id"] = self.parent["configurable"]["checkpoint_id"]
        metadata: dict[str, Any] = {"source": "loop", "step": step, "parents": {}}
        if step % 100 == 50:
            metadata["user"] = "rare"
        self.parent = self.call("put", config, checkpoint, metadata, new)
        self.ids.append(checkpoint["id"])


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def interleaved(systems: Sequence[System], make: Callable[[System], Callable[[], Any]],
                rounds: int, batch: int) -> dict[str, list[list[float]]]:
    """Per-call microseconds of each system, one list per round; rounds alternate the order."""
    times: dict[str, list[list[float]]] = {s.name: [] for s in systems}
    calls = {s.name: make(s) for s in systems}
    for round_no in range(rounds):
        order = list(systems) if round_no % 2 == 0 else list(reversed(systems))
        for system in order:
            call = calls[system.name]
            batch_times = []
            for _ in range(batch):
                start = time.perf_counter_ns()
                call()
                batch_times.append((time.perf_counter_ns() - start) / 1000)
            times[system.name].append(batch_times)
    return times


def read_calls(thread: str, rng: random.Random) -> dict[str, Callable[[System], Callable[[], Any]]]:
    """The reads measured, each a maker of one system's call."""
    config = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}

    def by_id(s: System) -> dict[str, Any]:
        return {"configurable": {"thread_id": thread, "checkpoint_ns": "",
                                 "checkpoint_id": rng.choice(s.ids)}}

    return {
        "get_tuple latest": lambda s: lambda: s.call("get_tuple", config),
        "get_tuple by id": lambda s: lambda: s.call("get_tuple", by_id(s)),
        "list(limit=10)": lambda s: lambda: s.call("list", config, limit=10),
        "list(filter, limit=10)": lambda s: lambda: s.call(
            "list", config, filter={"user": "rare"}, limit=10),
    }


def fill(systems: Sequence[System], thread: str, rows: int) -> None:
    for system in systems:
        if not system.reads and system.ids:
            continue
        start = len(system.ids)
        for step in range(start, rows):
            system.put_step(thread, step)


def summarize(op: str, size: str, times: dict[str, list[list[float]]],
              systems: Sequence[System], rows: list[list[Any]],
              verdicts: list[tuple[str, float | None]], by_durability: bool = False) -> None:
    """Rows of the table; each saver is compared with LangGraph's of the same flavour
    (sync or async) on the same backend, a write only at the same durability.

    The ratio is the median over rounds of (ours' median in the round / the
    best LangGraph saver's median in that round), with its lowest and highest.
    """
    flat = {name: [v for batch in rounds for v in batch] for name, rounds in times.items()}
    medians = {name: statistics.median(v) for name, v in flat.items()}

    def key(s: System) -> tuple[str, str, str]:
        return s.backend, s.flavour, s.durability if by_durability else ""

    for group_key in sorted({key(s) for s in systems}):
        group = [s for s in systems if key(s) == group_key]
        theirs = [s for s in group if not s.ours]
        for s in group:
            values = flat[s.name]
            per_round = [
                statistics.median(times[s.name][i])
                / min(statistics.median(times[t.name][i]) for t in theirs)
                for i in range(len(times[s.name]))
            ] if theirs else []
            ratio = statistics.median(per_round) if per_round else None
            spread = f"{min(per_round):.2f}-{max(per_round):.2f}" if per_round else ""
            rows.append([op, size, s.name, f"{medians[s.name]:.0f}",
                         f"{percentile(values, 0.1):.0f}-{percentile(values, 0.9):.0f}",
                         "" if ratio is None else f"{ratio:.2f}", spread])
            if s.ours:
                verdicts.append((f"{op} {size} {s.name}", ratio))


def sqlite_systems(tmp: Path, stack: ExitStack, loop: asyncio.AbstractEventLoop) -> list[System]:
    systems = []
    for sync in ("NORMAL", "FULL"):
        store = stack.enter_context(CheckpointStore(tmp / f"ours-{sync}.db", synchronous=sync))
        systems.append(System(f"ours sync ({sync})", CheckpointDBSaver(store), "sqlite",
                              ours=True, durability=sync, reads=sync == "NORMAL"))
    default = sqlite3.connect(":memory:").execute("PRAGMA synchronous").fetchone()[0]
    names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
    for label, pragma in ((f"default={names[default]}", None), ("NORMAL", "NORMAL")):
        conn = sqlite3.connect(tmp / f"lg-{label}.db", check_same_thread=False)
        saver = SqliteSaver(conn)
        saver.setup()
        if pragma:
            conn.execute(f"PRAGMA synchronous={pragma}")
        stack.callback(conn.close)
        systems.append(System(f"SqliteSaver ({label})", saver, "sqlite",
                              durability=pragma or names[default], reads=pragma is not None))
    astore = loop.run_until_complete(AsyncCheckpointStore.open(tmp / "ours-async.db"))
    stack.callback(lambda: loop.run_until_complete(astore.close()))
    systems.append(System("ours async (NORMAL)", AsyncCheckpointDBSaver(astore), "sqlite",
                          loop=loop, ours=True, durability="NORMAL"))
    asaver_cm = AsyncSqliteSaver.from_conn_string(str(tmp / "lg-async.db"))
    asaver = loop.run_until_complete(asaver_cm.__aenter__())
    loop.run_until_complete(asaver.setup())
    loop.run_until_complete(asaver.conn.execute("PRAGMA synchronous=NORMAL"))
    stack.callback(lambda: loop.run_until_complete(asaver_cm.__aexit__(None, None, None)))
    systems.append(System("AsyncSqliteSaver (NORMAL)", asaver, "sqlite", loop=loop,
                          durability="NORMAL"))
    return systems


def postgres_systems(url: str, stack: ExitStack,
                     loop: asyncio.AbstractEventLoop) -> list[System]:
    """Ours and LangGraph's savers, sync and async, each in a schema of its own."""
    import psycopg
    from langgraph.checkpoint.postgres import PostgresSaver
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    plain = url.replace("postgresql+psycopg://", "postgresql://", 1)
    schemas = [f"bench_{uuid.uuid4().hex[:10]}" for _ in range(4)]
    admin = psycopg.connect(plain, autocommit=True)
    for schema in schemas:
        admin.execute(f"CREATE SCHEMA {schema}")

    def drop() -> None:
        for schema in schemas:
            admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.close()

    stack.callback(drop)
    sep = "&" if "?" in url else "?"

    def in_schema(base: str, schema: str) -> str:
        return f"{base}{sep}options={quote('-csearch_path=' + schema)}"

    store = stack.enter_context(CheckpointStore(in_schema(url, schemas[0])))
    theirs = stack.enter_context(PostgresSaver.from_conn_string(in_schema(plain, schemas[1])))
    theirs.setup()
    astore = loop.run_until_complete(AsyncCheckpointStore.open(in_schema(url, schemas[2])))
    stack.callback(lambda: loop.run_until_complete(astore.close()))
    atheirs_cm = AsyncPostgresSaver.from_conn_string(in_schema(plain, schemas[3]))
    atheirs = loop.run_until_complete(atheirs_cm.__aenter__())
    stack.callback(lambda: loop.run_until_complete(atheirs_cm.__aexit__(None, None, None)))
    loop.run_until_complete(atheirs.setup())
    return [
        System("ours sync", CheckpointDBSaver(store), "postgresql", ours=True),
        System("PostgresSaver", theirs, "postgresql"),
        System("ours async", AsyncCheckpointDBSaver(astore), "postgresql", loop=loop,
               ours=True),
        System("AsyncPostgresSaver", atheirs, "postgresql", loop=loop),
    ]


class Chat(TypedDict):
    messages: Annotated[list[str], operator.add]


def chat_file_size(tmp: Path, turns: int) -> list[list[Any]]:
    def reply(state: Chat) -> dict[str, Any]:
        return {"messages": [f"answer {len(state['messages'])}: " + "x" * 200]}

    builder = StateGraph(Chat)
    builder.add_node("reply", reply)
    builder.add_edge(START, "reply")
    builder.add_edge("reply", END)
    rows = []
    for name in ("ours", "SqliteSaver"):
        path = tmp / f"chat-{name}.db"
        with ExitStack() as stack:
            if name == "ours":
                saver: Any = CheckpointDBSaver(stack.enter_context(CheckpointStore(path)))
            else:
                conn = sqlite3.connect(path, check_same_thread=False)
                stack.callback(conn.close)
                saver = SqliteSaver(conn)
            graph = builder.compile(checkpointer=saver)
            config = {"configurable": {"thread_id": "chat"}}
            for turn in range(turns):
                graph.invoke({"messages": [f"question {turn}: " + "y" * 200]}, config)
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        wal = path.with_name(path.name + "-wal")
        size = path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
        rows.append([name, turns, f"{size:,}"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10k instead of 100k, fewer rounds")
    parser.add_argument("--write", action="store_true", help="write RESULTS.md even with --quick")
    args = parser.parse_args()
    sizes = [1_000, 10_000 if args.quick else 100_000]
    rounds, batch = (6, 50) if args.quick else (10, 100)
    tmp = Path(tempfile.mkdtemp(prefix="lgbench-"))
    loop = asyncio.new_event_loop()
    rows: list[list[Any]] = []
    verdicts: list[tuple[str, float | None]] = []
    write_ops: set[str] = {"put", "put_writes"}
    try:
        with ExitStack() as stack:
            systems = sqlite_systems(tmp, stack, loop)
            pg_url = os.environ.get("CHECKPOINTDB_TEST_POSTGRES_URL")
            if pg_url:
                systems += postgres_systems(pg_url, stack, loop)
            thread = "bench"
            step_of = {s.name: 0 for s in systems}
            for size in sizes:
                fill(systems, thread, size)
                label = f"{size // 1000}k"
                reads = read_calls(thread, random.Random(7))
                readers = [s for s in systems if s.reads]
                for op, make in reads.items():
                    summarize(op, label, interleaved(readers, make, rounds, batch),
                              readers, rows, verdicts)
                if size == sizes[0]:
                    def put_maker(s: System) -> Callable[[], Any]:
                        def put() -> None:
                            s.put_step(thread, len(s.ids))
                        return put

                    def writes_maker(s: System) -> Callable[[], Any]:
                        def put_writes() -> None:
                            step_of[s.name] += 1
                            s.call("put_writes", s.parent, [("messages", [MESSAGE]),
                                                            ("counter", 1)],
                                   f"task-{step_of[s.name]}")
                        return put_writes

                    for op, make in (("put", put_maker), ("put_writes", writes_maker)):
                        summarize(op, label, interleaved(systems, make, rounds, batch),
                                  systems, rows, verdicts, by_durability=True)
            size_rows = chat_file_size(tmp, 200)
    finally:
        loop.close()
        shutil.rmtree(tmp, ignore_errors=True)

    header = ["call", "thread", "system", "median us", "p10-p90 us", "x LangGraph's best",
              "lowest-highest round"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    size_lines = ["| saver | turns | file bytes |", "|---|---|---|"]
    size_lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in size_rows]
    ours_size = int(size_rows[0][2].replace(",", ""))
    theirs_size = int(size_rows[1][2].replace(",", ""))
    reads_met = all(r is not None and r <= 1.0 for name, r in verdicts
                    if name.split(" ")[0] not in write_ops)
    slow_reads = [f"{n} ({r:.2f})" for n, r in verdicts
                  if n.split(" ")[0] not in write_ops and r is not None and r > 1.0]
    writes = [f"{n} ({r:.2f})" for n, r in verdicts
              if n.split(" ")[0] in write_ops and r is not None]
    text = "\n".join([
        SECTION, "",
        f"`python benchmarks/langgraph_bench.py{' --quick' if args.quick else ''}` on "
        f"{platform.python_implementation()} {platform.python_version()}, SQLite "
        f"{sqlite3.sqlite_version}; {rounds} interleaved rounds of {batch} calls per system. "
        "Ratios compare each of ours with the fastest LangGraph saver of the same flavour "
        "(sync or async) on the same backend, as the median over rounds of each round's "
        "ratio of medians (lowest-highest round beside it); for writes, at the same "
        "durability (synchronous level in brackets; PostgreSQL: the server's default). The "
        f"machine's load average during the run: {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} cores (other work was running: figures are noisy).", "",
        *lines, "",
        "File size after a 200-turn chat graph (messages grow every turn):", "",
        *size_lines, "",
        "Targets:", "",
        f"- every read at least as fast as the best LangGraph saver: "
        f"{'met' if reads_met else 'not met: ' + ', '.join(slow_reads)}",
        f"- writes within 10% at equal durability: {', '.join(writes)}",
        f"- file size below SqliteSaver's: {'met' if ours_size < theirs_size else 'not met'} "
        f"({ours_size:,} vs {theirs_size:,} bytes)", "",
    ])
    print(text)
    if not args.quick or args.write:
        current = RESULTS.read_text()
        if SECTION in current:
            current = current[: current.index(SECTION)].rstrip() + "\n"
        RESULTS.write_text(current.rstrip() + "\n\n" + text)


if __name__ == "__main__":
    main()
