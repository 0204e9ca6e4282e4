"""CheckpointStore: owns the database, lists and deletes sessions, hands out managers.

The store's calls are :class:`~checkpointdb.operations.Operation` s like its
managers' (checks, a body in one transaction, a finish), built once in
:class:`StoreBase` for both flavours of the API: the sync store runs them with
:func:`~checkpointdb.operations.perform`, the asyncio store
(:mod:`checkpointdb.aio`) runs the same function on a worker thread. A manager
gets the store's database, repository and payload limits as one
:class:`~checkpointdb.operations.Context`.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, overload

from . import migrate
from .checkpoint import STORED, Checkpoint, JSONDict, KeepRecent, Limit, SessionInfo, format_id
from .engine import DEFAULT_SETTINGS, AnyURL, Cursor, Database, Trace, resolve_target
from .errors import CheckpointDBError, InvalidDataError, NotFoundError, PayloadTooLargeError
from .manager import CheckpointManager, Keep, use_default_store
from .operations import Context, Operation, find_stream, perform, read, unchanged
from .query import FindQuery, takes_filters
from .repository import CheckpointSpan, Removed, Repository, repository_for
from .timeline import Timeline, build_timeline
from .validate import (
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_PAYLOAD_BYTES,
    check_identifier,
    encode_payload,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

M = TypeVar("M")

# -- reports ----------------------------------------------------------------------


@dataclass(frozen=True)
class ExpiryReport:
    """What :meth:`CheckpointStore.expire` removed (or would remove).

    Attributes:
        removed: per session, the ids of the deleted checkpoints, oldest first.
        bytes_by_session: per session, the payload bytes of those checkpoints.
        dry_run: True if nothing was deleted.
    """

    removed: dict[str, list[str]]
    bytes_by_session: dict[str, int]
    dry_run: bool

    @property
    def rows_removed(self) -> int:
        """How many checkpoints were (or would be) deleted, in all sessions."""
        return sum(len(ids) for ids in self.removed.values())

    @property
    def bytes_removed(self) -> int:
        """Payload bytes of every deleted checkpoint, in all sessions."""
        return sum(self.bytes_by_session.values())


@dataclass(frozen=True)
class VacuumReport:
    """Storage before and after :meth:`CheckpointStore.vacuum`, in bytes."""

    bytes_before: int
    bytes_after: int


@dataclass
class Expiry:
    """An ``expire()`` under way: its cutoff, and what each session's transaction removed."""

    cutoff: datetime
    now: datetime
    dry_run: bool
    removed: dict[str, list[str]] = field(default_factory=dict)
    bytes_by_session: dict[str, int] = field(default_factory=dict)

    def session_operation(
        self, repo: Repository, session_id: str
    ) -> Operation[list[Removed], None]:
        """Expire one session, in a transaction of its own."""

        def body(cursor: Cursor) -> list[Removed]:
            repo.lock_existing_session(cursor, session_id)
            return repo.expire(cursor, session_id, self.cutoff, self.now)

        def record(rows: list[Removed]) -> None:
            if rows:
                self.removed[session_id] = [format_id(session_id, row.seq) for row in rows]
                self.bytes_by_session[session_id] = sum(row.payload_bytes for row in rows)

        return Operation(body, record, write=True, commit=not self.dry_run)

    def report(self) -> ExpiryReport:
        """Every session's removals so far."""
        return ExpiryReport(
            removed=self.removed, bytes_by_session=self.bytes_by_session, dry_run=self.dry_run
        )


def _vacuum(repo: Repository) -> Operation[tuple[int, int], VacuumReport]:
    def body(cursor: Cursor) -> tuple[int, int]:
        before = repo.storage_bytes(cursor)
        repo.vacuum(cursor)
        return before, repo.storage_bytes(cursor)

    return Operation(body, lambda sizes: VacuumReport(*sizes), autocommit=True)


# -- the store --------------------------------------------------------------------


