"""The asyncio API: :class:`AsyncCheckpointStore` and :class:`AsyncCheckpointManager`.

The same methods, arguments, answers and guarantees as
:class:`~checkpointdb.CheckpointStore` and :class:`~checkpointdb.CheckpointManager`,
as coroutines. Both flavours build the same operations (checks, a transaction
body on the repository's SQL, a finish; see :mod:`checkpointdb.store`); this
one awaits them on an :class:`~checkpointdb.aengine.AsyncDatabase`, so the
event loop never waits on the database. Needs the ``async`` extra
(``pip install 'checkpointdb[async]'``): aiosqlite for SQLite, psycopg 3's
async mode for PostgreSQL.

Where the sync API uses a protocol that cannot await, this one differs:

* ``len(mgr)`` is ``await mgr.count()``;
* ``for cp in mgr`` is ``async for cp in mgr``; ``find()`` and
  ``iter_newest_first()`` return async iterators;
* ``on_checkpoint`` takes a function or a coroutine function;
* there is no process-wide default store: open one and call ``store.manager()``.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from sqlalchemy.engine import URL

from .aengine import AsyncDatabase, check_async_url
from .checkpoint import Checkpoint, JSONDict, SessionInfo
from .engine import DEFAULT_SETTINGS, Database, describe, resolve_url
from .errors import StoreClosedError
from .manager import (
    FIRST_PAGE_AFTER,
    FIRST_PAGE_BEFORE,
    CompactionReport,
    ManagerBase,
    export_json,
    log_callback_failure,
    next_page,
)
from .query import FindQuery, JSONFilter
from .repository import PAGE_SIZE, Repository
from .store import (
    ExpiryReport,
    Plan,
    Ready,
    StoreBase,
    VacuumReport,
    backup_sqlite,
    open_database,
)
from .validate import DEFAULT_MAX_DEPTH, DEFAULT_MAX_PAYLOAD_BYTES

T = TypeVar("T")

AsyncCheckpointCallback = Callable[[Checkpoint], Awaitable[None] | None]


async def perform_async(plan: Plan[T], adb: AsyncDatabase) -> T:
    """Await a plan on an :class:`AsyncDatabase`: one transaction, then its finish."""
    if isinstance(plan, Ready):
        return plan.value
    if plan.autocommit:
        result = await adb.run_outside(plan.body)
    else:
        result = await adb.run(
            plan.body, write=plan.write, snapshot=plan.snapshot, commit=plan.commit
        )
    return plan.finish(result)


def _open_with_sync_database(
    url: URL,
    auto_upgrade: bool,
    synchronous: str,
    busy_timeout: float,
    echo: bool,
    read_only: bool,
    create_in_existing: bool,
) -> tuple[str, float]:
    """Create, check or upgrade the database with a short-lived sync Database (in a thread).

    Returns:
        The validated ``synchronous`` and ``busy_timeout`` settings.
    """
    db, _repo = open_database(
        url,
        auto_upgrade=auto_upgrade,
        synchronous=synchronous,
        busy_timeout=busy_timeout,
        echo=echo,
        read_only=read_only,
        create_in_existing=create_in_existing,
    )
    db.dispose()
    return db.synchronous, db.busy_timeout


class AsyncCheckpointStore(StoreBase):
    """A checkpoint database for asyncio code; see :class:`~checkpointdb.CheckpointStore`.

    Open it with ``store = await AsyncCheckpointStore.open(url)`` (then
    ``await store.close()``), or ``async with AsyncCheckpointStore(url) as
    store:``. Opening creates, checks or upgrades the schema in a worker
    thread, so the event loop never blocks on it. Use a store from one event
    loop: its pooled connections belong to that loop.

    Args:
        url: an SQLite path, an SQLAlchemy URL (any ``sqlite://`` one runs on
            aiosqlite; PostgreSQL needs ``postgresql+psycopg://``), or None
            for ``$CHECKPOINTDB_URL``, else ``./checkpoints.db``.
        auto_upgrade, synchronous, busy_timeout, max_payload_bytes, max_depth, echo,
        read_only, create_in_existing: as for :class:`~checkpointdb.CheckpointStore`.

    Raises:
        SchemaTooNewError, SchemaOutOfDateError, CorruptDatabaseError, CheckpointDBError:
            when it opens.
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
    ) -> None:
        self._set_limits(max_payload_bytes, max_depth)
        self._url = resolve_url(url)
        check_async_url(self._url)
        self._auto_upgrade = auto_upgrade
        self._read_only = read_only
        self._create_in_existing = create_in_existing
        self._synchronous = synchronous
        self._busy_timeout = busy_timeout
        self._echo = echo
        # The database and its repository, once open.
        self._opened: tuple[AsyncDatabase, Repository] | None = None
        self._closed = False

    @classmethod
    async def open(
        cls,
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
    ) -> AsyncCheckpointStore:
        """Open a store: ``store = await AsyncCheckpointStore.open("agent.db")``."""
        store = cls(
            url,
            auto_upgrade=auto_upgrade,
            synchronous=synchronous,
            busy_timeout=busy_timeout,
            max_payload_bytes=max_payload_bytes,
            max_depth=max_depth,
            echo=echo,
            read_only=read_only,
            create_in_existing=create_in_existing,
        )
        await store._open()
        return store

    async def _open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"the store for {self.where} is closed")
        if self._opened is not None:
            return
        synchronous, busy_timeout = await asyncio.to_thread(
            _open_with_sync_database,
            self._url,
            self._auto_upgrade,
            self._synchronous,
            self._busy_timeout,
            self._echo,
            self._read_only,
            self._create_in_existing,
        )
        if self._opened is None:  # another task may have opened it meanwhile
            adb = AsyncDatabase(
                self._url,
                synchronous=synchronous,
                busy_timeout=busy_timeout,
                echo=self._echo,
                read_only=self._read_only,
            )
            self._opened = adb, Repository(adb.engine.dialect, adb.where)

    def _open_parts(self) -> tuple[AsyncDatabase, Repository]:
        if self._opened is None:
            state = "closed" if self._closed else "not open yet"
            raise StoreClosedError(
                f"the store for {self.where} is {state}: use `await AsyncCheckpointStore.open"
                "(url)` or `async with AsyncCheckpointStore(url) as store`"
            )
        return self._opened

    def _database(self) -> AsyncDatabase:
        return self._open_parts()[0]

    def _repository(self) -> Repository:
        return self._open_parts()[1]

    async def _perform(self, plan: Plan[T]) -> T:
        return await perform_async(plan, self._database())

    # -- identity -------------------------------------------------------------

    @property
    def url(self) -> URL:
        """The database URL (for SQLite, with an absolute path)."""
        return self._url

    @property
    def where(self) -> str:
        """The database as people name it: a file path, or the URL without password."""
        return describe(self._url)

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._url.get_backend_name()

    def __repr__(self) -> str:
        return f"AsyncCheckpointStore({self.where!r})"

    # -- managers and sessions ------------------------------------------------

    def manager(
        self,
        session_id: str,
        max_checkpoints: int | None = 100,
        compress_after: int | None = 50,
        *,
        keep_recent: int = 20,
    ) -> AsyncCheckpointManager:
        """An :class:`AsyncCheckpointManager` for one session of this store (no I/O)."""
        return AsyncCheckpointManager(
            session_id, max_checkpoints, compress_after, keep_recent=keep_recent, store=self
        )

    async def sessions(self) -> list[SessionInfo]:
        """Every session in the store, by id: times, live count and last seq."""
        return await self._perform(self._sessions())

    async def session(self, session_id: str) -> SessionInfo | None:
        """One session's info, or None if it has never been written to."""
        return await self._perform(self._session(session_id))

    async def delete_session(self, session_id: str) -> int:
        """Delete a session and all its checkpoints, counter included.

        Raises:
            NotFoundError: there is no such session.
        """
        return await self._perform(self._delete_session(session_id))

    async def schema_revision(self) -> str | None:
        """The Alembic revision the database is at."""
        return await self._perform(self._schema_revision())

    # -- maintenance ----------------------------------------------------------

    async def backup(self, path: str | os.PathLike[str]) -> Path:
        """Copy the live SQLite database to a new file (0600) with SQLite's backup API.

        Runs in a worker thread on a connection of its own.

        Raises:
            CheckpointDBError: the target exists, or the store is on PostgreSQL.
        """
        adb = self._database()
        return await asyncio.to_thread(self._backup, adb, path)

    def _backup(self, adb: AsyncDatabase, path: str | os.PathLike[str]) -> Path:
        db = Database(self._url, synchronous=self._synchronous, busy_timeout=adb.busy_timeout)
        try:
            return backup_sqlite(db, path)
        finally:
            db.dispose()

    async def expire(self, older_than: timedelta, *, dry_run: bool = False) -> ExpiryReport:
        """Delete checkpoints older than ``older_than``; see :meth:`CheckpointStore.expire`.

        Pinned checkpoints and each session's newest stay; one transaction per session.
        """
        expiry = self._expiry(older_than, dry_run)
        repo = self._repository()
        for info in await self.sessions():
            await self._perform(expiry.session_operation(repo, info.id))
        return expiry.report()

    async def vacuum(self) -> VacuumReport:
        """Give the space of deleted checkpoints back to the file system (VACUUM)."""
        return await self._perform(self._vacuum())

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
    ) -> AsyncIterator[Checkpoint]:
        """Stream the checkpoints that match every filter: ``async for cp in store.find(...)``.

        The arguments and order are :meth:`CheckpointStore.find`'s, and so is
        the checking: here, before the first row is read. The iterator reads
        one query a page at a time and holds a pooled connection until it is
        exhausted or closed; to stop early and release it at once, use
        ``async with contextlib.aclosing(store.find(...)) as found``.

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
        return self._database().stream(self._find_body(query), batch=PAGE_SIZE)

    # -- lifetime -------------------------------------------------------------

    async def close(self) -> None:
        """Close every pooled connection. The store cannot be used afterwards."""
        self._closed = True
        if self._opened is not None:
            adb, _repo = self._opened
            self._opened = None
            await adb.dispose()

    async def __aenter__(self) -> AsyncCheckpointStore:
        await self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class AsyncCheckpointManager(ManagerBase):
    """Checkpoints of one agent session, for asyncio code.

    :class:`~checkpointdb.CheckpointManager`'s methods and semantics, as
    coroutines: ``await mgr.create(...)``, ``await mgr.get_latest()``,
    ``async for cp in mgr``. ``len()`` cannot await, so the live count is
    ``await mgr.count()``. Many tasks may share one manager: each call is its
    own transaction, and ids stay contiguous. A task cancelled during a call
    leaves that call's writes whole or not at all.

    Args:
        session_id, max_checkpoints, compress_after, keep_recent:
            as for :class:`~checkpointdb.CheckpointManager`.
        store: the open :class:`AsyncCheckpointStore` to use (required).
    """

    store: AsyncCheckpointStore

    def __init__(
        self,
        session_id: str,
        max_checkpoints: int | None = 100,
        compress_after: int | None = 50,
        *,
        keep_recent: int = 20,
        store: AsyncCheckpointStore,
    ) -> None:
        super().__init__(session_id, max_checkpoints, compress_after, keep_recent)
        self.store = store
        self._on_checkpoint: AsyncCheckpointCallback | None = None

    def __repr__(self) -> str:
        return f"AsyncCheckpointManager({self.session_id!r}, store={self.store!r})"

    # -- writing ----------------------------------------------------------------

    async def create(
        self,
        name: str,
        data: JSONDict,
        metadata: JSONDict | None = None,
        *,
        pin: bool = False,
    ) -> Checkpoint:
        """Create a checkpoint; it is committed when this returns.

        See :meth:`CheckpointManager.create`. The on_checkpoint callback runs
        (and is awaited, if it returns an awaitable) after the commit.
        """
        checkpoint = await self.store._perform(self._create(name, data, metadata, pin))
        callback = self._on_checkpoint
        if callback is not None:
            try:
                outcome = callback(checkpoint)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception:
                log_callback_failure(checkpoint)
        return checkpoint

    async def clear(self) -> int:
        """Delete every checkpoint of the session; ids continue where they were."""
        return await self.store._perform(self._clear())

    async def compact(
        self,
        *,
        keep_recent: int | None = None,
        older_than: timedelta | None = None,
        dry_run: bool = False,
    ) -> CompactionReport:
        """Run the compaction policy now; see :meth:`CheckpointManager.compact`."""
        return await self.store._perform(self._compact(keep_recent, older_than, dry_run))

    async def pin(self, checkpoint_id: str) -> bool:
        """Pin a checkpoint against compaction, the cap and expiry; False if no such id."""
        return await self.store._perform(self._set_pinned(checkpoint_id, True))

    async def unpin(self, checkpoint_id: str) -> bool:
        """Let retention delete a pinned checkpoint again; False if there is no such id."""
        return await self.store._perform(self._set_pinned(checkpoint_id, False))

    # -- reading ----------------------------------------------------------------

    async def get(self, checkpoint_id: str) -> Checkpoint | None:
        """The checkpoint with this id, or None (unknown, malformed or another session's)."""
        return await self.store._perform(self._get(checkpoint_id))

    async def get_by_name(self, name: str, limit: int | None = None) -> list[Checkpoint]:
        """Checkpoints with this name, newest first (at most ``limit``)."""
        return await self.store._perform(self._by_name(name, limit))

    async def get_latest(self, name: str | None = None) -> Checkpoint | None:
        """The newest checkpoint, or the newest with ``name``; None if there is none."""
        return await self.store._perform(self._latest(name))

    async def get_all(self) -> list[Checkpoint]:
        """Every live checkpoint, oldest first. For large sessions iterate instead."""
        return [checkpoint async for checkpoint in self]

    async def iter_newest_first(self) -> AsyncIterator[Checkpoint]:
        """Stream the session's checkpoints newest first, a page at a time."""
        before: int | None = FIRST_PAGE_BEFORE
        while before is not None:
            page = await self.store._perform(self._page_desc(before))
            for checkpoint in page:
                yield checkpoint
            before = next_page(page)

    async def get_since(self, timestamp: datetime) -> list[Checkpoint]:
        """Checkpoints created strictly after ``timestamp`` (aware), in creation order."""
        return await self.store._perform(self._since(timestamp))

    async def get_between(self, start: datetime, end: datetime) -> list[Checkpoint]:
        """Checkpoints created in ``[start, end]`` (both aware), in creation order."""
        return await self.store._perform(self._between(start, end))

    async def rollback_to(self, checkpoint_id: str) -> JSONDict | None:
        """The data to restore the agent to a checkpoint, or None; changes nothing."""
        return self._restore(await self.get(checkpoint_id), checkpoint_id)

    async def get_summary(self) -> dict[str, Any]:
        """Counts per name, first and last checkpoint, and the time between them."""
        return await self.store._perform(self._summary())

    def on_checkpoint(self, callback: AsyncCheckpointCallback) -> None:
        """Call ``callback(checkpoint)`` after each create, once it is committed.

        A coroutine function is awaited. A callback that raises is logged
        with its traceback; the checkpoint stays.
        """
        self._on_checkpoint = callback

    # -- export / import --------------------------------------------------------

    async def export(self) -> str:
        """Every checkpoint as the seed's JSON: a list of ``Checkpoint.to_dict()``."""
        return export_json(await self.get_all())

    async def import_checkpoints(self, json_data: str) -> int:
        """Import checkpoints from :meth:`export` JSON, all or nothing.

        See :meth:`CheckpointManager.import_checkpoints` for the id rules.
        """
        return await self.store._perform(self._import(json_data))

    # -- counting and iteration ---------------------------------------------------

    async def count(self) -> int:
        """Live checkpoints (one row read): the asyncio API's ``len(mgr)``."""
        return await self.store._perform(self._count())

    async def __aiter__(self) -> AsyncIterator[Checkpoint]:
        """Stream the checkpoints oldest first, a page per query (bounded memory)."""
        after: int | None = FIRST_PAGE_AFTER
        while after is not None:
            page = await self.store._perform(self._page(after))
            for checkpoint in page:
                yield checkpoint
            after = next_page(page)

    # -- find -------------------------------------------------------------------

    def find(
        self,
        name: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        metadata: JSONFilter | None = None,
        data: JSONFilter | None = None,
        limit: int | None = None,
        newest_first: bool = True,
    ) -> AsyncIterator[Checkpoint]:
        """Stream this session's checkpoints that match every filter (see the store's find)."""
        return self.store.find(
            name, since, until, metadata, data, limit, newest_first, session_id=self.session_id
        )
