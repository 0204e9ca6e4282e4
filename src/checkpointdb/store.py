"""CheckpointStore: owns the database, lists and deletes sessions, hands out managers."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import URL

from . import migrate
from .checkpoint import SessionInfo
from .engine import DEFAULT_SETTINGS, Database, resolve_url
from .errors import CheckpointDBError, NotFoundError
from .repository import Repository
from .validate import (
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_PAYLOAD_BYTES,
    check_identifier,
    encode_payload,
)

if TYPE_CHECKING:
    from .manager import CheckpointManager


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
        self._repo = Repository(self._db.engine.dialect)
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

    # -- payloads -------------------------------------------------------------

    def encode(self, value: Any, what: str) -> str:
        """Validate a data/metadata dict against this store's limits; return its JSON."""
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