def open_database(
    url: AnyURL,
    *,
    auto_upgrade: bool,
    synchronous: str,
    busy_timeout: float,
    echo: bool,
    read_only: bool = False,
    create_in_existing: bool = False,
    pool_size: int = DEFAULT_SETTINGS["pool_size"],
    trace: Trace | None = None,
) -> tuple[Database, Repository]:
    """Open the database at ``url`` with its schema at head (created or upgraded).

    Every check runs on a connection that cannot write, before anything that
    could; only then is the database opened for writing (and, on SQLite,
    switched to WAL). With ``read_only``, nothing is ever created or changed.

    Raises:
        NoStoreError, ForeignDatabaseError, SchemaTooNewError, SchemaOutOfDateError,
        CorruptDatabaseError, CheckpointDBError
    """
    if read_only:
        db = migrate.open_reader(
            url, synchronous=synchronous, busy_timeout=busy_timeout, echo=echo, trace=trace
        )
        repo = repository_for(db)
        try:
            migrate.check_readable(db, repo)
        except BaseException:
            db.dispose()
            raise
        return db, repo
    # No connection is opened yet: a missing SQLite file is created (empty,
    # 0600), an existing one only has its header read.
    db = Database(
        url,
        synchronous=synchronous,
        busy_timeout=busy_timeout,
        echo=echo,
        pool_size=pool_size,
        trace=trace,
    )
    repo = repository_for(db)
    try:
        current = migrate.check_before_writing(
            url,
            auto_upgrade=auto_upgrade,
            create_in_existing=create_in_existing,
            synchronous=synchronous,
            busy_timeout=busy_timeout,
            echo=echo,
            repository=repo,
        )
        if current != migrate.head_revision():
            migrate.upgrade(db, repo)
    except BaseException:
        db.dispose()
        raise
    return db, repo


def backup_sqlite(db: Database, path: str | os.PathLike[str]) -> Path:
    """Copy the SQLite database ``db`` to a new file with the online backup API.

    Raises:
        CheckpointDBError: the target exists, or ``db`` is on PostgreSQL.
    """
    if not db.is_sqlite:
        raise CheckpointDBError(f"backup() copies SQLite files; back up {db.where} with pg_dump")
    target = Path(path).expanduser().absolute()
    try:
        fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        raise CheckpointDBError(f"backup target {target} already exists") from None
    except OSError as exc:
        raise CheckpointDBError(f"cannot create backup {target}: {exc}") from exc
    os.close(fd)
    try:
        with db.transaction(snapshot=False) as cursor:
            source: Any = cursor.connection  # the sqlite3.Connection
            destination = sqlite3.connect(target)
            try:
                source.backup(destination)
            finally:
                destination.close()
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target


class StoreBase(ABC):
    """What :class:`CheckpointStore` and the async store share: limits, checks, operations."""

    max_payload_bytes: int
    max_depth: int

    def _set_limits(self, max_payload_bytes: int, max_depth: int) -> None:
        for label, value in (("max_payload_bytes", max_payload_bytes), ("max_depth", max_depth)):
            if type(value) is not int or value < 1:
                raise CheckpointDBError(f"{label} must be a positive int, got {value!r}")
        self.max_payload_bytes = max_payload_bytes
        self.max_depth = max_depth

    @property
    @abstractmethod
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""

    @property
    @abstractmethod
    def where(self) -> str:
        """The database as people name it: a file path, or the URL without password."""

    @abstractmethod
    def context(self) -> Context:
        """The database, repository and payload encoder this store's managers use.

        Raises:
            StoreClosedError: the store is not open.
        """

    def encode(self, data: Any, metadata: Any) -> tuple[str, str, int]:
        """Validate a checkpoint's data and metadata dicts against this store's limits.

        Returns:
            The data JSON, the metadata JSON, and their size together in UTF-8
            bytes, which ``max_payload_bytes`` bounds.

        Raises:
            InvalidDataError: either cannot be stored exactly.
            PayloadTooLargeError: together they are over ``max_payload_bytes``.
        """
        limit = self.max_payload_bytes
        data_json, data_bytes = encode_payload(data, "data", self.max_depth, limit)
        meta_json, meta_bytes = encode_payload(
            {} if metadata is None else metadata, "metadata", self.max_depth, limit
        )
        size = data_bytes + meta_bytes
        if size > limit:
            raise PayloadTooLargeError(
                f"data and metadata are {size} bytes as JSON together; the store's limit "
                f"(max_payload_bytes) is {limit} bytes"
            )
        return data_json, meta_json, size

    # -- operations, run by each flavour ------------------------------------------

    def _sessions(self) -> Operation[list[SessionInfo], list[SessionInfo]]:
        repo = self.context().repo
        return read(repo.sessions)

    def _session(self, session_id: str) -> Operation[SessionInfo | None, SessionInfo | None]:
        check_identifier(session_id, "session_id")
        repo = self.context().repo
        return read(lambda cursor: repo.session(cursor, session_id))

    def _delete_session(self, session_id: str) -> Operation[int, int]:
        check_identifier(session_id, "session_id")
        repo, where = self.context().repo, self.where

        def body(cursor: Cursor) -> int:
            repo.lock_existing_session(cursor, session_id)
            info = repo.session(cursor, session_id)
            if info is None:
                raise NotFoundError(f"no session {session_id!r} in {where}")
            repo.delete_session(cursor, session_id)
            return info.checkpoint_count

        return Operation(body, unchanged, write=True)

    def _schema_revision(self) -> Operation[str | None, str | None]:
        return read(self.context().repo.schema_version, snapshot=True)

    @staticmethod
    def _expiry(older_than: timedelta, dry_run: bool) -> Expiry:
        if not isinstance(older_than, timedelta) or older_than < timedelta(0):
            raise InvalidDataError(
                f"older_than must be a non-negative timedelta, got {older_than!r}"
            )
        now = datetime.now(UTC)
        return Expiry(cutoff=now - older_than, now=now, dry_run=dry_run)

    def _vacuum(self) -> Operation[tuple[int, int], VacuumReport]:
        return _vacuum(self.context().repo)



