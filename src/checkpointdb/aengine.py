"""The asyncio twin of :class:`checkpointdb.engine.Database`: same transactions, no blocking.

:class:`AsyncDatabase` runs the bodies the sync API runs (functions of a
DBAPI cursor, calling the repository's compiled statements) inside the same
transaction as :meth:`Database.transaction`: ``BEGIN IMMEDIATE`` for writes on
SQLite, COMMIT or ROLLBACK, driver errors translated by
:func:`~checkpointdb.engine.translate_error`. The body runs in
:meth:`AsyncConnection.run_sync`, on SQLAlchemy's adapted DBAPI connection:
its cursor looks synchronous inside the greenlet, and each call awaits the
driver (aiosqlite's thread, psycopg's non-blocking socket), so the event loop
never waits on the database.
"""

from __future__ import annotations

import asyncio
import os
import sys
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager, nullcontext
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection, QueuePool

from .engine import (
    Cursor,
    configure_sqlite_connection,
    create_sqlalchemy_engine,
    describe,
    is_driver_error,
    read_only_error,
    read_only_sqlite_uri,
    translate_error,
)
from .errors import CheckpointDBError, StoreClosedError

try:
    from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
except ImportError as exc:  # greenlet is missing
    raise ImportError(
        "checkpointdb's asyncio API needs the async extra: "
        f"pip install 'checkpointdb[async]' ({exc})"
    ) from exc

T = TypeVar("T")


def check_async_url(url: URL) -> None:
    """Refuse, before anything is opened, a database URL the asyncio API cannot run.

    Raises:
        CheckpointDBError: a PostgreSQL URL with another driver than psycopg.
    """
    if url.get_backend_name() == "postgresql" and url.get_driver_name() != "psycopg":
        raise CheckpointDBError(
            f"the asyncio API runs PostgreSQL through psycopg 3: use a postgresql+psycopg:// "
            f"URL, not {describe(url)!r}"
        )


def _create_async_engine(
    url: URL, *, synchronous: str, busy_timeout: float, echo: bool, read_only: bool
) -> AsyncEngine:
    """The asyncio Engine for ``url``: aiosqlite for SQLite, psycopg's async mode for PostgreSQL.

    With ``read_only``, no connection can write (as for the sync engine).
    """
    if url.get_backend_name() == "postgresql":
        # The sync engine's settings (pool, timeouts, UTC) with psycopg's async dialect.
        return AsyncEngine(
            create_sqlalchemy_engine(
                url.set(drivername="postgresql+psycopg_async"),
                synchronous=synchronous,
                busy_timeout=busy_timeout,
                echo=echo,
                read_only=read_only,
            )
        )
    try:
        read_only_options: dict[str, Any] = {}
        if read_only:
            import aiosqlite

            uri = read_only_sqlite_uri(Path(str(url.database)))
            read_only_options["async_creator"] = lambda: aiosqlite.connect(uri, uri=True)
        engine = create_async_engine(
            url.set(drivername="sqlite+aiosqlite"),
            echo=echo,
            paramstyle="named",
            **read_only_options,
        )
    except ModuleNotFoundError as exc:
        raise ImportError(
            f"checkpointdb's asyncio API on SQLite needs aiosqlite: pip install "
            f"'checkpointdb[async]' ({exc})"
        ) from exc
    _install_aiosqlite_hooks(engine, synchronous, busy_timeout, read_only)
    return engine


