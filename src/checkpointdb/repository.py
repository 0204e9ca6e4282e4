"""Every SQL statement checkpointdb runs, built once from the ORM tables.

Statements are SQLAlchemy Core constructs compiled once per dialect when the
store opens, then executed on the pooled DBAPI cursor: this keeps one
definition of each query for SQLite and PostgreSQL while skipping the
per-statement overhead of SQLAlchemy's execution layer on the hot paths.

The repository knows SQL and nothing about policy: *when* to compact, how
many to keep and what an id looks like are the manager's business.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from operator import itemgetter
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from .checkpoint import FORK_HISTORIES, Checkpoint, RetentionPolicy, SessionInfo, format_id
from .engine import Cursor, Database
from .errors import CorruptDatabaseError
from .query import FindQuery, FindShape
from .types import decode_json, decode_time, encode_time_text, jsonb_text, require_aware

if TYPE_CHECKING:
    from sqlalchemy.engine import Compiled, Dialect
    from sqlalchemy.sql import Select
    from sqlalchemy.sql.elements import ClauseElement

# Rows fetched per round trip when streaming a session.
PAGE_SIZE = 500
# Compiled find() statements a repository keeps, one per query shape; real
# programs use a handful of shapes, so this bound only stops runaway growth.
_FIND_STATEMENTS_KEPT = 256
# The advisory lock's first key for schema migrations ("cpdb").
_MIGRATION_LOCK_KEY = 0x63706462
# Larger than any seq: "no row is recent" when keep_recent is 0.
_NO_CUTOFF = 2**62

# Later than any created_at: "no age limit" for retention statements.
END_OF_TIME = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


@dataclass(frozen=True)
class _Compiled:
    """SQL text for one dialect plus the values of its constant parameters."""

    sql: str
    constants: dict[str, Any]


class NewRow(NamedTuple):
    """A checkpoint about to be inserted, its payloads already validated and encoded.

    A NamedTuple: every create builds one, and that costs a third of a frozen dataclass.
    """

    seq: int
    name: str
    created_at: datetime
    data_json: str
    metadata_json: str
    payload_bytes: int
    pinned: bool = False
    parent_seq: int | None = None


class Removed(NamedTuple):
    """A row a retention statement deleted (a tuple: compaction makes 100k of them)."""

    seq: int
    payload_bytes: int


class CheckpointSpan(NamedTuple):
    """One session's live checkpoints: how many, and the oldest and newest created_at."""

    session_id: str
    checkpoint_count: int
    first: datetime
    last: datetime


class Allocation(NamedTuple):
    """What taking seqs returns: the session's counters and its stored policy columns."""

    last_seq: int
    live: int
    policy: StoredPolicy


# A session row's max_checkpoints, compress_after, keep_recent as stored
# (the manager gives NULL and -1 their meaning).
StoredPolicy = tuple[int | None, int | None, int | None]
# Policy columns to write: None leaves a column as it is.
NO_POLICY: StoredPolicy = (None, None, None)



@dataclass(frozen=True)
class NameCount:
    """How many live checkpoints carry one name."""

    name: str
    count: int


