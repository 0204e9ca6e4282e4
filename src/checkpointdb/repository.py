"""Every SQL statement checkpointdb runs, built once from the ORM tables.

Statements are SQLAlchemy Core constructs compiled once per dialect when the
store opens, then executed on the pooled DBAPI cursor: this keeps one
definition of each query for SQLite and PostgreSQL while skipping the
per-statement overhead of SQLAlchemy's execution layer on the hot paths.

The repository knows SQL and nothing about policy: *when* to compact, how
many to keep and what an id looks like are the manager's business.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    bindparam,
    delete,
    func,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.elements import BindParameter, ClauseElement

from .checkpoint import Checkpoint, SessionInfo, format_id
from .engine import Cursor
from .models import checkpoints_table, sessions_table
from .types import decode_json, decode_time, encode_time_text, jsonb_text, require_aware

# Rows fetched per round trip when streaming a session.
PAGE_SIZE = 500
# The advisory lock's first key for schema migrations ("cpdb").
_MIGRATION_LOCK_KEY = 0x63706462
# Larger than any seq: "no row is recent" when keep_recent is 0.
_NO_CUTOFF = 2**62

_cp = checkpoints_table.c
_s = sessions_table.c

_CHECKPOINT_COLUMNS = (_cp.seq, _cp.name, _cp.created_at, _cp.data, _cp["metadata"])


@dataclass(frozen=True)
class _Compiled:
    """SQL text for one dialect plus the values of its constant parameters."""

    sql: str
    constants: dict[str, Any]


@dataclass(frozen=True)
class NameCount:
    """How many live checkpoints carry one name."""

    name: str
    count: int


def _first_seq(alias_name: str) -> Any:
    """Scalar subquery: the session's oldest live seq."""
    first = checkpoints_table.alias(alias_name)
    return (
        select(func.min(first.c.seq))
        .where(first.c.session_id == bindparam("session_id"))
        .scalar_subquery()
    )


def _compaction_victims() -> ColumnElement[bool]:
    """The rows compaction deletes: not the first, not recent, not the newest of a name.

    "Recent" is the newest ``:keep_recent`` rows; of the rest (the middle),
    the newest row of each name stays.
    """
    recent_rows = checkpoints_table.alias("recent_rows")
    recent = (
        select(recent_rows.c.seq)
        .where(recent_rows.c.session_id == bindparam("session_id"))
        .order_by(recent_rows.c.seq.desc())
        .limit(bindparam("keep_recent"))
        .subquery("recent")
    )
    cutoff = select(func.coalesce(func.min(recent.c.seq), bindparam("no_cutoff"))).scalar_subquery()
    named = checkpoints_table.alias("named")
    newest_of_each_name = (
        select(func.max(named.c.seq))
        .where(named.c.session_id == bindparam("session_id"), named.c.seq < cutoff)
        .group_by(named.c.name)
    )
    victims: ColumnElement[bool] = (
        (_cp.session_id == bindparam("session_id"))
        & (_cp.seq > _first_seq("first_row"))
        & (_cp.seq < cutoff)
        & _cp.seq.not_in(newest_of_each_name)
    )
    return victims


def _cap_victims() -> ColumnElement[bool]:
    """The ``:excess`` oldest rows after the first (the max_checkpoints cap)."""
    oldest = checkpoints_table.alias("oldest")
    victims = (
        select(oldest.c.seq)
        .where(
            oldest.c.session_id == bindparam("session_id"),
            oldest.c.seq > _first_seq("first_row"),
        )
        .order_by(oldest.c.seq)
        .limit(bindparam("excess"))
    )
    return (_cp.session_id == bindparam("session_id")) & _cp.seq.in_(victims)


def _select_checkpoints(*where: ColumnElement[bool]) -> Select[Any]:
    return select(*_CHECKPOINT_COLUMNS).where(_cp.session_id == bindparam("session_id"), *where)


