"""The asyncio API: :class:`AsyncCheckpointStore` and :class:`AsyncCheckpointManager`.

The same methods, arguments, answers and guarantees as
:class:`~checkpointdb.CheckpointStore` and :class:`~checkpointdb.CheckpointManager`,
as coroutines. Both flavours build the same operations (checks, a transaction
body on the repository's SQL, a finish; see :mod:`checkpointdb.operations`)
and run them with the same :func:`~checkpointdb.operations.perform` on the
same sync :class:`~checkpointdb.engine.Database`: this flavour hands each
call to a small pool of worker threads owned by the store, in one hop, so
the event loop never waits on the database. (A create is one hop, where
an asyncio driver would await every statement; on SQLite, writes that
wait for the write thread together share one COMMIT.) No extra dependency is
needed; the ``async`` extra is kept, empty, for installs that name it.

Cancelling a task that awaits a call never cuts a transaction in two. If
the call had not started on its worker thread, it never runs. If it had,
its body runs to the end there, committed or rolled back whole, and the task
then raises :class:`asyncio.CancelledError`; the call's answer is lost, but
a create that committed is in the store. So cancellation takes effect after
at most one call, which can be as long as ``busy_timeout`` when another
process holds the write lock. A stream (``find()``, ``async for``) holds no
worker thread between pages; closing it or cancelling its reader ends its
transaction on a worker thread.

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
import threading
from collections import deque
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
)
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from datetime import datetime, timedelta
from itertools import islice
from operator import attrgetter
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

from .checkpoint import STORED, Checkpoint, DataT, JSONDict, KeepRecent, Limit, SessionInfo
from .engine import (
    DEFAULT_SETTINGS,
    AnyURL,
    Database,
    SqliteURL,
    Trace,
    describe,
    resolve_target,
    sqlalchemy_url,
)
from .errors import CheckpointDBError, StoreClosedError
from .manager import (
    FIRST_PAGE_AFTER,
    FIRST_PAGE_BEFORE,
    BatchEntry,
    CompactionReport,
    Keep,
    ManagerBase,
    StateInput,
    export_json,
    log_callback_failure,
    next_page,
)
from .operations import (
    Context,
    Plan,
    Ready,
    can_share_commit,
    find_stream,
    perform,
    perform_together,
)
from .query import FindQuery, session_filters, takes_filters
from .repository import PAGE_SIZE
from .store import ExpiryReport, StoreBase, VacuumReport, backup_sqlite, open_database
from .validate import DEFAULT_MAX_DEPTH, DEFAULT_MAX_PAYLOAD_BYTES

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

T = TypeVar("T")
M = TypeVar("M")

AsyncCheckpointCallback = Callable[[Checkpoint[DataT]], Awaitable[None] | None]

# Worker threads per store. SQLite has one writer at a time: its writes go
# to one thread of their own, in order, and never meet each other in
# SQLite's sleep-and-retry busy handler; reads take a few more threads, so
# they go on while a write waits for another process's lock. PostgreSQL
# runs as many calls at once as the pool lends connections.
_SQLITE_READ_THREADS = 3
_POSTGRESQL_THREADS = DEFAULT_SETTINGS["pool_size"] + DEFAULT_SETTINGS["max_overflow"]
# The most SQLite writes one COMMIT makes durable together.
_GROUP_LIMIT = 64


def check_async_url(url: AnyURL) -> None:
    """Refuse, before anything is opened, a database URL the asyncio API cannot run.

    Raises:
        CheckpointDBError: a PostgreSQL URL with another driver than psycopg.
    """
    if isinstance(url, SqliteURL):
        return
    if url.get_backend_name() == "postgresql" and url.get_driver_name() != "psycopg":
        raise CheckpointDBError(
            f"the asyncio API runs PostgreSQL through psycopg 3: use a postgresql+psycopg:// "
            f"URL, not {describe(url)!r}"
        )


async def _outlive(job: Future[Any]) -> None:
    """Wait until ``job`` has ended on its thread, through any further cancellation."""
    waiting = asyncio.wrap_future(job)
    while not waiting.done():
        # Its outcome belongs to no one now; only its end matters.
        with suppress(asyncio.CancelledError, Exception):
            await asyncio.shield(waiting)
    if not waiting.cancelled():
        waiting.exception()  # retrieved, so asyncio does not log it as lost


def _take(items: Iterator[T], count: int) -> list[T]:
    return list(islice(items, count))


class _Writes:
    """The one thread of an SQLite store's writes, which commits writes queued together at once.

    Writes run in the order they were submitted. When several are waiting
    (many tasks creating at the same moment), the thread runs up to
    ``_GROUP_LIMIT`` of them in one transaction with one COMMIT (see
    :func:`~checkpointdb.operations.perform_together`); each caller's answer
    is only given after that COMMIT.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._thread = ThreadPoolExecutor(1, "checkpointdb-write")
        self._lock = threading.Lock()
        self._waiting: deque[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]] = deque()
        self._draining = False

    def submit(self, function: Callable[..., T], *args: Any) -> Future[T]:
        """Queue ``function(*args)``; a plan for ``perform`` may share a commit."""
        job: Future[T] = Future()
        with self._lock:
            self._waiting.append((job, function, args))
            if not self._draining:
                self._draining = True
                self._thread.submit(self._drain)
        return job

    def shutdown(self) -> None:
        """Wait for the queued writes, then stop the thread."""
        self._thread.shutdown()

    def _next(self) -> list[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]] | None:
        # The next job alone, or the run of groupable writes it starts; None
        # when nothing is waiting (the next submit starts a new drain).
        with self._lock:
            if not self._waiting:
                self._draining = False
                return None
            jobs = [self._waiting.popleft()]
            while (
                self._waiting
                and len(jobs) < _GROUP_LIMIT
                and _groupable(jobs[0])
                and _groupable(self._waiting[0])
            ):
                jobs.append(self._waiting.popleft())
        # A job cancelled before it started never runs.
        return [job for job in jobs if job[0].set_running_or_notify_cancel()]

    def _drain(self) -> None:
        while (jobs := self._next()) is not None:
            results = (
                perform_together([job[2][0] for job in jobs], self._db)
                if len(jobs) > 1
                else None
            )
            if results is None:
                for job, function, args in jobs:
                    _settle(job, function, *args)
            else:
                for (job, _, (plan, _db)), result in zip(jobs, results, strict=True):
                    _settle(job, plan.finish, result)


