"""Benchmarks: checkpointdb against raw sqlite3 and LangGraph's SqliteSaver.

Run ``python benchmarks/bench.py`` (a few minutes; writes ``benchmarks/RESULTS.md``)
or ``python benchmarks/bench.py --quick`` (seconds; prints only). LangGraph's
columns appear when ``langgraph-checkpoint-sqlite`` is installed (the ``bench``
extra) and are skipped otherwise.

What is measured, in one run, each system on fresh files in a scratch directory:

* ``create`` at ``synchronous`` NORMAL and FULL: our ``CheckpointManager.create``
  (compaction and the cap off, so every system only appends); raw sqlite3
  doing the same work (``BEGIN IMMEDIATE``, the counter-row upsert with
  ``RETURNING``, the insert, ``COMMIT``, on the same tables and indexes, which
  are copied from a database our store created, with the same pragmas:
  WAL, the same ``synchronous``, foreign keys on, busy timeout); and
  LangGraph's ``SqliteSaver.put`` (building its checkpoint dict included,
  WAL, the same ``synchronous``). All three store the same ~1 KB JSON state.
* Lookups: ``get_latest``, ``get(id)`` (random ids), ``get_latest(name)`` of a
  recent name and of the oldest one (only the first row carries it),
  ``get_by_name`` (newest 10) and ``get_since`` (the last 100). Raw sqlite3
  runs the same indexed queries and does the same decoding (JSON text to
  dicts, timestamp text to an aware datetime); LangGraph runs ``get_tuple``
  and ``list`` (metadata filter, ``limit``). Sessions of 1k, 100k and 1M
  rows are built fast: our store creates the database and the first
  checkpoint, then raw sqlite3 bulk-inserts the other rows in our schema
  and sets the counter row; our store and raw sqlite3 then read that same
  file. LangGraph's sessions are bulk-inserted rows that its serializer
  produced, up to ``--langgraph-max-rows``.
* Create rate with compaction on (the defaults: cap 100, compact after 50,
  keep 20) vs off, and the time of ``mgr.compact()`` on a copy of a
  100k-row session (and of its ``dry_run``, the preview query alone).
* File bytes per checkpoint after the NORMAL create run (WAL checkpointed
  into the main file), against the payload's JSON bytes.
* Whole-process start (subprocesses, wall time): ``python -c "import sqlite3"``,
  ``import checkpointdb``, opening an up-to-date store and creating one
  checkpoint (which also reports whether any ``alembic`` module was imported),
  raw sqlite3 creating one checkpoint, LangGraph importing and putting one.
* Peak RSS (``resource.getrusage`` ``ru_maxrss`` in a fresh subprocess, started
  by a small launcher so that it does not inherit this process's size) while
  iterating the largest session, ours vs a raw streaming cursor.

Latencies are per call (``time.perf_counter_ns``), reported as median and
p95; systems run in alternating rounds so that drift in the machine hits
all of them alike. Rates are calls per second over the whole run (so rare
slow calls, like compaction, count); ratios are ours / raw (rates) and
raw-relative latency (lookups). Nothing here is a test: it prints and
writes figures, and the targets table says which are met.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import async_bench

from checkpointdb import CheckpointManager, CheckpointStore

try:
    from langgraph.checkpoint.base import create_checkpoint, empty_checkpoint
    from langgraph.checkpoint.base.id import uuid6
    from langgraph.checkpoint.sqlite import SqliteSaver

    HAVE_LANGGRAPH = True
except ImportError:  # the optional ``bench`` extra is not installed
    HAVE_LANGGRAPH = False

HERE = Path(__file__).resolve().parent
SESSION = "bench"
# Cycled through after the first row, which alone is named FIRST_NAME.
NAMES = ("plan", "tool_call", "observe", "reflect")
FIRST_NAME = "task_started"
RECENT_NAME = "observe"
# Compaction keeps this many of the newest rows (the manager's default).
KEEP_RECENT = 20
# Our store's SQLite timestamp format (fixed width, UTC, ends in Z).
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
# create's rate as a share of raw sqlite3's, by synchronous setting.
CREATE_GOALS = {"NORMAL": 0.75, "FULL": 0.85}
# Lookups' and find()'s latency at most this many times raw sqlite3's.
READ_GOAL = 1.5
# Iterating a whole session at most this many times a raw streaming cursor's time.
ITERATE_GOAL = 1.3
# Distinct sizes so one full run stays under about ten minutes on 2 cores.
FULL_SIZES: dict[str, Any] = {
    "creates": 5000,
    "creates_full": 1500,
    "compaction_creates": 5000,
    "async_calls": 1000,
    "rounds": 10,
    # FULL waits on fsync, which other processes' I/O disturbs: many short rounds.
    "rounds_full": 30,
    "lookup_reps": 2000,
    "scale": (1_000, 100_000, 1_000_000),
    "compact_rows": 100_000,
    "compact_reps": 5,
    "startup_reps": 25,
    "iterate_reps": 3,
    "langgraph_max_rows": 100_000,
}
QUICK_SIZES: dict[str, Any] = {
    "creates": 500,
    "creates_full": 100,
    "compaction_creates": 500,
    "async_calls": 200,
    "rounds": 5,
    "rounds_full": 5,
    "lookup_reps": 200,
    # The largest stands in for the full run's 1M rows.
    "scale": (1_000, 10_000, 100_000),
    "compact_rows": 10_000,
    "compact_reps": 2,
    "startup_reps": 9,
    "iterate_reps": 3,
    "langgraph_max_rows": 10_000,
}


# -- payloads -------------------------------------------------------------------


def make_payload(step: int) -> dict[str, Any]:
    """An agent state of about 1 KB of JSON: a conversation, tool calls, scores."""
    return {
        "step": step,
        "task": "Summarise the quarterly sales report and draft an email to the team",
        "status": "running",
        "messages": [
            {"role": "user", "content": "Please summarise the attached quarterly report."},
            {"role": "assistant", "content": "I will read the report and extract key figures."},
            {
                "role": "tool",
                "name": "read_file",
                "content": "Q3 revenue 4.2M (+12% QoQ); churn 3.1%",
            },
            {"role": "assistant", "content": "Revenue grew 12% quarter over quarter; EMEA led."},
        ],
        "tool_calls": [
            {
                "tool": "read_file",
                "args": {"path": "reports/q3.pdf", "pages": [1, 2, 3]},
                "ok": True,
            },
            {"tool": "search", "args": {"query": "churn definition", "k": 5}, "ok": True},
            {
                "tool": "send_email",
                "args": {"to": ["team@example.com"], "draft": True},
                "ok": False,
            },
        ],
        "scores": [0.91, 0.87, 0.42, 0.77, 0.66, 0.13, 0.58, 0.99],
        "context": {"cwd": "/srv/agent", "retries": 0, "budget_usd": 1.25, "tags": ["sales", "q3"]},
        "notes": "Draft must stay under 200 words; mention EMEA and the churn figure.",
        "done": False,
    }


def dumps(value: Any) -> str:
    """JSON text as our store writes it (compact, UTF-8 kept)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def name_of(seq: int) -> str:
    return FIRST_NAME if seq == 1 else NAMES[seq % len(NAMES)]


# -- statistics and tables ----------------------------------------------------