def _install_aiosqlite_hooks(
    engine: AsyncEngine, synchronous: str, busy_timeout: float, read_only: bool
) -> None:
    """The pragmas of ``engine._install_sqlite_hooks``, on aiosqlite's adapted connection.

    The sync hooks cannot be installed as they are: their check-in hook reads
    ``in_transaction``, which the adapted connection lacks. It is not needed
    here, since :meth:`AsyncDatabase.run` rolls back every transaction that
    does not commit, and nothing here opens a SQLAlchemy-level transaction.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        configure_sqlite_connection(
            dbapi_connection, synchronous, busy_timeout, read_only=read_only
        )


class _PooledConnection:
    """What a body reaches through ``cursor.connection``: named cursors, and awaiting.

    The repository opens PostgreSQL's server-side cursor for ``find`` with
    ``cursor.connection.cursor(name=...)``; psycopg's adapted connection takes
    that name only positionally.
    """

    def __init__(self, raw: PoolProxiedConnection) -> None:
        self._raw = raw

    def cursor(self, name: str | None = None) -> Any:
        """A cursor on the pooled connection; with a name, a server-side one."""
        return self._raw.cursor(name) if name else self._raw.cursor()

    def run_async(self, make: Callable[[Any], Awaitable[T]]) -> T:
        """Await ``make(driver_connection)`` from inside the greenlet."""
        adapted: Any = self._raw.dbapi_connection
        result: T = adapted.run_async(make)
        return result


class _PooledCursor:
    """The adapted cursor, with the ``connection`` attribute of a DBAPI cursor."""

    def __init__(self, cursor: Any, raw: PoolProxiedConnection) -> None:
        self._cursor = cursor
        self.connection = _PooledConnection(raw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


class AsyncDatabase:
    """One database behind an asyncio Engine; short transactions that never block the loop.

    Settings are taken as given: the sync :class:`~checkpointdb.engine.Database`
    that opened the database (and created or checked its file) validated them.

    On SQLite, this process's writers queue on an :class:`asyncio.Lock` before
    they take a pooled connection: SQLite has one writer at a time, and
    queueing here keeps the waiting tasks off the pool and out of SQLite's
    sleep-and-retry busy handler. Writers in other processes still meet
    ``BEGIN IMMEDIATE`` and ``busy_timeout``.

    After ``fork()``, a child gets a fresh pool, except on SQLite when the
    parent had connections open: those hold SQLite's in-process lock
    bookkeeping, which makes a child's writes unsafe, and unlike the sync
    Database's idle connections they cannot be closed from the fork hook
    (closing one awaits its aiosqlite thread).
    """

    def __init__(
        self,
        url: URL,
        *,
        synchronous: str,
        busy_timeout: float,
        echo: bool,
        read_only: bool = False,
    ) -> None:
        self.url = url
        self.dialect_name = url.get_backend_name()
        self.where = describe(url)
        self.busy_timeout = busy_timeout
        self.is_sqlite = self.dialect_name == "sqlite"
        self.read_only = read_only
        self._engine = _create_async_engine(
            url, synchronous=synchronous, busy_timeout=busy_timeout, echo=echo, read_only=read_only
        )
        self._closed = False
        self._pid = os.getpid()
        self._open_at_fork = 0
        self._write_lock = asyncio.Lock()
        _async_databases.add(self)

    @property
    def engine(self) -> AsyncEngine:
        """The asyncio Engine for this process (a fresh pool after a fork)."""
        if self._closed:
            raise StoreClosedError(f"the store for {self.where} is closed")
        if self._pid != os.getpid():
            if self.is_sqlite and self._open_at_fork:
                raise CheckpointDBError(
                    f"{self.where}: this process was forked while the asyncio store had "
                    "SQLite connections open, and SQLite's file locks cannot be used safely "
                    "from such a child; open a new store in the child, or start workers with "
                    "multiprocessing's 'spawn' method"
                )
            # Forget the parent's connections without closing them: they are the parent's.
            self._engine.sync_engine.dispose(close=False)
            self._write_lock = asyncio.Lock()
            self._pid = os.getpid()
        return self._engine

    @property
    def closed(self) -> bool:
        """True once :meth:`dispose` was called."""
        return self._closed

    def translate(self, exc: BaseException) -> CheckpointDBError:
        """A driver error as one of ours, naming this database."""
        return translate_error(exc, self.where, self.busy_timeout)

    def _writer_slot(self, write: bool) -> AbstractAsyncContextManager[Any]:
        return self._write_lock if write and self.is_sqlite else nullcontext()

    async def run(
        self,
        body: Callable[[Cursor], T],
        *,
        write: bool = False,
        snapshot: bool = True,
        commit: bool = True,
        server_side: bool = False,
    ) -> T:
        """Run ``body(cursor)`` in one short transaction: COMMIT on success, else ROLLBACK.

        The arguments mean what they mean for :meth:`Database.transaction`;
        ``server_side`` gives SQLite's body a cursor that fetches rows as it
        is read rather than all at once. A task cancelled mid-transaction
        rolls it back: the body's work is kept whole or not at all.

        Raises:
            StoreBusyError, StoreFullError, CorruptDatabaseError, CheckpointDBError:
                driver errors, translated; the transaction was rolled back.
        """
        if write and self.read_only:
            raise read_only_error(self.where)
        engine = self.engine
        async with self._writer_slot(write):
            try:
                async with engine.connect() as connection:
                    return await connection.run_sync(
                        self._transaction, body, write, snapshot, commit, server_side
                    )
            except CheckpointDBError:
                raise
            except Exception as exc:
                if is_driver_error(exc):
                    raise self.translate(exc) from exc
                raise

    def _transaction(
        self,
        connection: Connection,
        body: Callable[[Cursor], T],
        write: bool,
        snapshot: bool,
        commit: bool,
        server_side: bool,
    ) -> T:
        """Database.transaction's steps, inside the greenlet, on the adapted connection."""
        raw = connection.connection
        cursor = raw.cursor(server_side=True) if server_side and self.is_sqlite else raw.cursor()
        try:
            if self.is_sqlite:
                if write:
                    cursor.execute("BEGIN IMMEDIATE")
                elif snapshot:
                    cursor.execute("BEGIN")
            result = body(_PooledCursor(cursor, raw))
            if commit:
                raw.commit()
            else:
                raw.rollback()
            return result
        except BaseException as exc:
            # Also on cancellation: the transaction ends here, whole or not at all.
            try:
                raw.rollback()
            except BaseException as failed:
                # A dead connection, or a second cancellation during the
                # rollback: the pool must not hand this connection out again.
                raw.invalidate()
                if not isinstance(failed, Exception):
                    raise
            if isinstance(exc, Exception) and is_driver_error(exc):
                raise self.translate(exc) from exc
            raise
        finally:
            if raw.is_valid:
                cursor.close()

    async def run_outside(self, body: Callable[[Cursor], T]) -> T:
        """Run ``body(cursor)`` in autocommit mode, for statements that refuse transactions."""
        if self.read_only:
            raise read_only_error(self.where)
        engine = self.engine
        async with self._writer_slot(True):
            try:
                async with engine.connect() as connection:
                    return await connection.run_sync(self._outside_transaction, body)
            except CheckpointDBError:
                raise
            except Exception as exc:
                if is_driver_error(exc):
                    raise self.translate(exc) from exc
                raise

    def _outside_transaction(self, connection: Connection, body: Callable[[Cursor], T]) -> T:
        raw = connection.connection
        dbapi: Any = raw.dbapi_connection
        cursor = raw.cursor()
        if not self.is_sqlite:
            raw.rollback()
            dbapi.autocommit = True
        try:
            return body(_PooledCursor(cursor, raw))
        except Exception as exc:
            if is_driver_error(exc):
                raise self.translate(exc) from exc
            raise
        finally:
            cursor.close()
            if not self.is_sqlite:
                dbapi.autocommit = False

    async def stream(
        self, body: Callable[[Cursor], Iterable[T]], *, batch: int
    ) -> AsyncIterator[T]:
        """The items of ``body(cursor)``, read in one transaction, ``batch`` at a time.

        The transaction runs in a task of its own (as :meth:`run` with
        ``snapshot=False``), which hands each batch over through a queue of
        one, so at most two batches are in memory. Closing the iterator early
        cancels that task, which rolls the transaction back and returns the
        connection to the pool.
        """
        handed: asyncio.Queue[list[T] | BaseException | None] = asyncio.Queue(maxsize=1)

        def produce(cursor: Cursor) -> None:
            hand_over = cursor.connection.run_async
            items = iter(body(cursor))
            while chunk := list(islice(items, batch)):
                # Awaits the consumer from inside the greenlet.
                hand_over(lambda _driver, chunk=chunk: handed.put(chunk))

        async def producer() -> None:
            try:
                await self.run(produce, snapshot=False, server_side=True)
            except Exception as exc:
                await handed.put(exc)
            else:
                await handed.put(None)

        task = asyncio.create_task(producer())
        try:
            while True:
                item = await handed.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                for value in item:
                    yield value
        finally:
            if not task.done():
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def prepare_for_fork(self) -> None:
        """Count the pooled connections a child would inherit."""
        if not self._closed and self._pid == os.getpid():
            pool = self._engine.sync_engine.pool
            self._open_at_fork = (
                pool.checkedin() + pool.checkedout() if isinstance(pool, QueuePool) else 0
            )

    async def dispose(self) -> None:
        """Close every pooled connection; the database cannot be used afterwards."""
        if not self._closed:
            self._closed = True
            if self._pid == os.getpid():
                await self._engine.dispose()
            else:
                self._engine.sync_engine.dispose(close=False)


# Async databases open in this process, for the fork hook below.
_async_databases: weakref.WeakSet[AsyncDatabase] = weakref.WeakSet()


def _before_fork() -> None:
    for database in list(_async_databases):
        database.prepare_for_fork()


if sys.platform != "win32":
    os.register_at_fork(before=_before_fork)