def _groupable(job: tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]) -> bool:
    return job[1] is perform and can_share_commit(job[2][0])


def _settle(job: Future[T], function: Callable[..., T], *args: Any) -> None:
    try:
        job.set_result(function(*args))
    except BaseException as exc:  # the caller's to handle, as in a thread pool
        job.set_exception(exc)


class _Worker:
    """The sync Database of an asyncio store, and the threads that run its operations.

    After ``fork()``, a child starts threads of its own (the parent's do not
    exist there); the Database handles its connections as for the sync API.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._pid = os.getpid()
        self._readers: ThreadPoolExecutor | None = None
        self._writer: ThreadPoolExecutor | _Writes | None = None

    def _start(self) -> tuple[ThreadPoolExecutor, ThreadPoolExecutor | _Writes]:
        if self.db.is_sqlite:
            readers = ThreadPoolExecutor(_SQLITE_READ_THREADS, "checkpointdb-read")
            return readers, _Writes(self.db)
        shared = ThreadPoolExecutor(_POSTGRESQL_THREADS, "checkpointdb")
        return shared, shared

    def _pool(self, write: bool = False) -> ThreadPoolExecutor | _Writes:
        if self._readers is None or self._writer is None or self._pid != os.getpid():
            self._readers, self._writer = self._start()
            self._pid = os.getpid()
        return self._writer if write else self._readers

    async def call(self, function: Callable[..., T], *args: Any, write: bool = False) -> T:
        """``function(*args)`` on a worker thread, in one hop (see the module on cancellation).

        ``write`` sends it to the thread of SQLite's writes.
        """
        job = self._pool(write).submit(function, *args)
        try:
            return await asyncio.wrap_future(job)
        except asyncio.CancelledError:
            if not job.cancelled():  # it had started: let it end whole first
                await _outlive(job)
            raise

    async def perform(self, plan: Plan[T]) -> T:
        """Run a plan as :func:`~checkpointdb.operations.perform` does, on a worker thread."""
        if isinstance(plan, Ready):
            return plan.value
        return await self.call(perform, plan, self.db, write=plan.write or plan.autocommit)

    async def stream(self, items: Generator[T, None, None], batch: int) -> AsyncIterator[T]:
        """The items of a sync iterator over one transaction, read ``batch`` at a time.

        Each batch is one hop to a worker thread; no thread waits in between,
        and at most one batch is in memory. Closing the async iterator closes
        ``items`` (ending its transaction) on a worker thread.
        """
        try:
            while chunk := await self.call(_take, items, batch):
                for item in chunk:
                    yield item
        finally:
            await _outlive(self._pool().submit(items.close))

    async def close(self) -> None:
        """Wait for running calls, stop the threads and close the database's connections."""
        executors = {self._readers, self._writer}
        self._readers = self._writer = None
        if self._pid == os.getpid():
            for executor in executors:
                if executor is not None:
                    await asyncio.to_thread(executor.shutdown)
        self.db.dispose()