@dataclass
class Stat:
    """Per-call times of one operation, in nanoseconds, and how they fell into rounds."""

    samples: list[int]
    rounds: list[list[int]] = field(default_factory=list)

    @property
    def median_us(self) -> float:
        return statistics.median(self.samples) / 1000

    @property
    def p95_us(self) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] / 1000

    @property
    def rate(self) -> float:
        """Calls per second over all calls (slow ones included)."""
        return len(self.samples) * 1e9 / sum(self.samples)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (readable on a terminal too)."""

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
        return str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or not b else a / b


@dataclass
class Target:
    goal: str
    measured: str
    met: bool | None


@dataclass
class Report:
    sections: list[tuple[str, str]] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)

    def add(self, title: str, body: str) -> None:
        self.sections.append((title, body))
        print(f"\n## {title}\n\n{body}", flush=True)

    def target(self, goal: str, measured: str, met: bool | None) -> None:
        self.targets.append(Target(goal, measured, met))


def interleave(
    runners: dict[str, Callable[[], object]], calls: int, rounds: int
) -> dict[str, Stat]:
    """Time ``calls`` calls of each runner, in alternating rounds (the order rotates)."""
    per_runner: dict[str, list[list[int]]] = {name: [] for name in runners}
    order = list(runners)
    clock = time.perf_counter_ns
    per_round = max(1, calls // rounds)
    done = 0
    while done < calls:
        batch = min(per_round, calls - done)
        for name in order:
            run, out = runners[name], []
            for _ in range(batch):
                start = clock()
                run()
                out.append(clock() - start)
            per_runner[name].append(out)
        order.append(order.pop(0))
        done += batch
    return {
        name: Stat([value for part in parts for value in part], parts)
        for name, parts in per_runner.items()
    }


@dataclass(frozen=True)
class Paired:
    """A ratio taken round by round (neighbouring runs meet the same machine load)."""

    median: float
    low: float
    high: float
    rounds: int

    def __str__(self) -> str:
        return f"{self.median:.2f}x (rounds {self.low:.2f}-{self.high:.2f}, n={self.rounds})"


def paired(a: Stat, b: Stat, *, rates: bool) -> Paired:
    """The median over rounds of a/b: rates (calls over time) or median latencies."""
    ratios = []
    for ours, theirs in zip(a.rounds, b.rounds, strict=False):
        if rates:
            ratios.append((len(ours) / sum(ours)) / (len(theirs) / sum(theirs)))
        else:
            ratios.append(statistics.median(ours) / statistics.median(theirs))
    return Paired(statistics.median(ratios), min(ratios), max(ratios), len(ratios))


# -- the systems ----------------------------------------------------------------


def fresh(path: Path) -> Path:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path


def schema_ddl(path: Path) -> list[str]:
    """Our tables and indexes, as the store created them (Alembic's table and views left out)."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND type IN ('table', 'index') "
            "AND name != 'alembic_version' ORDER BY type = 'index', rowid"
        ).fetchall()
    finally:
        conn.close()
    return [sql for (sql,) in rows]


def table_columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


@dataclass(frozen=True)
class RawSQL:
    """Raw sqlite3's statements for the schema revision our store created.

    Revision 2 added ``pinned`` and ``payload_bytes`` (on both tables); when
    they exist the baseline writes and reads them as the store does, so that
    it keeps doing the same work.
    """

    pinned: bool
    accounting: bool
    tree: bool

    @classmethod
    def for_database(cls, conn: sqlite3.Connection) -> RawSQL:
        columns = table_columns(conn, "checkpoints")
        return cls(
            pinned="pinned" in columns,
            accounting="payload_bytes" in columns,
            tree="parent_seq" in columns,
        )

    @property
    def upsert(self) -> str:
        column, value, update = (
            (", payload_bytes", ", ?", ", payload_bytes = sessions.payload_bytes + ?")
            if self.accounting
            else ("", "", "")
        )
        returning = "last_seq, checkpoint_count"
        if self.tree:
            # Revision 0004: the session's stored policy, written by a manager
            # that names one (here: no cap, no compaction) and read back.
            column += ", max_checkpoints, compress_after, keep_recent"
            value += ", -1, -1, NULL"
            update += (
                ", max_checkpoints = coalesce(excluded.max_checkpoints, sessions.max_checkpoints)"
                ", compress_after = coalesce(excluded.compress_after, sessions.compress_after)"
                ", keep_recent = coalesce(excluded.keep_recent, sessions.keep_recent)"
            )
            returning += ", max_checkpoints, compress_after, keep_recent"
        return (
            "INSERT INTO sessions (id, created_at, updated_at, last_seq, checkpoint_count, "
            f"metadata{column}) VALUES (?, ?, ?, 1, 1, '{{}}'{value}) ON CONFLICT (id) DO UPDATE "
            "SET updated_at = excluded.updated_at, last_seq = sessions.last_seq + 1, "
            f"checkpoint_count = sessions.checkpoint_count + 1{update} "
            f"RETURNING {returning}"
        )

    def upsert_params(self, session: str, now: str, size: int) -> tuple[Any, ...]:
        return (session, now, now, size, size) if self.accounting else (session, now, now)

    @property
    def insert(self) -> str:
        """The INSERT; from revision 0004 its parent is the newest row, read in the INSERT."""
        columns = "session_id, seq, name, created_at, data, metadata"
        columns += ", pinned" if self.pinned else ""
        columns += ", payload_bytes" if self.accounting else ""
        marks = ", ".join("?" * (6 + self.pinned + self.accounting))
        if not self.tree:
            return f"INSERT INTO checkpoints ({columns}) VALUES ({marks})"
        return (
            f"INSERT INTO checkpoints ({columns}, parent_seq) VALUES ({marks}, "
            "(SELECT max(seq) FROM checkpoints AS previous WHERE previous.session_id = ?1)) "
            "RETURNING parent_seq"
        )

    def insert_params(
        self, session: str, seq: int, name: str, now: str, data: str, size: int, meta: str = "{}"
    ) -> tuple[Any, ...]:
        params: tuple[Any, ...] = (session, seq, name, now, data, meta)
        params += (False,) if self.pinned else ()
        return params + ((size,) if self.accounting else ())

    @property
    def bulk_insert(self) -> str:
        """An INSERT with the parent given (executemany takes no RETURNING)."""
        columns = "session_id, seq, name, created_at, data, metadata"
        columns += ", pinned" if self.pinned else ""
        columns += ", payload_bytes" if self.accounting else ""
        columns += ", parent_seq" if self.tree else ""
        marks = ", ".join("?" * (6 + self.pinned + self.accounting + self.tree))
        return f"INSERT INTO checkpoints ({columns}) VALUES ({marks})"

    def select(self, where: str = "") -> str:
        pinned = ", pinned" if self.pinned else ""
        pinned += ", parent_seq" if self.tree else ""
        return (
            f"SELECT seq, name, created_at, data, metadata{pinned} FROM checkpoints "
            f"WHERE session_id = ?{where}"
        )


