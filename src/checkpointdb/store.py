"""CheckpointStore: owns the database, lists and deletes sessions, hands out managers."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import URL

from . import migrate
from .checkpoint import Checkpoint, SessionInfo, format_id
from .engine import DEFAULT_SETTINGS, Database, resolve_url
from .errors import CheckpointDBError, InvalidDataError, NotFoundError
from .query import FindQuery, JSONFilter
from .repository import Repository
from .validate import (
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_PAYLOAD_BYTES,
    check_identifier,
    encode_payload,
)

if TYPE_CHECKING:
    from .manager import CheckpointManager


@dataclass(frozen=True)
class ExpiryReport:
    """What :meth:`CheckpointStore.expire` removed (or would remove).

    Attributes:
        removed: per session, the ids of the deleted checkpoints, oldest first.
        bytes_removed: payload bytes of all deleted checkpoints.
        dry_run: True if nothing was deleted.
    """

    removed: dict[str, list[str]]
    bytes_removed: int
    dry_run: bool

    @property
    def rows_removed(self) -> int:
        """How many checkpoints were (or would be) deleted, in all sessions."""
        return sum(len(ids) for ids in self.removed.values())


@dataclass(frozen=True)
class VacuumReport:
    """Storage before and after :meth:`CheckpointStore.vacuum`, in bytes."""

    bytes_before: int
    bytes_after: int


class CheckpointStore:
    """A checkpoint database: one SQLite file by default, or a PostgreSQL server.

    Opening the store creates a new database at the current schema, upgrades
    an older one (under a lock, so concurrent openers are safe), and refuses
    one written by a newer checkpointdb without touching it.

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

    Raises:
        SchemaTooNewError, SchemaOutOfDateError, CorruptDatabaseError, CheckpointDBError
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
    ) -> None:
        for label, value in (("max_payload_bytes", max_payload_bytes), ("max_depth", max_depth)):
            if type(value) is not int or value < 1:
                raise CheckpointDBError(f"{label} must be a positive int, got {value!r}")
        self.max_payload_bytes = max_payload_bytes
        self.max_depth = max_depth
        self._db = Database(
            resolve_url(url), synchronous=synchronous, busy_timeout=busy_timeout, echo=echo
        )
        self._repo = Repository(self._db.engine.dialect, self._db.where)
        try:
            migrate.ensure_schema(self._db, self._repo, auto_upgrade=auto_upgrade)
        except BaseException:
            self._db.dispose()
            raise

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

    def __repr__(self) -> str:
        return f"CheckpointStore({self.where!r})"

    # -- managers and sessions ------------------------------------------------

    def manager(
        self,
        session_id: str,
        max_checkpoints: int | None = 100,
        compress_after: int | None = 50,
        *,
        keep_recent: int = 20,
    ) -> CheckpointManager:
        """A :class:`CheckpointManager` for one session of this store.

        See :class:`CheckpointManager` for the arguments.
        """
        from .manager import CheckpointManager

        return CheckpointManager(
            session_id,
            max_checkpoints,
            compress_after,
            keep_recent=keep_recent,
            store=self,
        )

    def sessions(self) -> list[SessionInfo]:
        """Every session in the store, by id: times, live count and last seq."""
        with self._db.transaction(snapshot=False) as cursor:
            return self._repo.sessions(cursor)

    def session(self, session_id: str) -> SessionInfo | None:
        """One session's info, or None if it has never been written to."""
        check_identifier(session_id, "session_id")
        with self._db.transaction(snapshot=False) as cursor:
            return self._repo.session(cursor, session_id)

    def delete_session(self, session_id: str) -> int:
        """Delete a session and all its checkpoints, counter included.

        Unlike :meth:`CheckpointManager.clear`, this forgets the session
        entirely: a later checkpoint in a session of the same id starts at 1.

        Returns:
            How many checkpoints were deleted.

        Raises:
            NotFoundError: there is no such session.
        """
        check_identifier(session_id, "session_id")
        with self._db.transaction(write=True) as cursor:
            info = self._repo.session(cursor, session_id)
            if info is None:
                raise NotFoundError(f"no session {session_id!r} in {self.where}")
            self._repo.delete_session(cursor, session_id)
        return info.checkpoint_count

    # -- schema ---------------------------------------------------------------

    def schema_revision(self) -> str | None:
        """The Alembic revision the database is at."""
        return migrate.current_revision(self._db, self._repo)

    # -- maintenance ----------------------------------------------------------

    def backup(self, path: str | os.PathLike[str]) -> Path:
        """Copy the live SQLite database to a new file, consistently, while in use.

        Uses SQLite's online backup API (never a file copy, which can catch a
        half-written page or miss the WAL). The copy is created mode 0600.

        Raises:
            CheckpointDBError: the target exists, or the store is on PostgreSQL
                (use ``pg_dump`` there).
        """
        if not self._db.is_sqlite:
            raise CheckpointDBError(
                f"backup() copies SQLite files; back up {self.where} with pg_dump"
            )
        target = Path(path).expanduser().absolute()
        try:
            fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            raise CheckpointDBError(f"backup target {target} already exists") from None
        except OSError as exc:
            raise CheckpointDBError(f"cannot create backup {target}: {exc}") from exc
        os.close(fd)
        try:
            with self._db.transaction(snapshot=False) as cursor:
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

    def expire(self, older_than: timedelta, *, dry_run: bool = False) -> ExpiryReport:
        """Delete checkpoints older than ``older_than`` in every session.

        Pinned checkpoints always stay, and so does each session's newest
        checkpoint, so an idle agent can still resume. One transaction per
        session; counts and byte totals stay exact.

        Args:
            older_than: the age beyond which checkpoints go.
            dry_run: report what would go; nothing is deleted.
        """
        if not isinstance(older_than, timedelta) or older_than < timedelta(0):
            raise InvalidDataError(
                f"older_than must be a non-negative timedelta, got {older_than!r}"
            )
        now = datetime.now(UTC)
        cutoff = now - older_than
        removed: dict[str, list[str]] = {}
        total_bytes = 0
        for info in self.sessions():
            with self._db.transaction(write=True, commit=not dry_run) as cursor:
                rows = self._repo.expire(cursor, info.id, cutoff, now)
            if rows:
                removed[info.id] = [format_id(info.id, row.seq) for row in rows]
                total_bytes += sum(row.payload_bytes for row in rows)
        return ExpiryReport(removed=removed, bytes_removed=total_bytes, dry_run=dry_run)

    def vacuum(self) -> VacuumReport:
        """Give the space of deleted checkpoints back to the file system.

        SQLite reuses freed pages by itself, so a compacting store stops
        growing; VACUUM also shrinks the file (it rewrites it: run it when
        idle, it takes the write lock). On PostgreSQL this is VACUUM ANALYZE.
        """
        with self._db.outside_transaction() as cursor:
            before = self._repo.storage_bytes(cursor)
            self._repo.vacuum(cursor)
            after = self._repo.storage_bytes(cursor)
        return VacuumReport(bytes_before=before, bytes_after=after)

    # -- payloads -------------------------------------------------------------

    def encode(self, value: Any, what: str) -> tuple[str, int]:
        """Validate a data/metadata dict against this store's limits.

        Returns:
            Its JSON text and that text's size in UTF-8 bytes.
        """
        return encode_payload(value, what, self.max_depth, self.max_payload_bytes)

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

    # -- find -----------------------------------------------------------------

    def find(
        self,
        name: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        metadata: JSONFilter | None = None,
        data: JSONFilter | None = None,
        limit: int | None = None,
        newest_first: bool = True,
        session_id: str | None = None,
    ) -> Iterator[Checkpoint]:
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
            iterator holds a pooled connection until it is exhausted or closed.

        Raises:
            NaiveDatetimeError: ``since`` or ``until`` has no timezone.
            InvalidDataError: any other bad argument; the message names it.
        """
        query = FindQuery.build(
            session_id=session_id,
            name=name,
            since=since,
            until=until,
            metadata=metadata,
            data=data,
            limit=limit,
            newest_first=newest_first,
        )
        return self._find(query)

    def _find(self, query: FindQuery) -> Iterator[Checkpoint]:
        with self._db.transaction(snapshot=False) as cursor:
            yield from self._repo.find(
                cursor, query.where(self.dialect), query.order_by(), query.limit
            )


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