class AsyncCheckpointStore(StoreBase):
    """A checkpoint database for asyncio code; see :class:`~checkpointdb.CheckpointStore`.

    Open it with ``store = await AsyncCheckpointStore.open(url)`` (then
    ``await store.close()``), or ``async with AsyncCheckpointStore(url) as
    store:``. Opening creates, checks or upgrades the schema in a worker
    thread, so the event loop never blocks on it. Use a store from one event
    loop: its pooled connections belong to that loop.

    Args:
        url: an SQLite path, an SQLAlchemy URL (PostgreSQL needs
            ``postgresql+psycopg://``), or None
            for ``$CHECKPOINTDB_URL``, else ``./checkpoints.db``.
        auto_upgrade, synchronous, busy_timeout, max_payload_bytes, max_depth, echo,
        read_only, create_in_existing, pool_size, trace: as for
            :class:`~checkpointdb.CheckpointStore` (``trace`` is called on the
            store's worker threads).

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
        pool_size: int = DEFAULT_SETTINGS["pool_size"],
        trace: Trace | None = None,
    ) -> None:
        self._set_limits(max_payload_bytes, max_depth)
        self._url = resolve_target(url)
        check_async_url(self._url)
        self._auto_upgrade = auto_upgrade
        self._read_only = read_only
        self._create_in_existing = create_in_existing
        self._synchronous = synchronous
        self._busy_timeout = busy_timeout
        self._echo = echo
        self._pool_size = pool_size
        self._trace = trace
        # The worker and the managers' context, once open.
        self._opened: tuple[_Worker, Context] | None = None
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
        pool_size: int = DEFAULT_SETTINGS["pool_size"],
        trace: Trace | None = None,
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
            pool_size=pool_size,
            trace=trace,
        )
        await store._open()
        return store

    async def _open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"the store for {self.where} is closed")
        if self._opened is not None:
            return
        db, repo = await asyncio.to_thread(
            open_database,
            self._url,
            auto_upgrade=self._auto_upgrade,
            synchronous=self._synchronous,
            busy_timeout=self._busy_timeout,
            echo=self._echo,
            read_only=self._read_only,
            create_in_existing=self._create_in_existing,
            pool_size=self._pool_size,
            trace=self._trace,
        )
        if self._opened is None:
            self._opened = _Worker(db), Context(db, repo, self.encode)
        else:  # another task opened it meanwhile
            db.dispose()

    def _open_parts(self) -> tuple[_Worker, Context]:
        if self._opened is None:
            state = "closed" if self._closed else "not open yet"
            raise StoreClosedError(
                f"the store for {self.where} is {state}: use `await AsyncCheckpointStore.open"
                "(url)` or `async with AsyncCheckpointStore(url) as store`"
            )
        return self._opened

    def _worker(self) -> _Worker:
        return self._open_parts()[0]

    def context(self) -> Context:
        """The database, repository and payload encoder this store's managers use.

        Raises:
            StoreClosedError: the store is not open (yet, or any more).
        """
        return self._open_parts()[1]

    async def _perform(self, plan: Plan[T]) -> T:
        return await self._worker().perform(plan)

    # -- identity -------------------------------------------------------------

    @property
    def url(self) -> URL:
        """The database URL (for SQLite, with an absolute path)."""
        return sqlalchemy_url(self._url)

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
    ) -> AsyncCheckpointManager[JSONDict]: ...

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
    ) -> AsyncCheckpointManager[M]: ...

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
    ) -> AsyncCheckpointManager[Any]:
        """An :class:`AsyncCheckpointManager` for one session of this store (no I/O).

        The arguments, and the defaults' retention, are those of
        :meth:`CheckpointStore.manager <checkpointdb.CheckpointStore.manager>`.
        """
        return AsyncCheckpointManager(
            session_id,
            max_checkpoints,
            compress_after,
            keep_recent=keep_recent,
            store=self,
            keep=keep,
            strict=strict,
            model=model,
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

        Runs on a worker thread.

        Raises:
            CheckpointDBError: the target exists, or the store is on PostgreSQL.
        """
        worker = self._worker()
        return await worker.call(backup_sqlite, worker.db, path)

    async def expire(self, older_than: timedelta, *, dry_run: bool = False) -> ExpiryReport:
        """Delete checkpoints older than ``older_than``; see :meth:`CheckpointStore.expire`.

        Pinned checkpoints and each session's newest stay; one transaction per session.
        """
        expiry = self._expiry(older_than, dry_run)
        repo = self.context().repo
        for info in await self.sessions():
            await self._perform(expiry.session_operation(repo, info.id))
        return expiry.report()

    async def vacuum(self) -> VacuumReport:
        """Give the space of deleted checkpoints back to the file system (VACUUM)."""
        return await self._perform(self._vacuum())

    # -- find -----------------------------------------------------------------

    @takes_filters(FindQuery.build)
    def find(self, query: FindQuery) -> AsyncIterator[Checkpoint]:
        """Stream the checkpoints that match every filter: ``async for cp in store.find(...)``.

        The arguments and order are :meth:`CheckpointStore.find`'s, and so is
        the checking: here, before the first row is read. The iterator reads
        one query a page at a time and holds a pooled connection until it is
        exhausted or closed (with a ``limit`` of at most one page, only while
        it reads them all, for the first item); to stop early and release it
        at once, use ``async with contextlib.aclosing(store.find(...)) as found``.

        Raises:
            NaiveDatetimeError: ``since`` or ``until`` has no timezone.
            InvalidDataError: any other bad argument; the message names it.
        """
        worker = self._worker()
        return worker.stream(find_stream(worker.db, self.context().repo, query), PAGE_SIZE)

    # -- lifetime -------------------------------------------------------------

    async def close(self) -> None:
        """Close every pooled connection. The store cannot be used afterwards."""
        self._closed = True
        if self._opened is not None:
            worker, _context = self._opened
            self._opened = None
            await worker.close()

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