class Repository:
    """The SQL of the store, compiled for one dialect; methods run on a DBAPI cursor."""

    def __init__(self, dialect: Dialect | str, where: str = "the database") -> None:
        """Compile every statement for ``dialect``.

        ``"sqlite"`` (a name, not a Dialect) takes the SQLite statements
        compiled in advance, without importing SQLAlchemy.
        """
        # The database as errors name it (a path, or a URL without password).
        self.where = where
        compiled: dict[str, _Compiled]
        self._find_statements: dict[FindShape, _FindStatement] = {}
        if isinstance(dialect, str):
            if dialect != "sqlite":
                raise ValueError(f"no precompiled statements for {dialect!r}; pass its Dialect")
            from .sqlite_statements import FIND_STATEMENTS, STATEMENTS

            self._dialect: Dialect | None = None
            name = dialect
            compiled = {key: _Compiled(*entry) for key, entry in STATEMENTS.items()}
            for shape, (sql, names, constants) in FIND_STATEMENTS.items():
                self._find_statements[shape] = _FindStatement(
                    sql, _values_in_order(names, constants)
                )
        else:
            from .statements import build_statements

            self._dialect = dialect
            name = dialect.name
            compiled = {key: self._compile(stmt) for key, stmt in build_statements(name).items()}
        self.dialect_name = name
        self._encode_time: Callable[[datetime], Any] = (
            encode_time_text if name == "sqlite" else require_aware
        )
        self._json_text: Callable[[str], str] = jsonb_text if name == "postgresql" else str
        self._allocate = compiled["allocate"]
        self._set_metadata = compiled["set_metadata"]
        self._insert = compiled["insert"]
        self._insert_on_newest = compiled["insert_on_newest"]
        # PostgreSQL only (see append).
        self._insert_at_last_seq = compiled.get("insert_at_last_seq")
        self._exists = compiled["exists"]
        self._lineage = compiled["lineage"]
        self._fork_totals = compiled["fork_totals"]
        self._get = compiled["get"]
        self._latest = compiled["latest"]
        self._by_name = compiled["by_name"]
        self._page = compiled["page"]
        self._page_desc = compiled["page_desc"]
        self._since = compiled["since"]
        self._between = compiled["between"]
        self._first = compiled["first"]
        self._name_counts = compiled["name_counts"]
        self._session = compiled["session"]
        self._sessions = compiled["sessions"]
        self._count = compiled["count"]
        self._compact = compiled["compact"]
        self._keep_reasons = compiled["keep_reasons"]
        self._cap = compiled["cap"]
        self._keep_newest = compiled["keep_newest"]
        self._pinned_count = compiled["pinned_count"]
        self._clear = compiled["clear"]
        self._expire = compiled["expire"]
        self._set_pinned = compiled["set_pinned"]
        self._delete_one = compiled["delete_one"]
        self._delete_after = compiled["delete_after"]
        self._delete_session = compiled["delete_session"]
        self._adjust_count = compiled["adjust_count"]
        self._set_counter = compiled["set_counter"]
        self._spans = compiled["spans"]
        self._session_span = compiled["session_span"]
        self._times = compiled["times"]
        self._session_times = compiled["session_times"]
        self._fork_copy = {
            history: compiled[f"fork_copy[{history}]"] for history in FORK_HISTORIES
        }
        self._lock_row = compiled.get("lock_row")
        # LIMIT that means "no limit": SQLite wants -1, PostgreSQL NULL.
        self._no_limit = -1 if name == "sqlite" else None
        if name == "postgresql":
            self._version_table = "SELECT to_regclass('alembic_version') IS NOT NULL"
        else:
            self._version_table = (
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' "
                "AND name = 'alembic_version'"
            )

    def statements(self) -> dict[str, str]:
        """Every statement compiled for this dialect, by name, in name order.

        ``fork_copy[lineage]`` names one of a family. The SQL text is exactly
        what runs, placeholders included; a few statements of maintenance
        (VACUUM, the migration lock, sizes) are written inline in their methods.
        """
        found: dict[str, str] = {}
        for attribute, value in vars(self).items():
            name = attribute.lstrip("_")
            if isinstance(value, _Compiled):
                found[name] = value.sql
            elif isinstance(value, str) and value.lstrip().upper().startswith("SELECT"):
                found[name] = value
            elif isinstance(value, dict) and attribute != "_find_statements":
                for key, member in value.items():
                    if isinstance(member, _Compiled):
                        found[f"{name}[{key}]"] = member.sql
        return dict(sorted(found.items()))

    @property
    def dialect(self) -> Dialect:
        """The SQLAlchemy dialect the statements are compiled for (SQLite: made on first use)."""
        if self._dialect is None:
            from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

            self._dialect = SQLiteDialect_pysqlite(paramstyle="named")
        return self._dialect

    def _compile(self, stmt: ClauseElement) -> _Compiled:
        compiled = stmt.compile(dialect=self.dialect)
        return _Compiled(str(compiled), _constants(compiled))

    @staticmethod
    def _bound(stmt: _Compiled, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """A statement's SQL and its parameters, constants included."""
        return stmt.sql, {**stmt.constants, **params} if stmt.constants else params

    @staticmethod
    def _run(cursor: Cursor, stmt: _Compiled, params: dict[str, Any]) -> Cursor:
        cursor.execute(*Repository._bound(stmt, params))
        return cursor

    def _row_to_checkpoint(self, session_id: str, row: Sequence[Any]) -> Checkpoint:
        seq, name, created_at, data, meta, pinned, parent_seq = row
        checkpoint_id = f"{session_id}:{seq}"  # format_id, inlined: once per row read
        try:
            return Checkpoint(
                checkpoint_id,
                name,
                decode_time(created_at),
                decode_json(data),
                # Most checkpoints carry no metadata: skip the parser for them.
                {} if meta == "{}" else decode_json(meta),
                bool(pinned),
                None if parent_seq is None else f"{session_id}:{parent_seq}",
            )
        except ValueError as exc:  # JSONDecodeError, or a malformed time text
            raise CorruptDatabaseError(
                f"{self.where}: checkpoint {checkpoint_id} holds a value that cannot be read "
                f"back ({exc}); the database was damaged outside checkpointdb"
            ) from exc

    def _checkpoints(self, session_id: str, cursor: Cursor) -> list[Checkpoint]:
        return [self._row_to_checkpoint(session_id, row) for row in cursor.fetchall()]

    def _one(self, session_id: str, cursor: Cursor) -> Checkpoint | None:
        row = cursor.fetchone()
        return None if row is None else self._row_to_checkpoint(session_id, row)

    # -- writes ---------------------------------------------------------------

    def allocate(
        self,
        cursor: Cursor,
        session_id: str,
        now: datetime,
        payload_bytes: int,
        rows: int = 1,
        policy: StoredPolicy = NO_POLICY,
    ) -> Allocation:
        """Take the next ``rows`` seqs for new rows, writing the non-None policy columns.

        Returns:
            The new last_seq (the highest seq taken), the live count including
            the new rows, and the session's policy columns after the write.
        """
        params = self._allocation_params(session_id, now, payload_bytes, rows, policy)
        return self._allocation(self._run(cursor, self._allocate, params).fetchone())

    def _allocation_params(
        self, session_id: str, now: datetime, payload_bytes: int, rows: int, policy: StoredPolicy
    ) -> dict[str, Any]:
        max_checkpoints, compress_after, keep_recent = policy
        return {
            "session_id": session_id,
            "now": self._encode_time(now),
            "seq_delta": rows,
            "count_delta": rows,
            "bytes_delta": payload_bytes,
            "max_checkpoints": max_checkpoints,
            "compress_after": compress_after,
            "keep_recent": keep_recent,
        }

    @staticmethod
    def _allocation(row: Sequence[Any]) -> Allocation:
        last_seq, count, *stored = row
        return Allocation(int(last_seq), int(count), (stored[0], stored[1], stored[2]))

    def _row_params(self, session_id: str, row: NewRow) -> dict[str, Any]:
        return {
            "session_id": session_id,
            "seq": row.seq,
            "name": row.name,
            "created_at": self._encode_time(row.created_at),
            "data": self._json_text(row.data_json),
            "metadata": self._json_text(row.metadata_json),
            "pinned": row.pinned,
            "payload_bytes": row.payload_bytes,
        }

    def insert(self, cursor: Cursor, session_id: str, row: NewRow) -> None:
        """Insert one checkpoint whose seq was allocated in this transaction."""
        params = self._row_params(session_id, row)
        params["parent_seq"] = row.parent_seq
        self._run(cursor, self._insert, params)

    def insert_on_newest(self, cursor: Cursor, session_id: str, row: NewRow) -> int | None:
        """Insert one checkpoint whose parent is the newest live row; returns that parent's seq."""
        self._run(cursor, self._insert_on_newest, self._row_params(session_id, row))
        parent = cursor.fetchone()[0]
        return None if parent is None else int(parent)

    def append(
        self,
        cursor: Cursor,
        session_id: str,
        now: datetime,
        row: NewRow,
        policy: StoredPolicy = NO_POLICY,
        *,
        last: bool = True,
    ) -> tuple[Allocation, int | None]:
        """Take the next seq and insert ``row`` with it on the newest live row.

        On PostgreSQL both statements go to the server together, in one round
        trip: the upsert locks the session row first, and the INSERT, a
        statement of its own with a snapshot taken after that lock, reads the
        seq and the newest live row (every writer before it has committed).
        With ``last`` they must be the transaction's last statements, and the
        COMMIT goes with them (see ``end_with`` of the PostgreSQL cursor);
        else the transaction goes on after their answers. ``row.seq`` is
        ignored.

        Returns:
            What :meth:`allocate` returns, and the seq of the new row's parent.
        """
        allocation_params = self._allocation_params(session_id, now, row.payload_bytes, 1, policy)
        if self._insert_at_last_seq is None:
            allocation = self._allocation(
                self._run(cursor, self._allocate, allocation_params).fetchone()
            )
            row = row._replace(seq=allocation.last_seq)
            return allocation, self.insert_on_newest(cursor, session_id, row)
        run = cast(Any, cursor).end_with if last else cast(Any, cursor).together
        taken, inserted = run(
            [
                self._bound(self._allocate, allocation_params),
                self._bound(self._insert_at_last_seq, self._row_params(session_id, row)),
            ]
        )
        parent = inserted[0]
        return self._allocation(taken), None if parent is None else int(parent)

    def exists(self, cursor: Cursor, session_id: str, seq: int) -> bool:
        """Whether checkpoint ``seq`` of the session is live."""
        self._run(cursor, self._exists, {"session_id": session_id, "seq": seq})
        return cursor.fetchone() is not None

    def set_session_metadata(
        self, cursor: Cursor, session_id: str, metadata_json: str, now: datetime
    ) -> None:
        """Replace the session's metadata, creating the session row if needed."""
        self._run(
            cursor,
            self._set_metadata,
            {
                "session_id": session_id,
                "now": self._encode_time(now),
                "metadata": self._json_text(metadata_json),
            },
        )

    def fork(
        self,
        cursor: Cursor,
        source: str,
        seq: int,
        target: str,
        history: str,
        now: datetime,
        policy: StoredPolicy = NO_POLICY,
    ) -> int:
        """Copy checkpoints of ``source`` into the empty session ``target`` in the database.

        ``history`` picks the rows: ``latest`` (seq only), ``lineage`` (seq and
        its live ancestors) or ``all`` (every live row up to seq). They are
        renumbered from 1 in seq order with parent links remapped; the target
        row gets the counters, ``forked_from`` and the source's metadata and
        policy (a non-None ``policy`` column wins). The target row must exist.

        Returns:
            How many checkpoints were copied.
        """
        params = {"source": source, "seq": seq, "target": target}
        self._run(cursor, self._fork_copy[history], params)
        copied = cursor.rowcount
        max_checkpoints, compress_after, keep_recent = policy
        self._run(
            cursor,
            self._fork_totals,
            {
                **params,
                "forked_from": format_id(source, seq),
                "now": self._encode_time(now),
                "max_checkpoints": max_checkpoints,
                "compress_after": compress_after,
                "keep_recent": keep_recent,
            },
        )
        return int(copied)

    def insert_many(
        self, cursor: Cursor, session_id: str, rows: Iterable[NewRow], now: datetime
    ) -> int:
        """Insert rows with given seqs (above last_seq, increasing), raising the counter.

        Returns:
            The number of rows inserted.
        """
        count = total_bytes = highest = 0
        for row in rows:
            self.insert(cursor, session_id, row)
            count += 1
            total_bytes += row.payload_bytes
            highest = row.seq
        if count:
            self._run(
                cursor,
                self._set_counter,
                {
                    "session_id": session_id,
                    "last_seq": highest,
                    "delta": count,
                    "bytes_delta": total_bytes,
                    "now": self._encode_time(now),
                },
            )
        return count

    def lock_session(self, cursor: Cursor, session_id: str, now: datetime) -> int:
        """Make sure the session row exists and return its last_seq, holding its lock.

        The upsert takes the row lock on PostgreSQL (writers to one session
        serialise on it); on SQLite the write transaction already holds the lock.
        """
        return self.allocate(cursor, session_id, now, 0, rows=0).last_seq

    def lock_existing_session(self, cursor: Cursor, session_id: str) -> None:
        """Lock the session's row, if it exists, before touching any of its checkpoints.

        Every write locks the session row first (create and import through
        :meth:`allocate`, everything else through this), so two writers
        never hold each other's rows in opposite orders: no deadlocks
        between agents and maintenance. A no-op on SQLite, where the write
        transaction already holds the database's one write lock.
        """
        if self._lock_row is not None:
            self._run(cursor, self._lock_row, {"session_id": session_id})

    def _retention_params(
        self, session_id: str, keep_recent: int, older_than: datetime
    ) -> dict[str, Any]:
        return {
            "session_id": session_id,
            "keep_recent": keep_recent,
            "no_cutoff": _NO_CUTOFF,
            "older_than": self._encode_time(older_than),
        }

    def compact(
        self,
        cursor: Cursor,
        session_id: str,
        keep_recent: int,
        now: datetime,
        older_than: datetime = END_OF_TIME,
    ) -> list[Removed]:
        """Delete the compactable rows in one statement; returns them, oldest first."""
        params = self._retention_params(session_id, keep_recent, older_than)
        return self._account(cursor, session_id, now, self._run(cursor, self._compact, params))

    def keep_reasons(
        self, cursor: Cursor, session_id: str, keep_recent: int, older_than: datetime
    ) -> dict[str, int]:
        """Live rows by the reason compaction keeps them (run after :meth:`compact`)."""
        params = self._retention_params(session_id, keep_recent, older_than)
        rows = self._run(cursor, self._keep_reasons, params).fetchall()
        return {str(reason): int(count) for reason, count in rows}

    def cap(self, cursor: Cursor, session_id: str, limit: int, now: datetime) -> list[Removed]:
        """Delete the oldest unpinned rows after the first, down to ``limit`` unpinned rows.

        Pinned rows neither count toward the limit nor get deleted.
        """
        pinned = self._run(cursor, self._pinned_count, {"session_id": session_id}).fetchone()[0]
        live = self.count(cursor, session_id)
        excess = live - int(pinned) - limit
        if excess <= 0:
            return []
        self._run(cursor, self._cap, {"session_id": session_id, "excess": excess})
        return self._account(cursor, session_id, now, cursor)

    def keep_newest(
        self, cursor: Cursor, session_id: str, keep: int, now: datetime
    ) -> list[Removed]:
        """Delete every row older than the newest ``keep`` rows (the first and pinned too)."""
        self._run(
            cursor,
            self._keep_newest,
            {"session_id": session_id, "keep_recent": keep, "no_cutoff": _NO_CUTOFF},
        )
        return self._account(cursor, session_id, now, cursor)

    def clear(self, cursor: Cursor, session_id: str, now: datetime) -> list[Removed]:
        """Delete every checkpoint of the session (pinned too), keeping its counter."""
        self._run(cursor, self._clear, {"session_id": session_id})
        return self._account(cursor, session_id, now, cursor)

    def expire(
        self, cursor: Cursor, session_id: str, older_than: datetime, now: datetime
    ) -> list[Removed]:
        """Delete unpinned rows created before ``older_than``, never the newest row."""
        self._run(
            cursor,
            self._expire,
            {"session_id": session_id, "older_than": self._encode_time(older_than)},
        )
        return self._account(cursor, session_id, now, cursor)

    def set_pinned(self, cursor: Cursor, session_id: str, seq: int, pinned: bool) -> bool:
        """Pin or unpin one checkpoint; False if there is no such checkpoint."""
        self._run(
            cursor, self._set_pinned, {"session_id": session_id, "seq": seq, "pinned": pinned}
        )
        return cursor.rowcount > 0

    def _account(
        self, cursor: Cursor, session_id: str, now: datetime, result: Cursor
    ) -> list[Removed]:
        """Subtract the rows a DELETE ... RETURNING removed from the session's totals."""
        removed = sorted(map(Removed._make, result.fetchall()))
        if removed:
            self._run(
                cursor,
                self._adjust_count,
                {
                    "session_id": session_id,
                    "delta": -len(removed),
                    "bytes_delta": -sum(r.payload_bytes for r in removed),
                    "now": self._encode_time(now),
                },
            )
        return removed

    def delete(self, cursor: Cursor, session_id: str, seq: int, now: datetime) -> list[Removed]:
        """Delete one checkpoint (pinned or not); returns it, or nothing if it was not there."""
        self._run(cursor, self._delete_one, {"session_id": session_id, "seq": seq})
        return self._account(cursor, session_id, now, cursor)

    def delete_after(
        self, cursor: Cursor, session_id: str, seq: int, now: datetime
    ) -> list[Removed]:
        """Delete every checkpoint with a higher seq than ``seq`` (pinned too)."""
        self._run(cursor, self._delete_after, {"session_id": session_id, "seq": seq})
        return self._account(cursor, session_id, now, cursor)

    def delete_session(self, cursor: Cursor, session_id: str) -> bool:
        """Delete the session row and (by cascade) its checkpoints."""
        self._run(cursor, self._delete_session, {"session_id": session_id})
        return cursor.rowcount > 0

    # -- reads ----------------------------------------------------------------

    def get(self, cursor: Cursor, session_id: str, seq: int) -> Checkpoint | None:
        """One checkpoint by seq."""
        return self._one(
            session_id, self._run(cursor, self._get, {"session_id": session_id, "seq": seq})
        )

    def latest(self, cursor: Cursor, session_id: str) -> Checkpoint | None:
        """The newest checkpoint."""
        return self._one(session_id, self._run(cursor, self._latest, {"session_id": session_id}))

    def first(self, cursor: Cursor, session_id: str) -> Checkpoint | None:
        """The oldest live checkpoint."""
        return self._one(session_id, self._run(cursor, self._first, {"session_id": session_id}))

    def lineage(self, cursor: Cursor, session_id: str, seq: int) -> list[Checkpoint]:
        """Checkpoint ``seq`` and its live ancestors, oldest first (one recursive query)."""
        self._run(cursor, self._lineage, {"session_id": session_id, "seq": seq})
        return self._checkpoints(session_id, cursor)

    def by_name(
        self, cursor: Cursor, session_id: str, name: str, limit: int | None
    ) -> list[Checkpoint]:
        """Checkpoints of one name, newest first (at most ``limit``)."""
        bound = self._no_limit if limit is None else limit
        self._run(cursor, self._by_name, {"session_id": session_id, "name": name, "limit": bound})
        return self._checkpoints(session_id, cursor)

    def page(
        self, cursor: Cursor, session_id: str, after: int, limit: int = PAGE_SIZE
    ) -> list[Checkpoint]:
        """Up to ``limit`` checkpoints with seq > ``after``, oldest first."""
        rows = self.page_rows(cursor, session_id, after, limit)
        return list(self.checkpoints_of(session_id, rows))

    def page_rows(
        self, cursor: Cursor, session_id: str, after: int, limit: int = PAGE_SIZE
    ) -> list[Sequence[Any]]:
        """:meth:`page`'s rows, undecoded (seq first); :meth:`checkpoints_of` decodes them."""
        self._run(cursor, self._page, {"session_id": session_id, "after": after, "limit": limit})
        return cursor.fetchall()

    def checkpoints_of(
        self, session_id: str, rows: Iterable[Sequence[Any]]
    ) -> Iterator[Checkpoint]:
        """The checkpoints of a session's rows, each decoded only when it is taken.

        Decoding a whole page before handing out the first checkpoint made
        iterating 2-3x slower than a raw cursor: hundreds of live payloads at a
        time miss the CPU caches and keep the garbage collector busy.
        """
        for row in rows:
            yield self._row_to_checkpoint(session_id, row)

    def page_desc(
        self, cursor: Cursor, session_id: str, before: int, limit: int = PAGE_SIZE
    ) -> list[Checkpoint]:
        """Up to ``limit`` checkpoints with seq < ``before``, newest first."""
        self._run(
            cursor, self._page_desc, {"session_id": session_id, "before": before, "limit": limit}
        )
        return self._checkpoints(session_id, cursor)

    def since(self, cursor: Cursor, session_id: str, start: datetime) -> list[Checkpoint]:
        """Checkpoints created strictly after ``start``, in seq order."""
        self._run(
            cursor, self._since, {"session_id": session_id, "start": self._encode_time(start)}
        )
        return self._checkpoints(session_id, cursor)

    def between(
        self, cursor: Cursor, session_id: str, start: datetime, end: datetime
    ) -> list[Checkpoint]:
        """Checkpoints created in [start, end], in seq order."""
        self._run(
            cursor,
            self._between,
            {
                "session_id": session_id,
                "start": self._encode_time(start),
                "end": self._encode_time(end),
            },
        )
        return self._checkpoints(session_id, cursor)

    def name_counts(self, cursor: Cursor, session_id: str) -> list[NameCount]:
        """Live checkpoints per name, by name."""
        self._run(cursor, self._name_counts, {"session_id": session_id})
        return [NameCount(name, int(count)) for name, count in cursor.fetchall()]

    def count(self, cursor: Cursor, session_id: str) -> int:
        """Live checkpoints of the session (one row read)."""
        row = self._run(cursor, self._count, {"session_id": session_id}).fetchone()
        return 0 if row is None else int(row[0])

    def session(self, cursor: Cursor, session_id: str) -> SessionInfo | None:
        """One session's row."""
        row = self._run(cursor, self._session, {"session_id": session_id}).fetchone()
        return None if row is None else _session_info(row)

    def sessions(self, cursor: Cursor) -> list[SessionInfo]:
        """Every session, by id."""
        return [_session_info(row) for row in self._run(cursor, self._sessions, {}).fetchall()]

    def checkpoint_spans(self, cursor: Cursor, session_id: str | None) -> list[CheckpointSpan]:
        """Per session with live checkpoints (or just ``session_id``'s): count, first, last time."""
        if session_id is None:
            self._run(cursor, self._spans, {})
        else:
            self._run(cursor, self._session_span, {"session_id": session_id})
        return [
            CheckpointSpan(sid, int(count), decode_time(first), decode_time(last))
            for sid, count, first, last in cursor.fetchall()
        ]

    def created_times(
        self, cursor: Cursor, session_id: str | None, page_size: int = PAGE_SIZE
    ) -> Iterator[datetime]:
        """Stream the created_at of every live checkpoint (or ``session_id``'s), unordered.

        Reads no payload; a page of rows at a time (on PostgreSQL through a
        server-side cursor), so memory stays bounded.
        """
        if session_id is None:
            stmt, params = self._times, {}
        else:
            stmt, params = self._session_times, {"session_id": session_id}
        rows: Any = cursor
        if self.dialect_name == "postgresql":
            rows = cursor.connection.cursor(name="checkpointdb_times")
        try:
            self._run(rows, stmt, params)
            while page := rows.fetchmany(page_size):
                for (created_at,) in page:
                    yield decode_time(created_at)
        finally:
            if rows is not cursor:
                rows.close()

    # -- maintenance ----------------------------------------------------------

    def storage_bytes(self, cursor: Cursor) -> int:
        """Bytes the database occupies (SQLite: the main file; PostgreSQL: our tables)."""
        if self.dialect_name == "sqlite":
            cursor.execute("SELECT page_count * page_size FROM pragma_page_count, pragma_page_size")
        else:
            cursor.execute(
                "SELECT pg_total_relation_size('checkpoints') + pg_total_relation_size('sessions')"
            )
        return int(cursor.fetchone()[0])

    def vacuum(self, cursor: Cursor) -> None:
        """Give freed space back (SQLite) and refresh planner statistics (PostgreSQL)."""
        if self.dialect_name == "sqlite":
            cursor.execute("VACUUM")
            # The rebuilt file went through the WAL; fold it back and truncate it.
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        else:
            cursor.execute("VACUUM ANALYZE checkpoints")
            cursor.execute("VACUUM ANALYZE sessions")

    # -- schema ---------------------------------------------------------------

    def take_migration_lock(self, cursor: Cursor) -> None:
        """Serialise schema migrations (SQLite: the write transaction already does)."""
        if self.dialect_name == "postgresql":
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%(key)s, hashtext(current_schema()))",
                {"key": _MIGRATION_LOCK_KEY},
            )

    def foreign_key_problems(self, cursor: Cursor) -> list[Any]:
        """Rows whose parent is missing (SQLite checks after a migration)."""
        if self.dialect_name != "sqlite":
            return []
        cursor.execute("PRAGMA foreign_key_check")
        return list(cursor.fetchall())

    @staticmethod
    def set_foreign_keys(dbapi_connection: Any, *, enabled: bool) -> None:
        """Switch SQLite's foreign key enforcement (only outside a transaction)."""
        dbapi_connection.execute(f"PRAGMA foreign_keys = {'ON' if enabled else 'OFF'}")

    def table_names(self, cursor: Cursor) -> list[str]:
        """Every table and view in the database (PostgreSQL: in its current schema), by name."""
        if self.dialect_name == "postgresql":
            cursor.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema() ORDER BY table_name"
            )
        else:
            cursor.execute(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
                "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
            )
        return [str(row[0]) for row in cursor.fetchall()]

    def missing_schema(self, cursor: Cursor) -> str | None:
        """PostgreSQL: the search_path when none of its schemas exists (else None)."""
        if self.dialect_name != "postgresql":
            return None
        cursor.execute("SELECT current_schema() IS NULL, current_setting('search_path')")
        missing, search_path = cursor.fetchone()
        return str(search_path) if missing else None

    def schema_version(self, cursor: Cursor) -> str | None:
        """The Alembic revision the database is stamped with, or None for a new one."""
        cursor.execute(self._version_table)
        if not cursor.fetchone()[0]:
            return None
        cursor.execute("SELECT version_num FROM alembic_version")
        row = cursor.fetchone()
        return None if row is None else str(row[0])

    # -- find -----------------------------------------------------------------

    def find(
        self, cursor: Cursor, query: FindQuery, page_size: int = PAGE_SIZE
    ) -> Iterable[Checkpoint]:
        """Stream the checkpoints matching ``query``: one query, read a page of rows at a time.

        The statement is compiled once per query shape and cached (building
        and compiling it costs far more than running it); the query's values
        are bound. PostgreSQL sends rows through a server-side cursor (its
        client cursor would hold them all in memory); SQLite steps its
        statement lazily anyway.
        """
        sql, params = self._find_statement(query)
        session_id = query.session_id
        rows: Any = cursor
        if self.dialect_name == "postgresql":
            rows = cursor.connection.cursor(name="checkpointdb_find")
        try:
            rows.execute(sql, params)
            while page := rows.fetchmany(page_size):
                for row in page:
                    if session_id is None:
                        yield self._row_to_checkpoint(row[0], row[1:])
                    else:
                        yield self._row_to_checkpoint(session_id, row)
        finally:
            if rows is not cursor:
                rows.close()

    def find_page(self, cursor: Cursor, query: FindQuery) -> list[Checkpoint]:
        """Every checkpoint matching ``query``, in one fetch: for a limit within one page.

        The same statement as :meth:`find`, on the plain cursor: at most a
        page of rows is in memory either way, and on PostgreSQL it needs no
        server-side cursor (nor the transaction one needs).
        """
        sql, params = self._find_statement(query)
        session_id = query.session_id
        row_to_checkpoint = self._row_to_checkpoint
        cursor.execute(sql, params)
        rows = cursor.fetchall()
        if session_id is None:
            return [row_to_checkpoint(row[0], row[1:]) for row in rows]
        return [row_to_checkpoint(session_id, row) for row in rows]

    def _find_statement(self, query: FindQuery) -> tuple[str, Any]:
        """The SQL of ``query``'s shape, and its values as that SQL binds them."""
        shape, params = query.bind(self._encode_time, self.dialect_name)
        found = self._find_statements.get(shape)
        if found is None:
            found = self._compile_find(shape)
        sql, in_order = found
        return sql, params if in_order is None else in_order(params)

    def _find_select(self, shape: FindShape) -> Select[Any]:
        """The find() statement of one query shape, built (imports SQLAlchemy)."""
        from sqlalchemy import bindparam, literal_column, select

        from .query import find_clauses
        from .statements import _CHECKPOINT_COLUMNS, _cp

        where, order_by = find_clauses(shape, self.dialect_name)
        # Rows carry their session id only when the query spans sessions.
        columns = _CHECKPOINT_COLUMNS if shape[0] else (_cp.session_id, *_CHECKPOINT_COLUMNS)
        stmt = select(*columns).where(*where).order_by(*order_by)
        if shape[4]:  # a limit is set
            stmt = stmt.limit(bindparam("limit"))
            if self.dialect_name == "sqlite":
                # Else SQLite's LIMIT comes with OFFSET as a bound constant,
                # merged into the parameters on every call.
                stmt = stmt.offset(literal_column("0"))
        return stmt

    def sqlite_find_entry(self, shape: FindShape) -> tuple[str, tuple[str, ...], dict[str, Any]]:
        """SQLite's find() SQL for one shape with ``?`` marks, the names they bind, and constants.

        Positional: sqlite3 binds a tuple by index, but looks up each name of
        a dict (about 1 µs of a find near the newest rows).
        """
        positional = self._find_select(shape).compile(dialect=_sqlite_positional())
        return str(positional), tuple(positional.positiontup or ()), _constants(positional)

    def _compile_find(self, shape: FindShape) -> _FindStatement:
        if self.dialect_name == "sqlite":
            sql, names, constants = self.sqlite_find_entry(shape)
            found = _FindStatement(sql, _values_in_order(names, constants))
        else:
            compiled = self._compile(self._find_select(shape))
            fixed = compiled.constants
            found = _FindStatement(
                compiled.sql, (lambda params: {**fixed, **params}) if fixed else None
            )
        if len(self._find_statements) >= _FIND_STATEMENTS_KEPT:
            # Forget the oldest shape (dicts keep insertion order).
            self._find_statements.pop(next(iter(self._find_statements)), None)
        self._find_statements[shape] = found
        return found