class CheckpointStore(StoreBase):
    """A checkpoint database: one SQLite file by default, or a PostgreSQL server.

    Opening the store creates the schema in a new or empty database, upgrades
    an older one (under a lock, so concurrent openers are safe), and refuses,
    without touching them, a database written by a newer checkpointdb and one
    that holds other tables but no checkpointdb schema.

    Args:
        url: an SQLite path, an SQLAlchemy URL (``sqlite:///x.db``,
            ``postgresql+psycopg://user:pw@host/db``), or None for
            ``$CHECKPOINTDB_URL``, else ``./checkpoints.db``.
        auto_upgrade: upgrade an older schema on open; if False, an older
            database raises :class:`SchemaOutOfDateError` naming the command
            that upgrades it.
        synchronous: SQLite durability: ``"NORMAL"`` survives process crashes,
            ``"FULL"`` also power loss.
        busy_timeout: seconds a write waits for another writer's lock before
            :class:`StoreBusyError`.
        max_payload_bytes: largest accepted ``data`` or ``metadata``, as UTF-8 JSON.
        max_depth: deepest accepted nesting inside a payload.
        echo: log every statement SQLAlchemy runs (migrations and schema work).
        read_only: open for reading only: nothing is ever created, migrated or
            changed (SQLite opens the file with ``mode=ro``, PostgreSQL runs
            READ ONLY transactions); a write raises :class:`ReadOnlyStoreError`
            before touching the database.
        create_in_existing: create the checkpointdb tables in a database that
            already holds other tables (an application's PostgreSQL database,
            say); without it such a database is refused.
        pool_size: PostgreSQL connections the store keeps open (5 more open
            when busy); threads that find all of them in use wait up to
            ``busy_timeout``, then get :class:`StoreBusyError`.
        trace: called with the text of every statement the store runs, hot
            paths included (SQLite: with the values bound in, BEGIN and
            COMMIT too; PostgreSQL: with placeholders). For debugging: it
            sees your data. None (the default) installs nothing.

    Raises:
        NoStoreError: ``read_only`` and there is no checkpointdb store there.
        ForeignDatabaseError: other tables and no checkpointdb schema, and
            ``create_in_existing`` is off; the database was not changed.
        SchemaTooNewError, SchemaOutOfDateError, CorruptDatabaseError, MissingDriverError,
        CheckpointDBError
    """

    def __init__(
        self,
        url: str | os.PathLike[str] | URL | None = None,
        *,
        auto_upgrade: bool = True,
        synchronous: str = DEFAULT_SETTINGS["synchronous"],
        busy_timeout: float = DEFAULT_SETTINGS["busy_timeout"],
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        max_depth: int = DEFAULT_MAX_DEPTH,
        echo: bool = False,
        read_only: bool = False,
        create_in_existing: bool = False,
        pool_size: int = DEFAULT_SETTINGS["pool_size"],
        trace: Trace | None = None,
    ) -> None:
        self._set_limits(max_payload_bytes, max_depth)
        self._db, self._repo = open_database(
            resolve_target(url),
            auto_upgrade=auto_upgrade,
            synchronous=synchronous,
            busy_timeout=busy_timeout,
            echo=echo,
            read_only=read_only,
            create_in_existing=create_in_existing,
            pool_size=pool_size,
            trace=trace,
        )
        self._context = Context(self._db, self._repo, self.encode)

    def context(self) -> Context:
        """The database, repository and payload encoder this store's managers use."""
        return self._context

    # -- identity -------------------------------------------------------------

    @property
    def url(self) -> URL:
        """The database URL (for SQLite, with an absolute path)."""
        return self._db.url

    @property
    def where(self) -> str:
        """The database as people name it: a file path, or the URL without password."""
        return self._db.where

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._db.dialect_name

    @property
    def read_only(self) -> bool:
        """True if the store was opened with ``read_only=True``."""
        return self._db.read_only

    def __repr__(self) -> str:
        return f"CheckpointStore({self.where!r})"

    # -- managers and sessions ------------------------------------------------

    @overload
    def manager(
        self,
        session_id: str,
        max_checkpoints: Limit = STORED,
        compress_after: Limit = STORED,
        *,
        keep_recent: KeepRecent = STORED,
        keep: Keep = None,
        strict: bool = False,
        model: None = None,
    ) -> CheckpointManager[JSONDict]: ...

    @overload
    def manager(
        self,
        session_id: str,
        max_checkpoints: Limit = STORED,
        compress_after: Limit = STORED,
        *,
        keep_recent: KeepRecent = STORED,
        keep: Keep = None,
        strict: bool = False,
        model: type[M],
    ) -> CheckpointManager[M]: ...

    def manager(
        self,
        session_id: str,
        max_checkpoints: Limit = STORED,
        compress_after: Limit = STORED,
        *,
        keep_recent: KeepRecent = STORED,
        keep: Keep = None,
        strict: bool = False,
        model: type[Any] | None = None,
    ) -> CheckpointManager[Any]:
        """A :class:`CheckpointManager` for one session of this store.

        A policy argument left out follows the policy stored for the session;
        a session that never set one keeps at most ``max_checkpoints=100``
        unpinned checkpoints, and once it holds more than
        ``compress_after=50``, each create deletes all but the first, the
        newest ``keep_recent=20`` and the newest of each name. So a 200-step
        agent ends with about 20-40 checkpoints, and an older step's id then
        finds nothing. The first deletion in a session is logged at INFO.

        Args:
            session_id: the session's id.
            max_checkpoints, compress_after, keep_recent: the session's
                retention policy (see :class:`CheckpointManager`); written to
                the session row by this manager's writes.
            keep: ``"all"`` keeps every checkpoint: no cap and no compaction,
                stored on the session row, so every manager of the session
                keeps them all.
            strict: ``get``, ``rollback_to``, ``lineage``, ``pin``, ``unpin``
                and ``delete`` raise :class:`NotFoundError` for an unknown id
                instead of returning None, ``[]`` or False.
            model: a dataclass or pydantic model class; every read returns its
                instances as the checkpoints' data (``Checkpoint[model]``).

        Raises:
            InvalidDataError: a bad argument.
        """
        return CheckpointManager(
            session_id,
            max_checkpoints,
            compress_after,
            keep_recent=keep_recent,
            store=self,
            keep=keep,
            strict=strict,
            model=model,
        )

    def sessions(self) -> list[SessionInfo]:
        """Every session in the store, by id: times, live count and last seq."""
        return perform(self._sessions(), self._db)

    def session(self, session_id: str) -> SessionInfo | None:
        """One session's info, or None if it has never been written to."""
        return perform(self._session(session_id), self._db)

    def delete_session(self, session_id: str) -> int:
        """Delete a session and all its checkpoints, counter included.

        Unlike :meth:`CheckpointManager.clear`, this forgets the session
        entirely: a later checkpoint in a session of the same id starts at 1.

        Returns:
            How many checkpoints were deleted.

        Raises:
            NotFoundError: there is no such session.
        """
        return perform(self._delete_session(session_id), self._db)

    # -- schema ---------------------------------------------------------------

    def schema_revision(self) -> str | None:
        """The Alembic revision the database is at."""
        return perform(self._schema_revision(), self._db)

    # -- maintenance ----------------------------------------------------------

    def backup(self, path: str | os.PathLike[str]) -> Path:
        """Copy the live SQLite database to a new file, consistently, while in use.

        Uses SQLite's online backup API (never a file copy, which can catch a
        half-written page or miss the WAL). The copy is created mode 0600.

        Raises:
            CheckpointDBError: the target exists, or the store is on PostgreSQL
                (use ``pg_dump`` there).
        """
        return backup_sqlite(self._db, path)

    def expire(self, older_than: timedelta, *, dry_run: bool = False) -> ExpiryReport:
        """Delete checkpoints older than ``older_than`` in every session.

        Pinned checkpoints always stay, and so does each session's newest
        checkpoint, so an idle agent can still resume. One transaction per
        session; counts and byte totals stay exact.

        Args:
            older_than: the age beyond which checkpoints go.
            dry_run: report what would go; nothing is deleted.
        """
        expiry = self._expiry(older_than, dry_run)
        for info in self.sessions():
            perform(expiry.session_operation(self._repo, info.id), self._db)
        return expiry.report()

    def vacuum(self) -> VacuumReport:
        """Give the space of deleted checkpoints back to the file system.

        SQLite reuses freed pages by itself, so a compacting store stops
        growing; VACUUM also shrinks the file (it rewrites it: run it when
        idle, it takes the write lock). On PostgreSQL this is VACUUM ANALYZE.
        """
        return perform(self._vacuum(), self._db)

    # -- lifetime -------------------------------------------------------------

    def close(self) -> None:
        """Close every pooled connection. The store cannot be used afterwards."""
        self._db.dispose()

    def __enter__(self) -> CheckpointStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- time -----------------------------------------------------------------

    def checkpoint_spans(self, session_id: str | None = None) -> list[CheckpointSpan]:
        """Per session, by id: live checkpoints and the oldest and newest created_at.

        One grouped query on the ``(session_id, created_at)`` index; sessions
        without live checkpoints are left out. ``session_id`` limits it to one.
        """
        if session_id is not None:
            check_identifier(session_id, "session_id")
        repo = self._repo
        return perform(read(lambda cursor: repo.checkpoint_spans(cursor, session_id)), self._db)

    def timeline(self, session_id: str | None = None, *, slices: int = 12) -> Timeline:
        """Live checkpoints (of one session, or all) counted per equal slice of time.

        Reads only the created_at column, a page at a time, on one snapshot:
        no payload is loaded, and memory stays bounded.

        Args:
            session_id: only this session's checkpoints.
            slices: at most this many slices (fewer when there are fewer checkpoints).
        """
        if session_id is not None:
            check_identifier(session_id, "session_id")
        if type(slices) is not int or slices < 1:
            raise InvalidDataError(f"slices must be an int >= 1, got {slices!r}")
        repo = self._repo

        def body(cursor: Cursor) -> Timeline:
            spans = repo.checkpoint_spans(cursor, session_id)
            if not spans:
                return Timeline(0, None, None, [])
            first = min(span.first for span in spans)
            last = max(span.last for span in spans)
            count = sum(span.checkpoint_count for span in spans)
            times = repo.created_times(cursor, session_id)
            return build_timeline(times, first, last, count, slices)

        timeline: Timeline = perform(read(body, snapshot=True), self._db)
        return timeline

    # -- find -----------------------------------------------------------------

    @takes_filters(FindQuery.build)
    def find(self, query: FindQuery) -> Iterator[Checkpoint]:
        """Stream the checkpoints that match every given filter, in every session.

        Args:
            name: only checkpoints of this name.
            since: only those created strictly after this aware datetime.
            until: only those created at or before this aware datetime.
            metadata: ``{key path: value}`` that must all hold in the
                checkpoint's metadata; a path is ``"a.b"`` (nested objects) or
                a tuple of literal keys ``("a.b",)``; values are JSON scalars
                compared as JSON (``1`` is not ``"1"`` nor ``True``; ``None``
                matches a stored null, never a missing key).
            data: the same, on the checkpoint's data.
            limit: at most this many results (None: all).
            newest_first: newest first (default) or oldest first.
            session_id: only this session's checkpoints.

        Returns:
            An iterator over one query's rows, read a page at a time, so memory
            stays bounded. Within one session the order is creation (seq)
            order; across sessions it is ``created_at``, then session id and
            seq. Arguments are checked here, before the first row is read. The
            iterator holds a pooled connection until it is exhausted or closed;
            with a ``limit`` of at most one page (500) it reads every row at the
            first ``next()`` and has given the connection back by then.

        Raises:
            NaiveDatetimeError: ``since`` or ``until`` has no timezone.
            InvalidDataError: any other bad argument; the message names it.
        """
        return find_stream(self._db, self._repo, query)


_default_store: CheckpointStore | None = None
_default_lock = threading.Lock()


def default_store() -> CheckpointStore:
    """The process-wide store behind ``CheckpointManager(session_id)`` with no store.

    Opened on first use from ``$CHECKPOINTDB_URL``, else ``./checkpoints.db``.
    """
    global _default_store
    with _default_lock:
        if _default_store is None or _default_store._db.closed:
            _default_store = CheckpointStore()
        return _default_store


use_default_store(default_store)