class AsyncCheckpointManager(ManagerBase[DataT]):
    """Checkpoints of one agent session, for asyncio code.

    :class:`~checkpointdb.CheckpointManager`'s methods and semantics, as
    coroutines: ``await mgr.create(...)``, ``await mgr.get_latest()``,
    ``async for cp in mgr``. ``len()`` cannot await, so the live count is
    ``await mgr.count()``. Many tasks may share one manager: each call is its
    own transaction, and ids stay contiguous. A task cancelled during a call
    leaves that call's writes whole or not at all.

    Args:
        session_id, max_checkpoints, compress_after, keep_recent, keep, strict, model:
            as for :class:`~checkpointdb.CheckpointManager`.
        store: the open :class:`AsyncCheckpointStore` to use (required).
    """

    store: AsyncCheckpointStore

    @overload
    def __init__(
        self: AsyncCheckpointManager[JSONDict],
        session_id: str,
        max_checkpoints: Limit = STORED,
        compress_after: Limit = STORED,
        *,
        keep_recent: KeepRecent = STORED,
        store: AsyncCheckpointStore,
        keep: Keep = None,
        strict: bool = False,
        model: None = None,
    ) -> None: ...

    @overload
    def __init__(
        self: AsyncCheckpointManager[M],
        session_id: str,
        max_checkpoints: Limit = STORED,
        compress_after: Limit = STORED,
        *,
        keep_recent: KeepRecent = STORED,
        store: AsyncCheckpointStore,
        keep: Keep = None,
        strict: bool = False,
        model: type[M],
    ) -> None: ...

    @overload
    def __init__(
        self: AsyncCheckpointManager[Any],
        session_id: str,
        max_checkpoints: Limit = STORED,
        compress_after: Limit = STORED,
        *,
        keep_recent: KeepRecent = STORED,
        store: AsyncCheckpointStore,
        keep: Keep = None,
        strict: bool = False,
        model: type[Any] | None = None,
    ) -> None: ...

    def __init__(
        self,
        session_id: str,
        max_checkpoints: Limit = STORED,
        compress_after: Limit = STORED,
        *,
        keep_recent: KeepRecent = STORED,
        store: AsyncCheckpointStore,
        keep: Keep = None,
        strict: bool = False,
        model: type[Any] | None = None,
    ) -> None:
        super().__init__(
            session_id, max_checkpoints, compress_after, keep_recent, keep, strict, model
        )
        self.store = store
        self._on_checkpoint: AsyncCheckpointCallback[DataT] | None = None

    def _context(self) -> Context:
        return self.store.context()

    def __repr__(self) -> str:
        return f"AsyncCheckpointManager({self.session_id!r}, store={self.store!r})"

    # -- writing ----------------------------------------------------------------

    async def create(
        self,
        name: str,
        data: StateInput | DataT,
        metadata: Mapping[str, Any] | None = None,
        *,
        pin: bool = False,
        parent: str | None = None,
    ) -> Checkpoint[DataT]:
        """Create a checkpoint; it is committed when this returns.

        See :meth:`CheckpointManager.create`. The on_checkpoint callback runs
        (and is awaited, if it returns an awaitable) after the commit.
        """
        checkpoint = await self.store._perform(self._create(name, data, metadata, pin, parent))
        await self._notify([checkpoint])
        return checkpoint

    async def _notify(self, checkpoints: list[Checkpoint[DataT]]) -> None:
        callback = self._on_checkpoint
        if callback is None:
            return
        for checkpoint in checkpoints:
            try:
                outcome = callback(checkpoint)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception:
                log_callback_failure(checkpoint)

    async def create_many(
        self, entries: Iterable[BatchEntry], *, keep_newest: int | None = None
    ) -> list[Checkpoint[DataT]]:
        """Create several checkpoints in one transaction (see the sync ``create_many``)."""
        created = await self.store._perform(self._create_many_keeping(entries, keep_newest))
        await self._notify(created)
        return created

    async def delete(self, checkpoint_id: str) -> bool:
        """Delete one checkpoint; False if there is no such live checkpoint (strict: raise)."""
        return self._done(await self.store._perform(self._delete(checkpoint_id)), checkpoint_id)

    async def pop(self) -> Checkpoint[DataT] | None:
        """Delete the newest checkpoint and return it (None if the session is empty)."""
        return self._maybe(await self.store._perform(self._pop()))

    async def truncate_after(self, checkpoint_id: str) -> int:
        """Delete every checkpoint newer than this one; the count (see the sync API)."""
        return await self.store._perform(self._truncate_after(checkpoint_id))

    async def fork(
        self, checkpoint_id: str, new_session_id: str, *, history: str = "lineage"
    ) -> AsyncCheckpointManager[DataT]:
        """Start a new session from a checkpoint; see :meth:`CheckpointManager.fork`."""
        new_id = await self.store._perform(self._fork(checkpoint_id, new_session_id, history))
        # model None gives AsyncCheckpointManager[JSONDict], which DataT then is.
        return cast(
            AsyncCheckpointManager[DataT],
            self.store.manager(new_id, strict=self.strict, model=self.model),
        )

    async def set_session_metadata(self, metadata: JSONDict) -> None:
        """Replace the session's own metadata (``await store.session(sid)`` shows it)."""
        await self.store._perform(self._set_session_metadata(metadata))

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
        done = await self.store._perform(self._set_pinned(checkpoint_id, True))
        return self._done(done, checkpoint_id)

    async def unpin(self, checkpoint_id: str) -> bool:
        """Let retention delete a pinned checkpoint again; False if there is no such id."""
        done = await self.store._perform(self._set_pinned(checkpoint_id, False))
        return self._done(done, checkpoint_id)

    # -- reading ----------------------------------------------------------------

    async def get(self, checkpoint_id: str) -> Checkpoint[DataT] | None:
        """The checkpoint with this id, or None (unknown, malformed or another session's).

        Raises:
            NotFoundError: instead of returning None, if the manager is strict.
        """
        return self._by_id(await self.store._perform(self._get(checkpoint_id)), checkpoint_id)

    async def get_by_name(self, name: str, limit: int | None = None) -> list[Checkpoint[DataT]]:
        """Checkpoints with this name, newest first (at most ``limit``)."""
        return self._typed_list(await self.store._perform(self._by_name(name, limit)))

    async def get_latest(self, name: str | None = None) -> Checkpoint[DataT] | None:
        """The newest checkpoint, or the newest with ``name``; None if there is none."""
        return self._maybe(await self.store._perform(self._latest(name)))

    async def resume(self, default: DataT) -> DataT:
        """The newest checkpoint's data, or ``default``: ``state = await mgr.resume({...})``."""
        return self._resume(await self.get_latest(), default)

    async def get_all(self) -> list[Checkpoint[DataT]]:
        """Every live checkpoint, oldest first, as one moment saw them (one snapshot)."""
        return self._typed_list(await self.store._perform(self._all_at_once()))

    async def get_recent(self, n: int) -> list[Checkpoint[DataT]]:
        """The newest ``n`` checkpoints, oldest first."""
        return self._typed_list(await self.store._perform(self._recent(n)))

    async def lineage(self, checkpoint_id: str) -> list[Checkpoint[DataT]]:
        """The checkpoint and its live ancestors, oldest first (see the sync ``lineage``)."""
        found = await self.store._perform(self._lineage(checkpoint_id))
        self._done(bool(found), checkpoint_id)
        return self._typed_list(found)

    async def diff(self, a_id: str, b_id: str) -> list[dict[str, Any]]:
        """The RFC 6902 JSON Patch that turns checkpoint a's data into b's."""
        return await self.store._perform(self._diff(a_id, b_id))

    async def iter_newest_first(self) -> AsyncIterator[Checkpoint[DataT]]:
        """Stream the session's checkpoints newest first, a page at a time."""
        before: int | None = FIRST_PAGE_BEFORE
        while before is not None:
            page = await self.store._perform(self._page_desc(before))
            for checkpoint in self._typed_list(page):
                yield checkpoint
            before = next_page(page)

    async def get_since(self, timestamp: datetime) -> list[Checkpoint[DataT]]:
        """Checkpoints created strictly after ``timestamp`` (aware), in creation order."""
        return self._typed_list(await self.store._perform(self._since(timestamp)))

    async def get_between(self, start: datetime, end: datetime) -> list[Checkpoint[DataT]]:
        """Checkpoints created in ``[start, end]`` (both aware), in creation order."""
        return self._typed_list(await self.store._perform(self._between(start, end)))

    async def rollback_to(self, checkpoint_id: str) -> DataT | None:
        """The data to restore the agent to a checkpoint, or None; changes nothing.

        Raises:
            NotFoundError: instead of returning None, if the manager is strict.
        """
        return self._restore(await self.get(checkpoint_id), checkpoint_id)

    async def get_summary(self) -> dict[str, Any]:
        """Counts per name, first and last checkpoint, and the time between them."""
        return await self.store._perform(self._summary())

    def on_checkpoint(self, callback: AsyncCheckpointCallback[DataT]) -> None:
        """Call ``callback(checkpoint)`` after each create, once it is committed.

        A coroutine function is awaited. A callback that raises is logged
        with its traceback; the checkpoint stays.
        """
        self._on_checkpoint = callback

    # -- export / import --------------------------------------------------------

    async def export(self) -> str:
        """Every checkpoint as export JSON, oldest first, as one moment saw them (one snapshot).

        The stored JSON, whatever the manager's model.
        """
        checkpoints = await self.store._perform(self._all_at_once())
        return export_json(checkpoints)

    async def import_checkpoints(self, json_data: str) -> int:
        """Import checkpoints from :meth:`export` JSON, all or nothing.

        See :meth:`CheckpointManager.import_checkpoints` for the id rules.
        """
        return await self.store._perform(self._import(json_data))

    # -- counting and iteration ---------------------------------------------------

    async def count(self) -> int:
        """Live checkpoints (one row read): the asyncio API's ``len(mgr)``."""
        return await self.store._perform(self._count())

    async def __aiter__(self) -> AsyncIterator[Checkpoint[DataT]]:
        """Stream the checkpoints oldest first, a page per query (bounded memory)."""
        after: int | None = FIRST_PAGE_AFTER
        while after is not None:
            page = await self.store._perform(self._page(after))
            for checkpoint in self._typed_list(page):
                yield checkpoint
            after = next_page(page)

    # -- find -------------------------------------------------------------------

    @takes_filters(session_filters, attrgetter("session_id"))
    def find(self, query: FindQuery) -> AsyncIterator[Checkpoint[DataT]]:
        """Stream this session's checkpoints that match every filter (see the store's find)."""
        worker = self.store._worker()
        found = find_stream(worker.db, self._context().repo, query)
        return worker.stream(self._typed_stream(found), PAGE_SIZE)