def _constants(compiled: Compiled) -> dict[str, Any]:
    """The parameters a compiled statement binds to fixed values."""
    return {key: value for key, value in compiled.params.items() if value is not None}


class _FindStatement(NamedTuple):
    """A find() statement's SQL, and how its values are bound (None: by name, as a dict)."""

    sql: str
    in_order: Callable[[dict[str, Any]], Any] | None


@cache
def _sqlite_positional() -> Dialect:
    """SQLite's dialect with ``?`` placeholders, for the find() statements."""
    from sqlalchemy.dialects import sqlite

    return sqlite.dialect(paramstyle="qmark")


def _values_in_order(
    names: tuple[str, ...], constants: dict[str, Any]
) -> Callable[[dict[str, Any]], Any]:
    """The values of a dict of parameters, in the order of a positional statement's marks."""
    if constants:
        return lambda params: tuple({**constants, **params}[name] for name in names)
    if len(names) > 1:
        return itemgetter(*names)  # a tuple for two names or more
    return lambda params: tuple(params[name] for name in names)


def repository_for(db: Database) -> Repository:
    """The repository for ``db``'s dialect (on SQLite, without importing SQLAlchemy)."""
    return Repository("sqlite" if db.is_sqlite else db.engine.dialect, db.where)


def _session_info(row: Sequence[Any]) -> SessionInfo:
    session_id, created_at, updated_at, count, last_seq, payload_bytes, meta, forked_from = row[:8]
    return SessionInfo(
        id=session_id,
        created_at=decode_time(created_at),
        updated_at=decode_time(updated_at),
        checkpoint_count=int(count),
        last_seq=int(last_seq),
        payload_bytes=int(payload_bytes),
        metadata=decode_json(meta),
        forked_from=forked_from,
        policy=RetentionPolicy.from_stored((row[8], row[9], row[10])),
    )