class RawStore:
    """The same work done with the sqlite3 module alone, on our schema and pragmas."""

    def __init__(self, path: Path, synchronous: str, ddl: Sequence[str] = ()) -> None:
        self.session = SESSION
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        for pragma in (
            "busy_timeout = 30000",
            "journal_mode = WAL",
            f"synchronous = {synchronous}",
            "foreign_keys = ON",
        ):
            self.conn.execute(f"PRAGMA {pragma}")
        for statement in ddl:
            self.conn.execute(statement)
        self.sql = sql = RawSQL.for_database(self.conn)
        self.latest = sql.select(" ORDER BY seq DESC LIMIT 1")
        self.by_seq = sql.select(" AND seq = ?")
        self.by_name = sql.select(" AND name = ? ORDER BY seq DESC LIMIT ?")
        self.since = sql.select(" AND created_at > ? ORDER BY seq")
        self.newest = sql.select(" ORDER BY seq DESC LIMIT ?")
        self.meta_match = sql.select(
            " AND json_extract(metadata, '$.step') = ? ORDER BY seq DESC LIMIT ?"
        )

    def create(self, name: str, data: dict[str, Any]) -> str:
        now = datetime.now(UTC).strftime(TIME_FORMAT)
        data_json = dumps(data)
        size = len(data_json.encode()) + 2  # + the metadata, "{}"
        sql = self.sql
        cursor = self.conn.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        try:
            seq, *_counters_and_policy = cursor.execute(
                sql.upsert, sql.upsert_params(self.session, now, size)
            ).fetchone()
            cursor.execute(
                sql.insert, sql.insert_params(self.session, seq, name, now, data_json, size)
            )
            if sql.tree:
                cursor.fetchone()  # the parent's seq, which the returned id would carry
            cursor.execute("COMMIT")
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        return f"{self.session}:{seq}"

    def _row(self, row: Sequence[Any]) -> tuple[Any, ...]:
        seq, name, created_at, data, meta, *rest = row
        decoded: tuple[Any, ...] = (
            f"{self.session}:{seq}",
            name,
            datetime.fromisoformat(created_at),
            json.loads(data),
            json.loads(meta),
        )
        if self.sql.pinned:
            decoded += (bool(rest[0]),)
        if self.sql.tree:
            decoded += (None if rest[-1] is None else f"{self.session}:{rest[-1]}",)
        return decoded

    def _one(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        row = self.conn.execute(sql, params).fetchone()
        return None if row is None else self._row(row)

    def get_latest(self) -> tuple[Any, ...] | None:
        return self._one(self.latest, (self.session,))

    def get(self, checkpoint_id: str) -> tuple[Any, ...] | None:
        session, _, seq = checkpoint_id.rpartition(":")
        return self._one(self.by_seq, (session, int(seq)))

    def get_latest_name(self, name: str) -> tuple[Any, ...] | None:
        return self._one(self.by_name, (self.session, name, 1))

    def get_by_name(self, name: str, limit: int) -> list[tuple[Any, ...]]:
        rows = self.conn.execute(self.by_name, (self.session, name, limit)).fetchall()
        return [self._row(row) for row in rows]

    def get_since(self, start: datetime) -> list[tuple[Any, ...]]:
        rows = self.conn.execute(self.since, (self.session, start.strftime(TIME_FORMAT)))
        return [self._row(row) for row in rows.fetchall()]

    def newest_rows(self, limit: int) -> list[tuple[Any, ...]]:
        rows = self.conn.execute(self.newest, (self.session, limit)).fetchall()
        return [self._row(row) for row in rows]

    def step_match(self, step: int, limit: int) -> list[tuple[Any, ...]]:
        rows = self.conn.execute(self.meta_match, (self.session, step, limit)).fetchall()
        return [self._row(row) for row in rows]

    def close(self) -> None:
        self.conn.close()


class LangGraphStore:
    """LangGraph's SqliteSaver driven through its public API, one thread per session."""

    def __init__(self, path: Path, synchronous: str) -> None:
        self.conn = sqlite3.connect(path, check_same_thread=False)
        self.conn.execute(f"PRAGMA synchronous = {synchronous}")
        self.saver = SqliteSaver(self.conn)
        self.saver.setup()  # creates the tables and switches to WAL
        self.config: Any = {"configurable": {"thread_id": SESSION, "checkpoint_ns": ""}}
        self.base = empty_checkpoint()
        self.step = 0

    def create(self, name: str, data: dict[str, Any]) -> str:
        self.step += 1
        checkpoint = create_checkpoint(self.base, None, self.step)
        checkpoint["channel_values"] = data
        metadata: Any = {"source": "loop", "step": self.step, "name": name}
        self.config = self.saver.put(self.config, checkpoint, metadata, {})
        return str(self.config["configurable"]["checkpoint_id"])

    def _thread(self, checkpoint_id: str | None = None) -> Any:
        configurable: dict[str, Any] = {"thread_id": SESSION, "checkpoint_ns": ""}
        if checkpoint_id is not None:
            configurable["checkpoint_id"] = checkpoint_id
        return {"configurable": configurable}

    def get_latest(self) -> Any:
        return self.saver.get_tuple(self._thread())

    def get(self, checkpoint_id: str) -> Any:
        return self.saver.get_tuple(self._thread(checkpoint_id))

    def get_latest_name(self, name: str) -> Any:
        return next(iter(self.saver.list(self._thread(), filter={"name": name}, limit=1)), None)

    def get_by_name(self, name: str, limit: int) -> list[Any]:
        return list(self.saver.list(self._thread(), filter={"name": name}, limit=limit))

    def last(self, count: int) -> list[Any]:
        return list(self.saver.list(self._thread(), limit=count))

    def step_match(self, step: int, limit: int) -> list[Any]:
        return list(self.saver.list(self._thread(), filter={"step": step}, limit=limit))

    def close(self) -> None:
        self.conn.close()


def open_ours(path: Path, synchronous: str = "NORMAL") -> tuple[CheckpointStore, CheckpointManager]:
    store = CheckpointStore(path, synchronous=synchronous)
    return store, store.manager(SESSION, max_checkpoints=None, compress_after=None)


def creator(
    create: Callable[[str, dict[str, Any]], object], payloads: list[dict[str, Any]]
) -> Callable[[], object]:
    """A no-argument call that creates the next checkpoint (names cycle, payloads vary)."""
    state = {"seq": 0}

    def run() -> object:
        seq = state["seq"] = state["seq"] + 1
        return create(name_of(seq), payloads[seq % len(payloads)])

    return run


def wal_checkpoint(path: Path) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


# -- building large sessions ---------------------------------------------------------


def build_ours(path: Path, rows: int) -> None:
    """A session of ``rows`` checkpoints in our schema: row 1 by the store, the rest bulk."""
    with CheckpointStore(fresh(path)) as store:
        first = store.manager(SESSION, None, None).create(FIRST_NAME, make_payload(1))
    template = dumps(make_payload(987654321))
    base = first.timestamp
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("PRAGMA cache_size = -262144")
        sql = RawSQL.for_database(conn)
        conn.execute("BEGIN")

        def generate() -> Iterator[tuple[Any, ...]]:
            for seq in range(2, rows + 1):
                created = (base + timedelta(milliseconds=seq)).strftime(TIME_FORMAT)
                data = template.replace("987654321", str(seq), 1)
                # As LangGraph's metadata carries the step: what find(metadata=...) looks for.
                meta = dumps({"step": seq})
                size = len(data.encode()) + len(meta.encode())
                params = sql.insert_params(SESSION, seq, name_of(seq), created, data, size, meta)
                yield params + ((seq - 1,) if sql.tree else ())

        conn.executemany(sql.bulk_insert, generate())
        conn.execute(
            "UPDATE sessions SET last_seq = ?, checkpoint_count = ? WHERE id = ?",
            (rows, rows, SESSION),
        )
        if sql.accounting:
            conn.execute(
                "UPDATE sessions SET payload_bytes = "
                "(SELECT sum(payload_bytes) FROM checkpoints WHERE session_id = ?) WHERE id = ?",
                (SESSION, SESSION),
            )
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def raw_compact(raw: RawStore, keep_recent: int) -> int:
    """Our compaction policy in raw SQL: keep the first, the newest ``keep_recent``,
    the newest of each name among the rest (and pinned rows); one DELETE.
    """
    session = raw.session
    conn = raw.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        (first,) = conn.execute(
            "SELECT min(seq) FROM checkpoints WHERE session_id = ?", (session,)
        ).fetchone()
        (cutoff,) = conn.execute(
            "SELECT min(seq) FROM (SELECT seq FROM checkpoints WHERE session_id = ? "
            "ORDER BY seq DESC LIMIT ?)",
            (session, keep_recent),
        ).fetchone()
        unpinned = " AND pinned = 0" if raw.sql.pinned else ""
        delete = (
            "DELETE FROM checkpoints WHERE session_id = ? AND seq > ? AND seq < ?"
            f"{unpinned} AND seq NOT IN (SELECT max(seq) FROM checkpoints "
            "WHERE session_id = ? AND seq < ? GROUP BY name)"
        )
        params = (session, first, cutoff, session, cutoff)
        if raw.sql.accounting:
            sizes = conn.execute(delete + " RETURNING payload_bytes", params).fetchall()
            deleted = len(sizes)
            conn.execute(
                "UPDATE sessions SET checkpoint_count = checkpoint_count - ?, "
                "payload_bytes = payload_bytes - ? WHERE id = ?",
                (deleted, sum(size for (size,) in sizes), session),
            )
        else:
            deleted = conn.execute(delete, params).rowcount
            conn.execute(
                "UPDATE sessions SET checkpoint_count = checkpoint_count - ? WHERE id = ?",
                (deleted, session),
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return int(deleted)


def secure_delete_default() -> str:
    conn = sqlite3.connect(":memory:")
    try:
        (value,) = conn.execute("PRAGMA secure_delete").fetchone()
    finally:
        conn.close()
    return "on" if value else "off"


def build_langgraph(path: Path, rows: int) -> list[str]:
    """A LangGraph thread of ``rows`` checkpoints, serialised by its own serializer."""
    lg = LangGraphStore(fresh(path), "OFF")
    serde = lg.saver.serde
    ids: list[str] = []
    parent: str | None = None

    def generate() -> Iterator[tuple[Any, ...]]:
        nonlocal parent
        for seq in range(1, rows + 1):
            checkpoint = create_checkpoint(lg.base, None, seq, id=str(uuid6(clock_seq=seq)))
            checkpoint["channel_values"] = make_payload(seq)
            type_, blob = serde.dumps_typed(checkpoint)
            meta = json.dumps({"source": "loop", "step": seq, "name": name_of(seq)}).encode()
            ids.append(checkpoint["id"])
            yield (SESSION, "", checkpoint["id"], parent, type_, blob, meta)
            parent = checkpoint["id"]

    with lg.conn:
        lg.conn.executemany(
            "INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, "
            "parent_checkpoint_id, type, checkpoint, metadata) VALUES (?, ?, ?, ?, ?, ?, ?)",
            generate(),
        )
    lg.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    lg.close()
    return ids


# -- the benchmarks ---------------------------------------------------------------


@dataclass
class Bench:
    work: Path
    sizes: dict[str, Any]
    report: Report
    with_langgraph: bool
    ddl: list[str] = field(default_factory=list)
    scale_files: dict[int, Path] = field(default_factory=dict)
    payload_bytes: float = 0.0

    def __post_init__(self) -> None:
        with CheckpointStore(self.work / "schema.db"):
            pass
        self.ddl = schema_ddl(self.work / "schema.db")
        self.payloads = [make_payload(step) for step in range(1, 101)]
        self.payload_bytes = statistics.mean(len(dumps(p).encode()) for p in self.payloads)

    # -- create ---------------------------------------------------------------------

    def create_rates(self) -> None:
        rows: list[list[Any]] = []
        for synchronous, calls, rounds in (
            ("NORMAL", "creates", "rounds"),
            ("FULL", "creates_full", "rounds_full"),
        ):
            n = self.sizes[calls]
            store, mgr = open_ours(fresh(self.work / f"ours-{synchronous}.db"), synchronous)
            raw = RawStore(fresh(self.work / f"raw-{synchronous}.db"), synchronous, self.ddl)
            runners: dict[str, Callable[[], object]] = {
                "ours": creator(mgr.create, self.payloads),
                "raw": creator(raw.create, self.payloads),
            }
            lg = None
            if self.with_langgraph:
                lg = LangGraphStore(fresh(self.work / f"langgraph-{synchronous}.db"), synchronous)
                runners["langgraph"] = creator(lg.create, self.payloads)
            stats = interleave(runners, n, self.sizes[rounds])
            store.close()
            raw.close()
            if lg is not None:
                lg.close()
            lgs = stats.get("langgraph")
            rows.append(
                [
                    f"create, synchronous={synchronous} (n={n})",
                    stats["ours"].median_us,
                    stats["ours"].p95_us,
                    stats["ours"].rate,
                    stats["raw"].median_us,
                    stats["raw"].p95_us,
                    stats["raw"].rate,
                    (lgs.median_us if lgs else None),
                    (lgs.p95_us if lgs else None),
                    (lgs.rate if lgs else None),
                    ratio(stats["ours"].rate, stats["raw"].rate),
                    ratio(stats["raw"].median_us, stats["ours"].median_us),
                    ratio((lgs.rate if lgs else None), stats["raw"].rate),
                    ratio(stats["ours"].rate, (lgs.rate if lgs else None)),
                ]
            )
            share = paired(stats["ours"], stats["raw"], rates=True)
            rows[-1].append(str(share))
            goal = CREATE_GOALS[synchronous]
            self.report.target(
                f"create >= {goal}x raw rate (synchronous={synchronous}), per round",
                str(share),
                share.median >= goal,
            )
            if lgs is not None:
                ahead = paired(stats["ours"], lgs, rates=True)
                self.report.target(
                    f"create ahead of LangGraph put (synchronous={synchronous})",
                    f"{ahead} of LangGraph's rate",
                    ahead.median > 1.0,
                )
        header = [
            "operation",
            "ours med µs",
            "ours p95",
            "ours /s",
            "raw med µs",
            "raw p95",
            "raw /s",
            "LG med µs",
            "LG p95",
            "LG /s",
            "ours/raw rate",
            "ours/raw by median",
            "LG/raw rate",
            "ours/LG rate",
            "ours/raw rate per round: median (range)",
        ]
        note = (
            "Raw sqlite3 runs the statements of the current schema: the counter-row upsert "
            "that also writes and returns the session's policy columns, and the INSERT that "
            "reads its parent (the newest row) in a subquery and returns it."
        )
        self.report.add(
            "Create rate (fresh files, compaction off)", note + "\n\n" + table(header, rows)
        )

    def file_sizes(self) -> None:
        n = self.sizes["creates"]
        sizes: dict[str, int] = {}
        for system in ("ours", "raw", "langgraph"):
            path = self.work / f"{system}-NORMAL.db"
            if path.exists():
                wal_checkpoint(path)
                sizes[system] = path.stat().st_size
        rows = [
            [system, size, size / n, size / n / self.payload_bytes, ratio(size, sizes["raw"])]
            for system, size in sizes.items()
        ]
        header = ["system", "file bytes", "bytes/checkpoint", "x payload", "x raw"]
        note = (
            f"{n} checkpoints each, payload {self.payload_bytes:.0f} bytes of JSON; "
            "WAL checkpointed into the file before measuring."
        )
        self.report.add("File size", note + "\n\n" + table(header, rows))
        share = ratio(sizes["ours"], sizes["raw"]) or 0.0
        self.report.target("file size <= 1.15x raw", f"{share:.3f}x", share <= 1.15)

    def async_creates(self) -> None:
        """The async_bench.py rows: async create vs sync create, and 50 tasks at once."""
        rounds = self.sizes["rounds"]
        figures = async_bench.measure(self.work / "async", rounds, self.sizes["async_calls"])
        rows = [
            [name, statistics.median(s.rounds), min(s.rounds), max(s.rounds)]
            for name, s in figures.items()
        ]
        body = (
            "Our async create against our sync create and LangGraph's AsyncSqliteSaver.aput "
            "(one call after another), and 50 tasks x 20 creates on one async store, at "
            "synchronous=NORMAL with compaction off (benchmarks/async_bench.py). Median of "
            f"{rounds} interleaved rounds, with the lowest and highest round."
        )
        self.report.add(
            "Async create (SQLite)",
            body + "\n\n" + table(["", "median", "lowest", "highest"], rows),
        )
        share = statistics.median(figures["async create µs"].rounds) / statistics.median(
            figures["sync create µs"].rounds
        )
        self.report.target("async create <= 1.5x sync create", f"{share:.2f}x", share <= 1.5)

    def compaction_cost(self) -> None:
        n = self.sizes["compaction_creates"]
        on_store = CheckpointStore(fresh(self.work / "compaction-on.db"))
        off_store = CheckpointStore(fresh(self.work / "compaction-off.db"))
        stats = interleave(
            {
                "on": creator(on_store.manager(SESSION).create, self.payloads),
                "off": creator(off_store.manager(SESSION, None, None).create, self.payloads),
            },
            n,
            self.sizes["rounds"],
        )
        live = len(on_store.manager(SESSION))
        on_store.close()
        off_store.close()
        share = ratio(stats["on"].rate, stats["off"].rate) or 0.0
        rows = [
            [label, s.median_us, s.p95_us, s.rate]
            for label, s in (("defaults (compaction on)", stats["on"]), ("off", stats["off"]))
        ]
        body = (
            f"{n} creates each at synchronous=NORMAL; defaults are max_checkpoints=100, "
            f"compress_after=50, keep_recent=20 ({live} live rows at the end). "
            f"Compaction on runs at {share:.2f}x the rate of compaction off."
        )
        self.report.add(
            "Compaction on vs off",
            body + "\n\n" + table(["create", "med µs", "p95 µs", "/s"], rows),
        )
        self.report.target(
            "compaction on costs <= 20% of create throughput",
            f"{(1 - share) * 100:.1f}% slower",
            share >= 0.8,
        )

    # -- lookups ---------------------------------------------------------------------------

    def lookups(self) -> None:
        reps = self.sizes["lookup_reps"]
        per_size: dict[int, dict[str, dict[str, Stat]]] = {}
        for rows in self.sizes["scale"]:
            started = time.perf_counter()
            path = self.work / f"scale-{rows}.db"
            build_ours(path, rows)
            self.scale_files[rows] = path
            built = time.perf_counter() - started
            lg_ids: list[str] = []
            lg_path = self.work / f"langgraph-scale-{rows}.db"
            with_lg = self.with_langgraph and rows <= self.sizes["langgraph_max_rows"]
            if with_lg:
                lg_ids = build_langgraph(lg_path, rows)
            print(
                f"  built {rows:,}-row sessions in {time.perf_counter() - started:.1f}s "
                f"(ours {built:.1f}s)",
                flush=True,
            )
            per_size[rows] = self._lookups_at(
                path, rows, reps, lg_path if with_lg else None, lg_ids
            )
        self._lookup_tables(per_size)

    def _lookups_at(
        self, path: Path, rows: int, reps: int, lg_path: Path | None, lg_ids: list[str]
    ) -> dict[str, dict[str, Stat]]:
        store, mgr = open_ours(path)
        raw = RawStore(path, "NORMAL")
        lg = LangGraphStore(lg_path, "NORMAL") if lg_path is not None else None
        rng = random.Random(rows)
        since = mgr.get(f"{SESSION}:{rows - 100}") or mgr.get_latest()
        assert since is not None
        start = since.timestamp

        def random_id() -> str:
            return f"{SESSION}:{rng.randint(1, rows)}"

        def random_lg_id() -> str:
            return lg_ids[rng.randrange(len(lg_ids))]

        ops: dict[str, dict[str, Callable[[], object]]] = {
            "get_latest()": {"ours": mgr.get_latest, "raw": raw.get_latest},
            "get(id), random id": {
                "ours": lambda: mgr.get(random_id()),
                "raw": lambda: raw.get(random_id()),
            },
            f"get_latest(name), recent name ({RECENT_NAME})": {
                "ours": lambda: mgr.get_latest(RECENT_NAME),
                "raw": lambda: raw.get_latest_name(RECENT_NAME),
            },
            f"get_latest(name), oldest name ({FIRST_NAME}, row 1 only)": {
                "ours": lambda: mgr.get_latest(FIRST_NAME),
                "raw": lambda: raw.get_latest_name(FIRST_NAME),
            },
            "get_by_name(name, limit=10)": {
                "ours": lambda: mgr.get_by_name(RECENT_NAME, 10),
                "raw": lambda: raw.get_by_name(RECENT_NAME, 10),
            },
            "get_since(), last 100": {
                "ours": lambda: mgr.get_since(start),
                "raw": lambda: raw.get_since(start),
            },
            "find(limit=10), newest 10": {
                "ours": lambda: list(mgr.find(limit=10)),
                "raw": lambda: raw.newest_rows(10),
            },
            "find(metadata={'step': n}, limit=1), n near the newest": {
                "ours": lambda: list(mgr.find(metadata={"step": rows - 5}, limit=1)),
                "raw": lambda: raw.step_match(rows - 5, 1),
            },
        }
        if lg is not None:
            lg_ops: list[Callable[[], object]] = [
                lg.get_latest,
                lambda: lg.get(random_lg_id()),
                lambda: lg.get_latest_name(RECENT_NAME),
                lambda: lg.get_latest_name(FIRST_NAME),
                lambda: lg.get_by_name(RECENT_NAME, 10),
                lambda: lg.last(100),
                lambda: lg.last(10),
                lambda: lg.step_match(rows - 5, 1),
            ]
            for runners, lg_run in zip(ops.values(), lg_ops, strict=True):
                runners["langgraph"] = lg_run
        results: dict[str, dict[str, Stat]] = {}
        for op, runners in ops.items():
            for run in runners.values():  # warm the caches
                for _ in range(20):
                    run()
            calls = reps
            # LangGraph's name lookups scan the thread: fewer calls at large sizes.
            if "langgraph" in runners and rows > 10_000 and "name" in op:
                slow = {"langgraph": runners.pop("langgraph")}
                results[op] = interleave(runners, calls, self.sizes["rounds"])
                results[op].update(interleave(slow, max(5, calls // 100), 1))
            else:
                results[op] = interleave(runners, calls, self.sizes["rounds"])
        store.close()
        raw.close()
        if lg is not None:
            lg.close()
        return results

    def _lookup_tables(self, per_size: dict[int, dict[str, dict[str, Stat]]]) -> None:
        header = [
            "operation",
            "ours med µs",
            "ours p95",
            "raw med µs",
            "raw p95",
            "LG med µs",
            "LG p95",
            "ours/raw",
            "LG/raw",
            "ours/raw per round: median (range)",
        ]
        sizes = sorted(per_size)
        smallest, largest = sizes[0], sizes[-1]
        targeted = ("get_latest()", "get(id)", "get_latest(name)", "find(")
        for rows in sizes:
            body_rows = []
            for op, stats in per_size[rows].items():
                ours, raw, lg = stats["ours"], stats["raw"], stats.get("langgraph")
                body_rows.append(
                    [
                        op,
                        ours.median_us,
                        ours.p95_us,
                        raw.median_us,
                        raw.p95_us,
                        (lg.median_us if lg else None),
                        (lg.p95_us if lg else None),
                        ratio(ours.median_us, raw.median_us),
                        ratio((lg.median_us if lg else None), raw.median_us),
                        str(paired(ours, raw, rates=False)),
                    ]
                )
                if op.startswith(targeted):
                    share = paired(ours, raw, rates=False)
                    self.report.target(
                        f"{op} <= {READ_GOAL}x raw latency at {rows:,} rows, per round",
                        str(share),
                        share.median <= READ_GOAL,
                    )
                if op.startswith("find(") and lg is not None:
                    ahead = paired(ours, lg, rates=False)
                    self.report.target(
                        f"{op} faster than LangGraph's list at {rows:,} rows, per round",
                        f"{ahead} of LangGraph's latency",
                        ahead.median < 1.0,
                    )
            note = _LOOKUP_NOTE + "\n\n" if rows == smallest else ""
            self.report.add(
                f"Lookups in a session of {rows:,} checkpoints",
                note + table(header, body_rows),
            )
        growth_rows = []
        for op in per_size[smallest]:
            row: list[Any] = [op]
            for system in ("ours", "raw"):
                base = per_size[smallest][op][system].median_us
                row += [per_size[rows][op][system].median_us / base for rows in sizes[1:]]
            growth_rows.append(row)
            if largest > smallest:
                growth = (
                    per_size[largest][op]["ours"].median_us
                    / per_size[smallest][op]["ours"].median_us
                )
                self.report.target(
                    f"{op} at {largest:,} rows <= 1.3x its latency at {smallest:,}",
                    f"{growth:.2f}x",
                    growth <= 1.3,
                )
        growth_header = ["operation"] + [
            f"{system} {rows:,} / {smallest:,}" for system in ("ours", "raw") for rows in sizes[1:]
        ]
        self.report.add(
            "Lookup growth with session size (median latency relative to the smallest session)",
            table(growth_header, growth_rows),
        )

    # -- compaction of a large session -------------------------------------------------------

    def compact_time(self) -> None:
        rows = self.sizes["compact_rows"]
        source = self.scale_files.get(rows)
        if source is None:
            source = self.work / f"scale-{rows}.db"
            build_ours(source, rows)
        labels = ("compact()", "compact(dry_run=True)", "raw: one DELETE of the same rows")
        results: dict[str, list[float]] = {label: [] for label in labels}
        removed: dict[str, int] = {}
        remaining = 0
        for rep in range(self.sizes["compact_reps"]):
            for label in labels:
                copy = fresh(self.work / f"compact-{rep}.db")
                shutil.copyfile(source, copy)
                copy.chmod(0o600)  # as our store creates files; it warns about others
                gc.collect()
                if label.startswith("raw"):
                    raw = RawStore(copy, "NORMAL")
                    started = time.perf_counter()
                    removed[label] = raw_compact(raw, KEEP_RECENT)
                    results[label].append(time.perf_counter() - started)
                    raw.close()
                else:
                    with CheckpointStore(copy) as store:
                        mgr = store.manager(SESSION, None, None, keep_recent=KEEP_RECENT)
                        started = time.perf_counter()
                        report = mgr.compact(dry_run=label != "compact()")
                        results[label].append(time.perf_counter() - started)
                        removed[label], remaining = len(report.removed), report.remaining
                fresh(copy)
        table_rows = [
            [label, removed[label], statistics.median(times) * 1000, min(times) * 1000]
            for label, times in results.items()
        ]
        body = (
            f"A {rows:,}-row session (4 names cycling, keep_recent={KEEP_RECENT}); "
            f"{remaining} rows stay. Median of {self.sizes['compact_reps']} runs, each on a "
            "fresh copy of the session. The dry run reports what would go and deletes nothing; "
            "raw sqlite3 finds the bounds, deletes the same rows in one DELETE and updates the "
            "counter row, in one transaction. Both run with the SQLite library's default "
            f"secure_delete (here {secure_delete_default()})."
        )
        self.report.add(
            f"Compacting a {rows:,}-row session",
            body + "\n\n" + table(["call", "rows removed", "median ms", "min ms"], table_rows),
        )
        total = statistics.median(results["compact()"])
        raw_total = statistics.median(results["raw: one DELETE of the same rows"])
        self.report.target(
            f"compacting {rows:,} rows well under a second",
            f"{total * 1000:.0f} ms ({total / raw_total:.2f}x raw's DELETE)",
            total < 1.0,
        )

    # -- process start and memory -----------------------------------------------------------

    def _python(self, code: str, *args: str, launcher: bool = False) -> tuple[float, str]:
        """Run ``python -c code args`` in a fresh process: (wall seconds, stdout).

        With ``launcher``, a small Python process starts it: on Linux a child's
        ``ru_maxrss`` starts at the peak RSS of the process that spawned it,
        and this benchmark's own process is large.
        """
        command = [sys.executable, "-c", code, *args]
        if launcher:
            command = [sys.executable, "-c", _LAUNCHER, *command]
        started = time.perf_counter()
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        return time.perf_counter() - started, done.stdout.strip()

    def startup(self) -> None:
        ours_path = self.work / "start-ours.db"
        with CheckpointStore(fresh(ours_path)):
            pass  # up to date before any timed start
        raw_path = fresh(self.work / "start-raw.db")
        raw = RawStore(raw_path, "NORMAL", self.ddl)
        sql = raw.sql
        raw.close()
        payload = dumps(make_payload(1))
        programs: dict[str, str] = {
            'python -c "import sqlite3"': "import sqlite3",
            "import checkpointdb": "import checkpointdb",
            "ours: open store + create 1": (
                "import sys, json\n"
                "from checkpointdb import CheckpointStore\n"
                "store = CheckpointStore(sys.argv[1])\n"
                "store.manager('boot', None, None).create('start', json.loads(sys.argv[2]))\n"
                "print(*(any(m == p or m.startswith(p + '.') for m in sys.modules) for p in "
                "('alembic', 'sqlalchemy.dialects.postgresql', 'sqlalchemy')), sep=',')"
            ),
            "raw: connect + create 1": (
                "import sys, json, sqlite3\n"
                "from datetime import UTC, datetime\n"
                "conn = sqlite3.connect(sys.argv[3], isolation_level=None)\n"
                "for pragma in ('busy_timeout = 30000', 'journal_mode = WAL', "
                "'synchronous = NORMAL', 'foreign_keys = ON'):\n"
                "    conn.execute('PRAGMA ' + pragma)\n"
                f"now = datetime.now(UTC).strftime({TIME_FORMAT!r})\n"
                "data = json.dumps(json.loads(sys.argv[2]), separators=(',', ':'))\n"
                "size = len(data.encode()) + 2\n"
                "conn.execute('BEGIN IMMEDIATE')\n"
                f"params = ('boot', now, now) + ((size, size) if {sql.accounting} else ())\n"
                f"seq = conn.execute({sql.upsert!r}, params).fetchone()[0]\n"
                "params = ('boot', seq, 'start', now, data, '{}')\n"
                f"params += (False,) if {sql.pinned} else ()\n"
                f"params += (size,) if {sql.accounting} else ()\n"
                f"conn.execute({sql.insert!r}, params)\n"
                "conn.execute('COMMIT')"
            ),
        }
        if self.with_langgraph:
            lg_path = fresh(self.work / "start-langgraph.db")
            LangGraphStore(lg_path, "NORMAL").close()
            programs["LangGraph: import + put 1"] = (
                "import sys, json, sqlite3\n"
                "from langgraph.checkpoint.base import create_checkpoint, empty_checkpoint\n"
                "from langgraph.checkpoint.sqlite import SqliteSaver\n"
                "conn = sqlite3.connect(sys.argv[4], check_same_thread=False)\n"
                "conn.execute('PRAGMA synchronous = NORMAL')\n"
                "saver = SqliteSaver(conn)\n"
                "checkpoint = create_checkpoint(empty_checkpoint(), None, 1)\n"
                "checkpoint['channel_values'] = json.loads(sys.argv[2])\n"
                "config = {'configurable': {'thread_id': 'boot', 'checkpoint_ns': ''}}\n"
                "saver.put(config, checkpoint, {'name': 'start'}, {})"
            )
        args = (
            str(ours_path),
            payload,
            str(raw_path),
            str(self.work / "start-langgraph.db"),
        )
        times: dict[str, list[float]] = {label: [] for label in programs}
        seen = set()
        for _ in range(self.sizes["startup_reps"]):
            for label, code in programs.items():
                elapsed, out = self._python(code, *args)
                times[label].append(elapsed)
                if label.startswith("ours"):
                    seen.add(out)
        base = statistics.median(times['python -c "import sqlite3"'])
        rows = [
            [
                label,
                statistics.median(t) * 1000,
                min(t) * 1000,
                max(t) * 1000,
                statistics.median(t) / base,
            ]
            for label, t in times.items()
        ]
        loaded = [any(flags.split(",")[i] == "True" for flags in seen) for i in range(3)]
        note = (
            f"Wall time of a fresh `{Path(sys.executable).name}` process, median of "
            f"{self.sizes['startup_reps']} rounds (each round runs every program once, in "
            "turn), each program run as `python -c` against a database that is already at "
            "the current schema."
        )
        header = ["process", "median ms", "min ms", "max ms", "x import sqlite3"]
        self.report.add("Whole-process start", note + "\n\n" + table(header, rows))
        for index, (what, module) in enumerate(
            (
                ("Alembic", "alembic"),
                ("the PostgreSQL dialect", "sqlalchemy.dialects.postgresql"),
                ("SQLAlchemy", "sqlalchemy"),
            )
        ):
            self.report.target(
                f"opening an up-to-date SQLite store does not import {what} ({module})",
                "imported" if loaded[index] else "not imported",
                not loaded[index],
            )
        if "LangGraph: import + put 1" in times:
            ours = times["ours: open store + create 1"]
            theirs = times["LangGraph: import + put 1"]
            share = Paired(
                statistics.median(ours) / statistics.median(theirs),
                min(a / b for a, b in zip(ours, theirs, strict=True)),
                max(a / b for a, b in zip(ours, theirs, strict=True)),
                len(ours),
            )
            self.report.target(
                "import + open + create 1 at most LangGraph's import + put 1 (process wall time)",
                f"{share} of LangGraph's time",
                share.median <= 1.0,
            )

    def iterate_memory(self) -> None:
        rows = max(self.scale_files)
        path = self.scale_files[rows]
        ours = _MEMORY_PRELUDE + (
            "from checkpointdb import CheckpointStore\n"
            "store = CheckpointStore(sys.argv[1])\n"
            "mgr = store.manager('bench', None, None)\n"
            "before = peaks()\n"
            "started = time.perf_counter()\n"
            "count = sum(1 for _ in mgr)\n"
            "report(count, before, started)"
        )
        raw = _MEMORY_PRELUDE + (
            "import json, sqlite3\n"
            "from datetime import datetime\n"
            "conn = sqlite3.connect(sys.argv[1])\n"
            "before = peaks()\n"
            "started = time.perf_counter()\n"
            "count = 0\n"
            "for seq, name, created, data, meta, pinned, parent in conn.execute("
            "'SELECT seq, name, created_at, data, metadata, pinned, parent_seq FROM checkpoints "
            "WHERE session_id = ? ORDER BY seq', ('bench',)):\n"
            "    (f'bench:{seq}', name, datetime.fromisoformat(created), json.loads(data),\n"
            "     json.loads(meta), bool(pinned), None if parent is None else f'bench:{parent}')\n"
            "    count += 1\n"
            "report(count, before, started)"
        )
        table_rows = []
        peaks: dict[str, float] = {}
        seconds: dict[str, list[float]] = {}
        labels = (("ours: for cp in mgr", ours), ("raw: one streaming cursor", raw))
        for rep in range(self.sizes["iterate_reps"]):
            for label, code in labels if rep % 2 == 0 else labels[::-1]:
                _, out = self._python(code, str(path), launcher=True)
                count, before, peak, hwm, elapsed = out.split()
                peaks[label] = max(peaks.get(label, 0.0), int(peak) / 1024)
                seconds.setdefault(label, []).append(float(elapsed))
                if rep == 0:
                    table_rows.append(
                        [
                            label,
                            int(count),
                            int(before) / 1024,
                            int(peak) / 1024,
                            (int(peak) - int(before)) / 1024,
                            int(hwm) / 1024 if int(hwm) else None,
                        ]
                    )
        for row in table_rows:
            times = seconds[row[0]]
            row += [
                statistics.median(times),
                min(times),
                max(times),
                row[1] / statistics.median(times),
            ]
        header = [
            "iteration",
            "rows",
            "ru_maxrss before MB",
            "ru_maxrss after MB",
            "growth MB",
            "VmHWM after MB",
            "median s",
            "min s",
            "max s",
            "rows/s (median)",
        ]
        note = (
            "A fresh process (started by a small launcher, so that ru_maxrss does not "
            "inherit this benchmark's size) opens the store and iterates the whole "
            "session; peak RSS is resource.getrusage(RUSAGE_SELF).ru_maxrss, "
            "cross-checked with VmHWM from /proc/self/status (first run shown). "
            f"{self.sizes['iterate_reps']} runs each, ours and raw alternating; times are "
            "the iteration alone. Raw decodes each row as the store does (timestamp, both "
            "JSON columns, pinned, parent id)."
        )
        self.report.add(
            f"Iterating {rows:,} checkpoints", note + "\n\n" + table(header, table_rows)
        )
        ours_peak = peaks["ours: for cp in mgr"]
        self.report.target(
            f"iterating {rows:,} checkpoints < 100 MB peak RSS",
            f"{ours_peak:.0f} MB",
            ours_peak < 100,
        )
        ours_times, raw_times = seconds["ours: for cp in mgr"], seconds["raw: one streaming cursor"]
        share = Paired(
            statistics.median(ours_times) / statistics.median(raw_times),
            min(a / b for a, b in zip(ours_times, raw_times, strict=True)),
            max(a / b for a, b in zip(ours_times, raw_times, strict=True)),
            len(ours_times),
        )
        self.report.target(
            f"iterating {rows:,} checkpoints <= {ITERATE_GOAL}x a raw streaming cursor's time",
            str(share),
            share.median <= ITERATE_GOAL,
        )


_LOOKUP_NOTE = (
    "Raw sqlite3 runs the same indexed SELECTs on the same file and decodes the rows the "
    "same way (timestamp text to an aware datetime, both JSON columns to dicts). "
    "LangGraph's equivalents: `get_tuple(thread)` (latest), `get_tuple(checkpoint_id)`, "
    "`list(thread, filter={'name': ...}, limit=1 or 10)` (its metadata filter is "
    "`json_extract` on every row of the thread, newest first, so an old name means a "
    "scan), and `list(thread, limit=100)` for the last 100 (it has no time query; each "
    "listed checkpoint costs one more query for its pending writes). At the largest "
    "sizes LangGraph's name lookups get 1/100 of the calls, as each is a scan."
)

# Starts the command in its argv and exits with its status.
_LAUNCHER = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"

# Helpers for the memory subprocesses: peak RSS in KiB, then one result line.
_MEMORY_PRELUDE = """import resource, sys, time
def peaks():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
def hwm():
    try:
        with open('/proc/self/status') as status:
            return next(int(line.split()[1]) for line in status if line.startswith('VmHWM:'))
    except (OSError, StopIteration):
        return 0
def report(count, before, started):
    elapsed = time.perf_counter() - started
    print(count, before, peaks(), hwm(), elapsed)
"""


# -- the run ------------------------------------------------------------------------------


def versions() -> list[tuple[str, str]]:
    import sqlalchemy

    import checkpointdb

    def version(package: str) -> str:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=HERE,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "src", "migrations"],
            cwd=HERE.parent,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if changed:
            commit += ", with uncommitted changes in src/ or migrations/"
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return [
        ("checkpointdb", f"{checkpointdb.__version__} (commit {commit})"),
        ("Python", platform.python_version()),
        ("SQLite (library)", sqlite3.sqlite_version),
        ("SQLAlchemy", sqlalchemy.__version__),
        ("langgraph-checkpoint-sqlite", version("langgraph-checkpoint-sqlite")),
        ("langgraph-checkpoint", version("langgraph-checkpoint")),
    ]


def machine(work: Path, load_at_start: tuple[float, ...]) -> list[tuple[str, str]]:
    cpu = platform.processor() or "unknown"
    memory = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    filesystem = "unknown"
    try:
        best = ""
        for line in Path("/proc/mounts").read_text().splitlines():
            _, mount, kind, *_ = line.split()
            if str(work).startswith(mount) and len(mount) > len(best):
                best, filesystem = mount, f"{kind} (mounted at {mount})"
    except OSError:
        pass
    return [
        ("OS", platform.platform()),
        ("CPU", f"{cpu}, {os.cpu_count()} cores"),
        ("memory", memory),
        ("scratch filesystem", filesystem),
        (
            "load average (1, 5, 15 min) at the start",
            "{:.2f}, {:.2f}, {:.2f}".format(*load_at_start),
        ),
        (
            "load average (1, 5, 15 min) at the end",
            "{:.2f}, {:.2f}, {:.2f}".format(*os.getloadavg()),
        ),
    ]


def write_results(
    path: Path,
    report: Report,
    work: Path,
    argv: list[str],
    seconds: float,
    load_at_start: tuple[float, ...],
) -> None:
    lines = [
        "# Benchmark results",
        "",
        f"Written by `python benchmarks/bench.py{' ' + ' '.join(argv) if argv else ''}` on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC in {seconds / 60:.1f} minutes. "
        "Method: see the docstring of `benchmarks/bench.py`; in short, every system works "
        "on fresh files, on the same ~1 KB JSON payloads, in alternating rounds; latencies "
        "are per call (median, p95), rates are calls over total time. `LG` is LangGraph's "
        "SqliteSaver. Ratios are ours / raw (rates) or latency / raw latency (lookups).",
        "",
        "## Machine",
        "",
        table(["", ""], machine(work, load_at_start)),
        "",
        "## Versions",
        "",
        table(["", ""], versions()),
        "",
        "## Targets",
        "",
        table(
            ["target", "measured", "met"],
            [
                [t.goal, t.measured, "-" if t.met is None else ("yes" if t.met else "**no**")]
                for t in report.targets
            ],
        ),
    ]
    for title, body in report.sections:
        lines += ["", f"## {title}", "", body]
    path.write_text("\n".join(lines) + "\n")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes; prints only")
    parser.add_argument("--creates", type=int, help="creates per system at NORMAL")
    parser.add_argument(
        "--scale",
        help="comma-separated session sizes for the lookup and memory runs, e.g. 1000,100000",
    )
    parser.add_argument("--compact-rows", type=int, help="size of the session compacted")
    parser.add_argument("--lookup-reps", type=int, help="calls per lookup, system and size")
    parser.add_argument("--no-langgraph", action="store_true", help="skip LangGraph's columns")
    parser.add_argument(
        "--results",
        type=Path,
        help="where to write the Markdown results (default: benchmarks/RESULTS.md on a "
        "full run, nothing with --quick)",
    )
    parser.add_argument("--workdir", type=Path, help="scratch directory (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch files")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    sizes = dict(QUICK_SIZES if args.quick else FULL_SIZES)
    if args.creates:
        sizes["creates"] = sizes["compaction_creates"] = args.creates
    if args.scale:
        sizes["scale"] = tuple(sorted(int(part) for part in args.scale.split(",")))
    if args.compact_rows:
        sizes["compact_rows"] = args.compact_rows
    if args.lookup_reps:
        sizes["lookup_reps"] = args.lookup_reps
    results = args.results if args.results else (None if args.quick else HERE / "RESULTS.md")
    with_langgraph = HAVE_LANGGRAPH and not args.no_langgraph
    if not HAVE_LANGGRAPH and not args.no_langgraph:
        print(
            "langgraph-checkpoint-sqlite is not installed: skipping its columns "
            "(pip install 'checkpointdb[bench]')",
            flush=True,
        )
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="checkpointdb-bench-", dir=args.workdir))
    report = Report()
    load_at_start = os.getloadavg()
    started = time.perf_counter()
    try:
        bench = Bench(work, sizes, report, with_langgraph)
        bench.create_rates()
        bench.file_sizes()
        bench.compaction_cost()
        bench.async_creates()
        bench.lookups()
        bench.compact_time()
        bench.startup()
        bench.iterate_memory()
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    elapsed = time.perf_counter() - started
    print("\n## Targets\n")
    print(
        table(
            ["target", "measured", "met"],
            [[t.goal, t.measured, "yes" if t.met else "NO"] for t in report.targets],
        )
    )
    print(f"\nDone in {elapsed / 60:.1f} minutes.")
    if results is not None:
        write_results(results, report, work, argv, elapsed, load_at_start)
        print(f"Wrote {results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