def _upsert_session(dialect_name: str, count_delta: Any) -> Any:
    """INSERT the session row or bump its counter, returning (last_seq, checkpoint_count)."""
    insert = postgresql.insert if dialect_name == "postgresql" else sqlite.insert
    stmt = insert(sessions_table).values(
        id=bindparam("session_id"),
        created_at=bindparam("now"),
        updated_at=bindparam("now"),
        last_seq=bindparam("seq_delta"),
        checkpoint_count=count_delta,
        **{"metadata": literal_column("'{}'")},
    )
    return stmt.on_conflict_do_update(
        index_elements=[_s.id],
        set_={
            "last_seq": _s.last_seq + stmt.excluded.last_seq,
            "checkpoint_count": _s.checkpoint_count + stmt.excluded.checkpoint_count,
            "updated_at": stmt.excluded.updated_at,
        },
    ).returning(_s.last_seq, _s.checkpoint_count)


class Repository:
    """The SQL of the store, compiled for one dialect; methods run on a DBAPI cursor."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        name = dialect.name
        self._encode_time: Callable[[datetime], Any] = (
            encode_time_text if name == "sqlite" else require_aware
        )
        self._json_text: Callable[[str], str] = jsonb_text if name == "postgresql" else str
        session: BindParameter[str] = bindparam("session_id")
        seq: BindParameter[int] = bindparam("seq")
        self._allocate = self._compile(_upsert_session(name, bindparam("count_delta")))
        self._insert = self._compile(
            checkpoints_table.insert().values(
                session_id=session,
                seq=bindparam("seq"),
                name=bindparam("name"),
                created_at=bindparam("created_at"),
                data=bindparam("data"),
                **{"metadata": bindparam("metadata")},
            )
        )
        self._get = self._compile(_select_checkpoints(_cp.seq == seq))
        self._latest = self._compile(_select_checkpoints().order_by(_cp.seq.desc()).limit(1))
        self._by_name = self._compile(
            _select_checkpoints(_cp.name == bindparam("name"))
            .order_by(_cp.seq.desc())
            .limit(bindparam("limit"))
        )
        self._page = self._compile(
            _select_checkpoints(_cp.seq > bindparam("after"))
            .order_by(_cp.seq)
            .limit(bindparam("limit"))
        )
        self._page_desc = self._compile(
            _select_checkpoints(_cp.seq < bindparam("before"))
            .order_by(_cp.seq.desc())
            .limit(bindparam("limit"))
        )
        self._since = self._compile(
            _select_checkpoints(_cp.created_at > bindparam("start")).order_by(_cp.seq)
        )
        self._between = self._compile(
            _select_checkpoints(
                _cp.created_at >= bindparam("start"), _cp.created_at <= bindparam("end")
            ).order_by(_cp.seq)
        )
        self._first = self._compile(_select_checkpoints().order_by(_cp.seq).limit(1))
        self._name_counts = self._compile(
            select(_cp.name, func.count())
            .where(_cp.session_id == session)
            .group_by(_cp.name)
            .order_by(_cp.name)
        )
        self._session = self._compile(
            select(_s.id, _s.created_at, _s.updated_at, _s.checkpoint_count, _s.last_seq).where(
                _s.id == session
            )
        )
        self._sessions = self._compile(
            select(_s.id, _s.created_at, _s.updated_at, _s.checkpoint_count, _s.last_seq).order_by(
                _s.id
            )
        )
        self._count = self._compile(select(_s.checkpoint_count).where(_s.id == session))
        self._compact = self._compile(delete(checkpoints_table).where(_compaction_victims()))
        self._compact_preview = self._compile(
            select(_cp.seq).where(_compaction_victims()).order_by(_cp.seq)
        )
        self._cap = self._compile(delete(checkpoints_table).where(_cap_victims()))
        self._clear = self._compile(delete(checkpoints_table).where(_cp.session_id == session))
        self._delete_session = self._compile(delete(sessions_table).where(_s.id == session))
        self._adjust_count = self._compile(
            update(sessions_table)
            .where(_s.id == session)
            .values(
                checkpoint_count=_s.checkpoint_count + bindparam("delta"),
                updated_at=bindparam("now"),
            )
        )
        self._set_counter = self._compile(
            update(sessions_table)
            .where(_s.id == session)
            .values(
                last_seq=bindparam("last_seq"),
                checkpoint_count=_s.checkpoint_count + bindparam("delta"),
                updated_at=bindparam("now"),
            )
        )
        # LIMIT that means "no limit": SQLite wants -1, PostgreSQL NULL.
        self._no_limit = -1 if name == "sqlite" else None
        if name == "postgresql":
            self._version_table = "SELECT to_regclass('alembic_version') IS NOT NULL"
        else:
            self._version_table = (
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' "
                "AND name = 'alembic_version'"
            )

    def _compile(self, stmt: ClauseElement) -> _Compiled:
        compiled = stmt.compile(dialect=self.dialect)
        constants = {key: value for key, value in compiled.params.items() if value is not None}
        return _Compiled(str(compiled), constants)

    @staticmethod
    def _run(cursor: Cursor, stmt: _Compiled, params: dict[str, Any]) -> Cursor:
        if stmt.constants:
            params = {**stmt.constants, **params}
        cursor.execute(stmt.sql, params)
        return cursor

    def _row_to_checkpoint(self, session_id: str, row: Sequence[Any]) -> Checkpoint:
        seq, name, created_at, data, meta = row
        return Checkpoint(
            id=format_id(session_id, seq),
            name=name,
            timestamp=decode_time(created_at),
            data=decode_json(data),
            metadata=decode_json(meta),
        )

    def _checkpoints(self, session_id: str, cursor: Cursor) -> list[Checkpoint]:
        return [self._row_to_checkpoint(session_id, row) for row in cursor.fetchall()]

    def _one(self, session_id: str, cursor: Cursor) -> Checkpoint | None:
        row = cursor.fetchone()
        return None if row is None else self._row_to_checkpoint(session_id, row)

    # -- writes ---------------------------------------------------------------

    def allocate(self, cursor: Cursor, session_id: str, now: datetime) -> tuple[int, int]:
        """Take the next seq for a new row: returns (seq, live count including it)."""
        self._run(
            cursor,
            self._allocate,
            {
                "session_id": session_id,
                "now": self._encode_time(now),
                "seq_delta": 1,
                "count_delta": 1,
            },
        )
        seq, count = cursor.fetchone()
        return int(seq), int(count)

    def insert(
        self,
        cursor: Cursor,
        session_id: str,
        seq: int,
        name: str,
        created_at: datetime,
        data_json: str,
        metadata_json: str,
    ) -> None:
        """Insert one checkpoint whose seq was allocated in this transaction."""
        self._run(
            cursor,
            self._insert,
            {
                "session_id": session_id,
                "seq": seq,
                "name": name,
                "created_at": self._encode_time(created_at),
                "data": self._json_text(data_json),
                "metadata": self._json_text(metadata_json),
            },
        )

    def insert_many(
        self,
        cursor: Cursor,
        session_id: str,
        rows: Iterable[tuple[int, str, datetime, str, str]],
        now: datetime,
    ) -> int:
        """Insert rows with given seqs, raising the counter to the highest one.

        Args:
            rows: (seq, name, created_at, data_json, metadata_json), seqs above
                the session's last_seq and increasing.

        Returns:
            The number of rows inserted.
        """
        count = 0
        highest = 0
        for seq, name, created_at, data_json, metadata_json in rows:
            self.insert(cursor, session_id, seq, name, created_at, data_json, metadata_json)
            count += 1
            highest = seq
        if count:
            self._run(
                cursor,
                self._set_counter,
                {
                    "session_id": session_id,
                    "last_seq": highest,
                    "delta": count,
                    "now": self._encode_time(now),
                },
            )
        return count

    def lock_session(self, cursor: Cursor, session_id: str, now: datetime) -> int:
        """Make sure the session row exists and return its last_seq, holding its lock.

        The upsert takes the row lock on PostgreSQL (writers to one session
        serialise on it); on SQLite the write transaction already holds the lock.
        """
        self._run(
            cursor,
            self._allocate,
            {
                "session_id": session_id,
                "now": self._encode_time(now),
                "seq_delta": 0,
                "count_delta": 0,
            },
        )
        last_seq, _count = cursor.fetchone()
        return int(last_seq)

    def compact(self, cursor: Cursor, session_id: str, keep_recent: int, now: datetime) -> int:
        """Delete the middle rows in one statement; returns how many went."""
        self._run(
            cursor,
            self._compact,
            {"session_id": session_id, "keep_recent": keep_recent, "no_cutoff": _NO_CUTOFF},
        )
        return self._deleted(cursor, session_id, now)

    def compaction_preview(self, cursor: Cursor, session_id: str, keep_recent: int) -> list[int]:
        """The seqs :meth:`compact` would delete, oldest first."""
        self._run(
            cursor,
            self._compact_preview,
            {"session_id": session_id, "keep_recent": keep_recent, "no_cutoff": _NO_CUTOFF},
        )
        return [int(row[0]) for row in cursor.fetchall()]

    def cap(self, cursor: Cursor, session_id: str, excess: int, now: datetime) -> int:
        """Delete the ``excess`` oldest rows after the first; returns how many went."""
        self._run(cursor, self._cap, {"session_id": session_id, "excess": excess})
        return self._deleted(cursor, session_id, now)

    def clear(self, cursor: Cursor, session_id: str, now: datetime) -> int:
        """Delete every checkpoint of the session, keeping its counter."""
        self._run(cursor, self._clear, {"session_id": session_id})
        return self._deleted(cursor, session_id, now)

    def _deleted(self, cursor: Cursor, session_id: str, now: datetime) -> int:
        deleted = max(cursor.rowcount, 0)
        if deleted:
            self._run(
                cursor,
                self._adjust_count,
                {"session_id": session_id, "delta": -deleted, "now": self._encode_time(now)},
            )
        return deleted

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
        self._run(cursor, self._page, {"session_id": session_id, "after": after, "limit": limit})
        return self._checkpoints(session_id, cursor)

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

    # -- schema ---------------------------------------------------------------

    def take_migration_lock(self, cursor: Cursor) -> None:
        """Serialise schema migrations (SQLite: the write transaction already does)."""
        if self.dialect.name == "postgresql":
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%(key)s, hashtext(current_schema()))",
                {"key": _MIGRATION_LOCK_KEY},
            )

    def foreign_key_problems(self, cursor: Cursor) -> list[Any]:
        """Rows whose parent is missing (SQLite checks after a migration)."""
        if self.dialect.name != "sqlite":
            return []
        cursor.execute("PRAGMA foreign_key_check")
        return list(cursor.fetchall())

    @staticmethod
    def set_foreign_keys(dbapi_connection: Any, *, enabled: bool) -> None:
        """Switch SQLite's foreign key enforcement (only outside a transaction)."""
        dbapi_connection.execute(f"PRAGMA foreign_keys = {'ON' if enabled else 'OFF'}")

    def schema_version(self, cursor: Cursor) -> str | None:
        """The Alembic revision the database is stamped with, or None for a new one."""
        cursor.execute(self._version_table)
        if not cursor.fetchone()[0]:
            return None
        cursor.execute("SELECT version_num FROM alembic_version")
        row = cursor.fetchone()
        return None if row is None else str(row[0])


def _session_info(row: Sequence[Any]) -> SessionInfo:
    session_id, created_at, updated_at, count, last_seq = row
    return SessionInfo(
        id=session_id,
        created_at=decode_time(created_at),
        updated_at=decode_time(updated_at),
        checkpoint_count=int(count),
        last_seq=int(last_seq),
    )
