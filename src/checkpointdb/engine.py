"""From a URL to a working connection: SQLite pragmas, transactions, driver errors.

Everything that depends on *how* we talk to the database lives here:

* resolving ``None`` / a bare path / ``CHECKPOINTDB_URL`` to a SQLAlchemy URL;
* creating a new SQLite file with mode 0600 before SQLite touches it, and
  refusing a file that is not an SQLite database without writing to it;
* read-only databases that cannot write whatever is asked of them (SQLite
  with ``query_only`` on a connection that leaves no ``-wal`` or ``-shm``
  behind; PostgreSQL refuses writes before taking a connection and reads
  in READ ONLY transactions);
* per-connection pragmas (WAL, foreign keys, synchronous, busy timeout) and
  the pysqlite transaction recipe, so that writes take the lock up front with
  ``BEGIN IMMEDIATE`` and SQLAlchemy never issues a BEGIN of its own;
* short transactions on the pooled DBAPI connection
  (:meth:`Database.transaction`) that always end in COMMIT or ROLLBACK, for
  both flavours of the API (the asyncio one runs them on worker threads);
* turning driver errors into :mod:`checkpointdb.errors` with the file named,
  in one place (:class:`DriverErrors`).
"""

from __future__ import annotations

import logging
import math
import os
import re
import select
import sqlite3
import stat
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, TypeAlias, cast

from .errors import (
    CheckpointDBError,
    CorruptDatabaseError,
    MissingDriverError,
    NotFoundError,
    ReadOnlyStoreError,
    StoreBusyError,
    StoreClosedError,
    StoreFullError,
)
from .types import dumps_jsonb

if sys.platform != "win32":
    import resource

# SQLAlchemy (about 200 ms of imports) is imported when something needs it:
# a PostgreSQL URL, migrations, ``store.engine``, echo. Opening an SQLite
# store at head and its everyday calls run on sqlite3 alone.
if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Connection, Engine
    from sqlalchemy.pool import ConnectionPoolEntry

logger = logging.getLogger(__name__)

ENV_URL = "CHECKPOINTDB_URL"
DEFAULT_PATH = "checkpoints.db"

# Connection settings, named here rather than scattered as literals.
DEFAULT_SETTINGS: dict[str, Any] = {
    # Seconds a writer waits for another writer's lock before StoreBusyError.
    "busy_timeout": 30.0,
    # NORMAL in WAL mode survives any process crash; FULL also survives power loss.
    "synchronous": "NORMAL",
    # PostgreSQL: enough connections for a busy agent host, few enough that
    # dozens of hosts do not exhaust the server's max_connections (100).
    # CheckpointStore(url, pool_size=N) sets it per store.
    "pool_size": 5,
    "max_overflow": 5,
    # Drop server connections before typical proxy / firewall idle cut-offs.
    "pool_recycle": 1800,
}

# PostgreSQL SQLSTATEs of a transaction the server rolled back to settle a
# conflict between writers (deadlock_detected, serialization_failure): nothing
# was applied, so running the transaction again is safe.
CONFLICT_SQLSTATES = ("40P01", "40001")

_SQLITE_MAGIC = b"SQLite format 3\x00"
_SQLITE_HEADER_SIZE = 100

# SQLite primary result codes (sqlite3.Error.sqlite_errorcode & 0xFF).
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_CANTOPEN = 14
_SQLITE_NOTADB = 26
# An extended result code: a write() failed for another reason than ENOSPC
# (SQLite reports that one as SQLITE_FULL), such as EFBIG at a file size limit.
_SQLITE_IOERR_WRITE = 10 | (3 << 8)
# SQLite's largest page: a write this close to a size limit ran into it.
_MAX_PAGE_SIZE = 65536


class SqliteURL:
    """An SQLite database URL, known without SQLAlchemy.

    It answers the questions the opening of a store asks of a URL; where a
    real SQLAlchemy URL is needed, :func:`sqlalchemy_url` makes one.
    """

    __slots__ = ("database",)

    drivername = "sqlite+pysqlite"

    def __init__(self, database: str) -> None:
        self.database = database

    def get_backend_name(self) -> str:
        """``"sqlite"``, as a URL says it."""
        return "sqlite"

    def render_as_string(self, hide_password: bool = True) -> str:
        """The URL's text, as SQLAlchemy writes it."""
        return f"{self.drivername}:///{self.database}"


# A URL as the store holds it: SQLAlchemy's, or an SQLite one parsed without it.
AnyURL: TypeAlias = "URL | SqliteURL"

# An SQLite URL whose database is a plain path: parsed without SQLAlchemy.
# Anything else (a query string, escapes, a host) is SQLAlchemy's to parse.
_PLAIN_SQLITE_URL = re.compile(r"sqlite(?:\+pysqlite)?:///([^?#%@:\s]+)")


def sqlalchemy_url(url: AnyURL) -> URL:
    """``url`` as a SQLAlchemy URL (imports SQLAlchemy)."""
    from sqlalchemy.engine import URL

    if isinstance(url, SqliteURL):
        return URL.create(url.drivername, database=url.database)
    return url


class Cursor(Protocol):
    """The slice of a DBAPI cursor the repository uses."""

    rowcount: int
    connection: Any

    def execute(self, operation: Any, parameters: Any = ...) -> Any:
        """Run one statement."""

    def fetchone(self) -> Any:
        """Next row or None."""

    def fetchall(self) -> list[Any]:
        """All remaining rows."""

    def close(self) -> Any:
        """Release the cursor."""


def resolve_url(target: str | os.PathLike[str] | URL | None) -> URL:
    """Turn what a user passes into a SQLAlchemy URL.

    ``None`` means ``$CHECKPOINTDB_URL`` or ``./checkpoints.db``; a string with
    ``://`` is a URL; anything else is a filesystem path to an SQLite file.
    """
    return sqlalchemy_url(resolve_target(target))


def resolve_target(target: str | os.PathLike[str] | URL | None) -> AnyURL:
    """As :func:`resolve_url`, but an SQLite path or plain SQLite URL needs no SQLAlchemy."""
    if target is None:
        target = os.environ.get(ENV_URL) or DEFAULT_PATH
    url: AnyURL
    if isinstance(target, str) and "://" in target:
        plain = _PLAIN_SQLITE_URL.fullmatch(target)
        url = SqliteURL(plain.group(1)) if plain else _parse_url(target)
    elif _is_sqlalchemy_url(target):
        url = cast("URL", target)
    else:
        path = Path(os.fspath(cast("str | os.PathLike[str]", target))).expanduser()
        url = SqliteURL(str(path.absolute()))
    if isinstance(url, SqliteURL):
        return url
    if url.get_backend_name() == "sqlite":
        database = url.database
        if not database or database == ":memory:" or database.startswith("file:"):
            raise CheckpointDBError(
                f"in-memory SQLite ({url.render_as_string()!r}) cannot be shared by the "
                "pool; use a file path, for example one in tempfile.mkdtemp()"
            )
        url = url.set(drivername="sqlite+pysqlite")
    elif url.get_backend_name() == "postgresql" and url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    return url


def _is_sqlalchemy_url(value: object) -> bool:
    # A URL object was made by SQLAlchemy, so it is imported already.
    if "sqlalchemy" not in sys.modules:
        return False
    from sqlalchemy.engine import URL

    return isinstance(value, URL)


def _parse_url(text: str) -> URL:
    """A URL from its text; a bad one is refused without showing its credentials."""
    scheme, _, rest = text.partition("://")
    authority = rest.split("/", 1)[0]
    # Credentials are everything up to the last "@": with an unescaped "@" in
    # the password, the parser would take part of the password for the host.
    shown = f"{scheme}://***@{authority.rpartition('@')[2]}" if "@" in authority else text
    if authority.count("@") > 1:
        raise CheckpointDBError(
            f"bad database URL {shown!r}: its user name or password contains '@'; "
            "write it as %40"
        )
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(text)
    except (ValueError, ArgumentError) as exc:
        reason = str(exc).replace(text, shown)
        credentials = authority.rpartition("@")[0]
        if credentials and any(part and part in reason for part in credentials.split(":")):
            reason = type(exc).__name__
        raise CheckpointDBError(
            f"bad database URL {shown!r} ({reason}); expected "
            "postgresql+psycopg://user:password@host:port/database or an SQLite path"
        ) from None


def describe(url: AnyURL) -> str:
    """The database as a person names it: the file path, or the URL without password."""
    if url.get_backend_name() == "sqlite":
        return str(url.database)
    return url.render_as_string(hide_password=True)


def prepare_sqlite_file(path: Path, *, create: bool = True) -> None:
    """Create a new database file 0600, or check that an existing one is SQLite.

    Only the first 100 bytes of an existing file are read; nothing is written to it.

    Args:
        path: the database file.
        create: create the file if it does not exist, and warn if others can
            read it (False: refuse a missing file, say nothing).

    Raises:
        CheckpointDBError: the directory does not exist.
        NotFoundError: the file does not exist and ``create`` is False.
        CorruptDatabaseError: the file exists but is not an SQLite database;
            it is left exactly as it was.
    """
    if create:
        if not path.parent.is_dir():
            raise CheckpointDBError(
                f"cannot create database {path}: directory {path.parent} does not exist"
            )
        try:
            # Created 0600 before SQLite opens it: the -wal and -shm files SQLite
            # makes later copy the database file's mode.
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            pass
        except OSError as exc:  # a read-only or unwritable directory, say
            raise CheckpointDBError(f"cannot create database {path}: {exc.strerror}") from None
        else:
            os.close(fd)
            return
    try:
        info = path.stat()
    except FileNotFoundError:
        raise NotFoundError(f"no database at {path}") from None
    except OSError as exc:  # a symlink loop, a file the user may not see
        raise CheckpointDBError(f"cannot open database {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise CorruptDatabaseError(f"{path} is not a regular file")
    if info.st_size:
        with path.open("rb") as handle:
            header = handle.read(_SQLITE_HEADER_SIZE)
        if len(header) < _SQLITE_HEADER_SIZE or not header.startswith(_SQLITE_MAGIC):
            raise CorruptDatabaseError(
                f"{path} is not an SQLite database (bad or truncated header); it was left untouched"
            )
        _refuse_cut_page(path, header, info.st_size)
    # Warned by the opening for writing only: the read-only look before it
    # would say it twice.
    if create and info.st_mode & 0o077:
        logger.warning(
            "database %s is readable by group or others (mode %o); agent state may hold "
            "secrets: chmod 600 it",
            path,
            stat.S_IMODE(info.st_mode),
        )


# Byte 18 of an SQLite header (the write format) is 2 in WAL mode.
_WAL_FORMAT_OFFSET = 18
_WAL_FORMAT = 2


def sqlite_read_mode(path: Path) -> str:
    """How a connection that only reads ``path`` opens it, so that it leaves nothing behind.

    Reading a WAL database (every store is one) needs its ``-wal`` and
    ``-shm`` files. A ``mode=ro`` connection creates them if they are
    missing but never deletes them; a read-write one, as the last
    connection to close, deletes them (after a checkpoint, which copies
    nothing when the WAL is empty, as it is once every writer has closed).
    So:

    * ``"ro"``: the file is not in WAL mode (nothing to create), or the
      ``-wal``/``-shm`` files are there already (a writer may be at work:
      use them; and a read-write connection closing last would copy a WAL
      someone else left into the database file), or they could be created
      but not deleted by us.
    * ``"rw"``: no ``-wal``/``-shm``, and the file and its directory are
      writable: open read-write; the caller makes the connection unable to
      write (``PRAGMA query_only``). A writer starting meanwhile shares the
      WAL with it.
    * ``"immutable"``: a WAL database without its ``-wal``/``-shm`` in a
      directory we cannot write: SQLite reads it only as immutable. Sound,
      because a writer needs to create the ``-wal`` there first; only a user
      who may write the directory could start one meanwhile.
    """
    try:
        with path.open("rb") as handle:
            header = handle.read(_WAL_FORMAT_OFFSET + 1)
    except OSError:
        return "ro"  # SQLite reports why it cannot be read
    if len(header) <= _WAL_FORMAT_OFFSET or header[_WAL_FORMAT_OFFSET] != _WAL_FORMAT:
        return "ro"
    if any(Path(f"{path}{suffix}").exists() for suffix in ("-wal", "-shm")):
        return "ro"
    if os.access(path.parent, os.W_OK):
        return "rw" if os.access(path, os.W_OK) else "ro"
    return "immutable"


def sqlite_uri(path: Path, mode: str) -> str:
    """The ``file:`` URI that opens ``path`` in a mode of :func:`sqlite_read_mode` (or ``rw``)."""
    query = "mode=ro&immutable=1" if mode == "immutable" else f"mode={mode}"
    return f"{path.absolute().as_uri()}?{query}"


def require_psycopg() -> None:
    """Refuse a PostgreSQL URL in one line when the driver is not installed.

    Raises:
        MissingDriverError: psycopg cannot be imported.
    """
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:
        raise MissingDriverError(
            "PostgreSQL needs the postgres extra: pip install 'checkpointdb[postgres]'"
        ) from exc


def _refuse_cut_page(path: Path, header: bytes, size: int) -> None:
    """Refuse a file that ends inside a page, unless a WAL or journal can finish it.

    SQLite reads the missing tail of such a page as zeros and hands back
    rows cut short instead of reporting an error.
    """
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if not page_size or size % page_size == 0:
        return  # an invalid page size is SQLite's to report
    for suffix in ("-wal", "-journal"):
        with suppress(OSError):
            if Path(f"{path}{suffix}").stat().st_size:
                return
    raise CorruptDatabaseError(
        f"{path} is truncated: {size} bytes is not a whole number of its "
        f"{page_size}-byte pages; it was left untouched"
    )


def _out_of_room(path: str) -> str | None:
    """Why a failed write to the database at ``path`` ran out of room, or None if it did not."""
    if sys.platform != "win32":
        limit, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
        if limit != resource.RLIM_INFINITY:
            for suffix in ("", "-wal", "-journal"):
                with suppress(OSError):
                    if os.path.getsize(f"{path}{suffix}") + _MAX_PAGE_SIZE > limit:
                        return f"the process's file size limit (ulimit -f) is {limit} bytes"
    with suppress(OSError):
        disk = os.statvfs(os.path.dirname(path))
        if disk.f_bavail * disk.f_frsize < _MAX_PAGE_SIZE:
            return "its filesystem has no space left"
    return None


def translate_error(exc: BaseException, where: str, busy_timeout: float) -> CheckpointDBError:
    """Turn a driver (or SQLAlchemy-wrapped driver) error into one of ours.

    Args:
        exc: the exception raised by the driver.
        where: the database, as :func:`describe` gives it.
        busy_timeout: the configured lock wait, quoted in busy errors.
    """
    if isinstance(exc, CheckpointDBError):
        return exc
    wrapped = _wrapped_driver_error(exc)
    orig: BaseException = wrapped if wrapped is not None else exc
    code = getattr(orig, "sqlite_errorcode", None)
    message = str(orig).strip()
    if code is not None:
        primary = code & 0xFF
        if primary in (_SQLITE_BUSY, _SQLITE_LOCKED):
            return StoreBusyError(
                f"{where} is locked by another writer; gave up after the busy timeout of "
                f"{busy_timeout:g}s ({message}). Nothing was written; retry, or raise "
                "busy_timeout."
            )
        if primary == _SQLITE_FULL:
            return StoreFullError(
                f"{where} is full ({message}); the write was rolled back. Free disk space "
                "and retry."
            )
        reason = _out_of_room(where) if code == _SQLITE_IOERR_WRITE else None
        if reason:
            return StoreFullError(
                f"{where} is full: {reason} ({message}); the write was rolled back. Make "
                "room and retry."
            )
        if primary in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
            return CorruptDatabaseError(f"{where} is damaged or not a database ({message})")
        if primary == _SQLITE_CANTOPEN:
            return CheckpointDBError(f"cannot open {where} ({message})")
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate is not None:
        if sqlstate in CONFLICT_SQLSTATES:
            return StoreBusyError(
                f"{where}: the server rolled the transaction back to resolve a conflict "
                f"with another writer ({message}). Nothing was written; retry."
            )
        if sqlstate in ("55P03", "57014"):  # lock_not_available, query_canceled
            return StoreBusyError(
                f"{where}: gave up waiting for a lock after {busy_timeout:g}s ({message}). "
                "Nothing was written; retry, or raise busy_timeout."
            )
        if sqlstate in ("53100", "53200"):  # disk_full, out_of_memory
            return StoreFullError(f"{where} is full ({message}); the write was rolled back")
    return CheckpointDBError(f"{where}: {type(orig).__name__}: {message}")


class DriverErrors:
    """``with errors:`` turns a driver error raised inside into one of ours, naming the database.

    The one place driver errors are translated (by :func:`translate_error`).
    A class, not a generator: it is on every transaction's path.
    """

    __slots__ = ("busy_timeout", "where")

    def __init__(self, where: str, busy_timeout: float) -> None:
        self.where = where
        self.busy_timeout = busy_timeout

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(exc, Exception) and is_driver_error(exc):
            raise translate_error(exc, self.where, self.busy_timeout) from exc


def _wrapped_driver_error(exc: BaseException) -> BaseException | None:
    """The driver error a SQLAlchemy DBAPIError wraps, or None for any other exception.

    Only an exception raised by SQLAlchemy can be one, so SQLAlchemy is not
    imported to find out.
    """
    if not type(exc).__module__.startswith("sqlalchemy"):
        return None
    from sqlalchemy.exc import DBAPIError

    if isinstance(exc, DBAPIError):
        return cast(BaseException | None, exc.orig)
    return None


def _regexp(pattern: str, value: str | None) -> bool | None:
    """SQL ``x REGEXP y``, as SQLAlchemy's SQLite dialect defines it on its connections."""
    return None if value is None else re.search(pattern, value) is not None


def connect_sqlite(
    database: str,
    *,
    synchronous: str,
    busy_timeout: float,
    read_only: bool,
    trace: Trace | None,
) -> sqlite3.Connection:
    """A new SQLite connection set up as the Engine's connections are, without SQLAlchemy.

    The same driver arguments, functions (``regexp``, ``floor``), pragmas
    (:func:`configure_sqlite_connection`) and tracer.
    """
    if read_only:
        path = Path(database)
        # Decided per connection: the -wal and -shm may come or go meanwhile.
        # A read-write connection is made unable to write by query_only
        # (configure_sqlite_connection); it is what deletes the -wal and
        # -shm this store's reading created, when the store closes.
        connection = sqlite3.connect(
            sqlite_uri(path, sqlite_read_mode(path)), uri=True, check_same_thread=False
        )
    else:
        connection = sqlite3.connect(os.path.abspath(database), check_same_thread=False)
    try:
        connection.create_function("regexp", 2, _regexp, deterministic=True)
        connection.create_function("floor", 1, math.floor, deterministic=True)
        configure_sqlite_connection(connection, synchronous, busy_timeout, read_only=read_only)
        if trace is not None:
            connection.set_trace_callback(trace)
    except BaseException:
        connection.close()
        raise
    return connection


def configure_sqlite_connection(
    dbapi_connection: Any, synchronous: str, busy_timeout: float, *, read_only: bool = False
) -> None:
    """Set up a new SQLite DBAPI connection.

    A read-only connection sets nothing that is stored in the file: the
    journal mode stays whatever the file has.
    """
    # The driver must never BEGIN on its own: we (or the "begin" hook) do
    # it, so write transactions can be BEGIN IMMEDIATE (SQLAlchemy's
    # documented pysqlite recipe).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        # Wait this long for a lock instead of failing at once.
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        if read_only:
            # The lock on a connection opened read-write (see sqlite_read_mode),
            # and a second one behind mode=ro.
            cursor.execute("PRAGMA query_only = ON")
        else:
            # Readers never block the writer and vice versa; persistent in the
            # file, so it is set only on databases already known to be ours.
            cursor.execute("PRAGMA journal_mode = WAL")
        # Set explicitly: Debian's SQLite defaults to FULL.
        cursor.execute(f"PRAGMA synchronous = {synchronous}")
        # ON DELETE CASCADE from sessions to checkpoints needs this.
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _install_sqlite_hooks(
    engine: Engine, synchronous: str, busy_timeout: float, read_only: bool
) -> None:
    """Pragmas on every new connection and the pysqlite transaction recipe."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        configure_sqlite_connection(
            dbapi_connection, synchronous, busy_timeout, read_only=read_only
        )

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # SQLAlchemy-level transactions (migrations, ad-hoc Core use):
        # "sqlite_immediate" takes the write lock up front.
        immediate = connection.get_execution_options().get("sqlite_immediate", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    @event.listens_for(engine, "checkin")
    def _on_checkin(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        # A COMMIT that failed with "database is locked" leaves the transaction
        # open; a connection must never carry it to its next user.
        if dbapi_connection is not None and dbapi_connection.in_transaction:
            dbapi_connection.rollback()


# A statement tracer: called with the text of each statement before it runs.
Trace = Callable[[str], object]


def _statement_text(query: Any, cursor: Any) -> str:
    if isinstance(query, str):
        return query
    if isinstance(query, bytes):
        return query.decode()
    return str(query.as_string(cursor))  # psycopg's sql.Composable


def _tracing(base: type[Any], trace: Trace) -> type[Any]:
    """A psycopg cursor class that hands each statement to ``trace`` before running it."""

    def report(query: Any, cursor: Any) -> None:
        try:
            trace(_statement_text(query, cursor))
        except Exception:  # as SQLite does with its trace callback: the statement still runs
            logger.exception("the trace callable failed; the statement runs anyway")

    class TracingCursor(base):  # type: ignore[misc]
        def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
            report(query, self)
            return super().execute(query, *args, **kwargs)

        def executemany(self, query: Any, *args: Any, **kwargs: Any) -> Any:
            report(query, self)
            return super().executemany(query, *args, **kwargs)

    return TracingCursor


def _install_trace(engine: Engine, trace: Trace) -> None:
    """Show ``trace`` every statement on every new DBAPI connection of ``engine``.

    SQLite reports statements itself, with their values bound in, transaction
    control included. psycopg has no such hook: the connection's cursor
    classes (plain and server-side) report each statement as sent, with its
    placeholders; COMMIT and ROLLBACK are driver calls and are not reported.
    Without a tracer none of this is installed, so it costs nothing.
    """
    from sqlalchemy import event

    sqlite = engine.dialect.name == "sqlite"

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        if sqlite:
            dbapi_connection.set_trace_callback(trace)
        else:
            dbapi_connection.cursor_factory = _tracing(dbapi_connection.cursor_factory, trace)
            dbapi_connection.server_cursor_factory = _tracing(
                dbapi_connection.server_cursor_factory, trace
            )


# SQLite connections a Database keeps open between transactions (per store).
# More threads than this at once still work: the extra connections are closed
# after use instead of kept.
_MAX_IDLE_SQLITE_CONNECTIONS = 8

# libpq's PQTRANS_IDLE: a connection outside any transaction, nothing in flight.
_PQ_IDLE = 0
# Where a PostgreSQL connection's info records when it was opened (monotonic seconds).
_CONNECTED_AT = "checkpointdb_connected_at"
# Seconds after which a parked connection goes back to the pool, which replaces it.
_PG_RECYCLE = float(DEFAULT_SETTINGS["pool_recycle"])


def _server_hung_up(dbapi: Any) -> bool:
    """Whether the server has closed an idle PostgreSQL connection, seen without a round trip.

    An idle connection has nothing to read. A server that ended it (a
    terminated backend, a shutdown, an idle timeout) left its FATAL message
    or the end of the stream there, so a readable socket means the
    connection cannot be used. A silent network failure is not seen here.
    """
    if dbapi.closed:
        return True
    if sys.platform == "win32":
        return bool(select.select([dbapi.fileno()], [], [], 0)[0])
    poller = select.poll()
    poller.register(dbapi.fileno(), select.POLLIN)
    return bool(poller.poll(0))


def create_sqlalchemy_engine(
    url: AnyURL,
    *,
    synchronous: str,
    busy_timeout: float,
    echo: bool = False,
    read_only: bool = False,
    pool_size: int = DEFAULT_SETTINGS["pool_size"],
    trace: Trace | None = None,
) -> Engine:
    """Build the Engine for ``url`` with this package's connection settings.

    With ``read_only``, no SQLite connection it opens can write: they have
    ``query_only`` set and leave no ``-wal``/``-shm`` behind (see
    :func:`sqlite_read_mode`; a missing file is not created). PostgreSQL
    read-only stores refuse writes before taking a connection (see
    :class:`Database`). ``trace`` sees every statement.

    Raises:
        MissingDriverError: a PostgreSQL URL and psycopg is not installed.
    """
    engine = _new_engine(
        url,
        synchronous=synchronous,
        busy_timeout=busy_timeout,
        echo=echo,
        read_only=read_only,
        pool_size=pool_size,
    )
    if trace is not None:
        _install_trace(engine, trace)
    return engine


def _new_engine(
    given: AnyURL,
    *,
    synchronous: str,
    busy_timeout: float,
    echo: bool,
    read_only: bool,
    pool_size: int,
) -> Engine:
    from sqlalchemy.engine import create_engine
    from sqlalchemy.pool import NullPool

    url = sqlalchemy_url(given)
    backend = url.get_backend_name()
    if backend == "sqlite":
        read_only_options: dict[str, Any] = {}
        if read_only:
            path = Path(str(url.database))
            # Decided per connection: the -wal and -shm may come or go meanwhile.
            # A read-write connection is made unable to write by query_only
            # (configure_sqlite_connection); it is what deletes the -wal and
            # -shm this store's reading created, when the store closes.
            read_only_options["creator"] = lambda: sqlite3.connect(
                sqlite_uri(path, sqlite_read_mode(path)), uri=True, check_same_thread=False
            )
        engine = create_engine(
            url,
            echo=echo,
            paramstyle="named",
            # Database keeps its own short list of idle connections: reusing
            # one costs a list pop, a pool checkout about 10 us (as much as
            # the query it serves).
            poolclass=NullPool,
            # Each thread takes a connection; none is used by two at once.
            connect_args={"check_same_thread": False},
            **read_only_options,
        )
        _install_sqlite_hooks(engine, synchronous, busy_timeout, read_only)
        return engine
    if backend == "postgresql":
        require_psycopg()
        engine = create_engine(
            url,
            echo=echo,
            # No pre-ping (a round trip per transaction): see _PgTransaction.
            pool_size=pool_size,
            max_overflow=DEFAULT_SETTINGS["max_overflow"],
            pool_recycle=DEFAULT_SETTINGS["pool_recycle"],
            pool_timeout=busy_timeout,
            # No startup "options" (timezone, lock_timeout...): a pooler in
            # transaction mode refuses or drops them, and a setting made for
            # the session would stay on a server connection other clients
            # share. Times are read as UTC whatever the session's TimeZone
            # (decode_time), and writes set lock_timeout per transaction.
            connect_args={
                "application_name": "checkpointdb",
                # No server-side prepared statements: a pooler in transaction
                # mode (PgBouncer) hands the next transaction another server
                # connection, where they do not exist; preparing also costs
                # a round trip of its own.
                "prepare_threshold": None,
            },
            json_serializer=dumps_jsonb,
        )

        from sqlalchemy import event

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
            # Parked connections skip the pool's recycling at checkout: Database
            # recycles them by this time (the pool clears info on reconnect).
            record.info[_CONNECTED_AT] = time.monotonic()

        return engine
    raise CheckpointDBError(
        f"unsupported database {describe(url)!r}: use an SQLite path or a postgresql+psycopg:// URL"
    )


class RawConnection(Protocol):
    """A connection :meth:`Database.checkout` hands out: a pool's proxy, or :class:`_SqliteRaw`."""

    @property
    def dbapi_connection(self) -> Any | None:
        """The driver's connection (None once invalidated)."""

    @property
    def is_valid(self) -> bool:
        """False once invalidated."""

    def cursor(self) -> Any:
        """A new DBAPI cursor."""

    def rollback(self) -> None:
        """Roll back the open transaction, if any."""

    def invalidate(self) -> None:
        """Close the driver's connection: it is not to be used again."""

    def close(self) -> None:
        """Close the connection."""


class _SqliteRaw:
    """An SQLite connection of the Database's own, the way a pool's proxy presents one."""

    __slots__ = ("dbapi_connection",)

    def __init__(self, dbapi_connection: sqlite3.Connection) -> None:
        self.dbapi_connection: sqlite3.Connection | None = dbapi_connection

    @property
    def is_valid(self) -> bool:
        return self.dbapi_connection is not None

    def cursor(self) -> Any:
        return cast(sqlite3.Connection, self.dbapi_connection).cursor()

    def rollback(self) -> None:
        cast(sqlite3.Connection, self.dbapi_connection).rollback()

    def invalidate(self) -> None:
        self.close()

    def close(self) -> None:
        dbapi, self.dbapi_connection = self.dbapi_connection, None
        if dbapi is not None:
            with suppress(sqlite3.Error):
                dbapi.close()


class Database:
    """One database: its Engine, and short transactions on pooled DBAPI connections.

    The Engine is rebuilt transparently in a child process after ``fork()``,
    since a pool inherited across a fork can hang the child; on SQLite, idle
    connections are closed before every fork (see ``prepare_for_fork``).

    On SQLite at a plain path (a :class:`SqliteURL`) the Engine is made only
    when something asks for it (:attr:`engine`: migrations, SQLAlchemy
    users; ``echo`` makes it at once); until then the Database opens its
    connections itself, set up exactly as the Engine's, and SQLAlchemy is
    not imported. Once made, new connections come from it,
    so that hooks added to it apply.
    """

    def __init__(
        self,
        url: AnyURL,
        *,
        synchronous: str = DEFAULT_SETTINGS["synchronous"],
        busy_timeout: float = DEFAULT_SETTINGS["busy_timeout"],
        echo: bool = False,
        read_only: bool = False,
        pool_size: int = DEFAULT_SETTINGS["pool_size"],
        trace: Trace | None = None,
    ) -> None:
        sync = str(synchronous).upper()
        if sync not in ("NORMAL", "FULL", "EXTRA"):
            raise CheckpointDBError(
                f"synchronous must be 'NORMAL', 'FULL' or 'EXTRA', got {synchronous!r}"
            )
        if not busy_timeout > 0:
            raise CheckpointDBError(
                f"busy_timeout must be a positive number of seconds, got {busy_timeout!r}"
            )
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            raise CheckpointDBError(f"pool_size must be an integer >= 1, got {pool_size!r}")
        self.pool_size = pool_size
        self.given_url = url
        self._url: URL | None = None if isinstance(url, SqliteURL) else url
        self.dialect_name = url.get_backend_name()
        self.where = describe(url)
        self.synchronous = sync
        self.busy_timeout = float(busy_timeout)
        self.is_sqlite = self.dialect_name == "sqlite"
        self.read_only = read_only
        if self.is_sqlite:
            prepare_sqlite_file(Path(str(url.database)), create=not read_only)
        self._echo = echo
        self.errors = DriverErrors(self.where, self.busy_timeout)
        # Per transaction, not per connection: behind a pooler in transaction
        # mode the next transaction may run on another server connection.
        # Queued with BEGIN in the write pipeline, so it costs no round trip.
        self.pg_lock_timeout = f"SET LOCAL lock_timeout = {int(self.busy_timeout * 1000)}"
        self._pg_write_begin = ("BEGIN", self.pg_lock_timeout)
        self._lock = threading.Lock()
        self._closed = False
        self._trace = trace
        self._engine: Engine | None = None
        # A SQLAlchemy URL may carry driver arguments (?timeout=, ?uri=) only
        # the Engine applies: it gets one now, as do echo and PostgreSQL.
        if echo or not isinstance(url, SqliteURL):
            self._engine = self._new_engine()
        self._pid = os.getpid()
        # Connections parked between transactions (LIFO): reusing one costs a
        # list pop, a pool checkout and checkin about 40 us each. PostgreSQL
        # ones stay checked out of the pool, which so still bounds them all.
        # SQLite: also those in use.
        self._idle: list[RawConnection] = []
        self._busy: set[RawConnection] = set()
        # Connections other threads were using when this process last forked.
        self._in_use_at_fork = 0
        if self.is_sqlite:
            _sqlite_databases.add(self)

    def _new_engine(self) -> Engine:
        return create_sqlalchemy_engine(
            self.given_url,
            synchronous=self.synchronous,
            busy_timeout=self.busy_timeout,
            echo=self._echo,
            read_only=self.read_only,
            pool_size=self.pool_size,
            trace=self._trace,
        )

    @property
    def url(self) -> URL:
        """The database's SQLAlchemy URL (an SQLite one is made on first use)."""
        if self._url is None:
            self._url = sqlalchemy_url(self.given_url)
        return self._url

    @property
    def engine(self) -> Engine:
        """The Engine for this process (a fresh pool after a fork); made on first use."""
        self._check_process()
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    self._engine = self._new_engine()
        return self._engine

    def _check_process(self) -> None:
        """Refuse a closed store; after a fork, forget the parent's connections."""
        if self._closed:
            raise StoreClosedError(f"the store for {self.where} is closed")
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    if self._in_use_at_fork:
                        raise CheckpointDBError(
                            f"{self.where}: this process was forked while another thread "
                            "was using the store, and SQLite's file locks cannot be used "
                            "safely from such a child; fork while the store is idle, or "
                            "start workers with multiprocessing's 'spawn' method"
                        )
                    # Forget the parent's connections without closing them:
                    # they belong to the parent process.
                    self._idle = []
                    self._busy = set()
                    if self._engine is not None:
                        self._engine.dispose(close=False)
                    self._pid = os.getpid()

    def prepare_for_fork(self) -> None:
        """Close the connections no one is using and count those in use."""
        if not self._closed and self._pid == os.getpid():
            self._in_use_at_fork = len(self._busy)
            self.close_idle()

    def close_idle(self) -> None:
        """Close every connection no transaction is using; new ones open on demand.

        Connection hooks added to the Engine after the store opened apply to
        connections opened after this call.
        """
        while self._idle:
            try:
                self._idle.pop().close()
            except IndexError:  # another thread took the last one
                break
        if self._engine is not None:
            self._engine.dispose()

    @property
    def max_connections(self) -> int:
        """Connections the pool opens at most (PostgreSQL; SQLite has no such limit)."""
        return self.pool_size + int(DEFAULT_SETTINGS["max_overflow"])

    def in_use(self) -> int:
        """Connections checked out by transactions (and streams) right now."""
        if self.is_sqlite:
            return len(self._busy)
        pool: Any = self.engine.pool
        return int(pool.checkedout()) - len(self._idle)

    @property
    def closed(self) -> bool:
        """True once :meth:`dispose` was called."""
        return self._closed

    def translate(self, exc: BaseException) -> CheckpointDBError:
        """A driver error as one of ours, naming this database."""
        return translate_error(exc, self.where, self.busy_timeout)

    def check_writable(self) -> None:
        """Refuse a write on a read-only database before any connection is used.

        Raises:
            ReadOnlyStoreError: the database was opened with ``read_only=True``.
        """
        if self.read_only:
            raise read_only_error(self.where)

    def checkout(self) -> RawConnection:
        """A connection for one transaction; hand it back with :meth:`checkin`."""
        self._check_process()
        if not self.is_sqlite:
            return self._checkout_pg()
        raw: RawConnection
        try:
            raw = self._idle.pop()
        except IndexError:
            if self._engine is None:
                with self.errors:
                    raw = _SqliteRaw(
                        connect_sqlite(
                            str(self.given_url.database),
                            synchronous=self.synchronous,
                            busy_timeout=self.busy_timeout,
                            read_only=self.read_only,
                            trace=self._trace,
                        )
                    )
            else:
                raw = self._from_pool()
        self._busy.add(raw)
        return raw

    def _from_pool(self) -> RawConnection:
        from sqlalchemy.exc import TimeoutError as PoolTimeoutError

        try:
            with self.errors:
                return self.engine.raw_connection()
        except PoolTimeoutError as exc:
            raise StoreBusyError(
                f"{self.where}: all {self.max_connections} connections of this store's pool "
                f"(pool_size {self.pool_size} + {DEFAULT_SETTINGS['max_overflow']} overflow) "
                "stayed in use "
                f"for {self.busy_timeout:g}s. Nothing was written; use fewer threads at once, "
                "or raise pool_size (CheckpointStore(url, pool_size=...))."
            ) from exc

    def _checkout_pg(self) -> RawConnection:
        """The newest parked PostgreSQL connection the server has not closed, else the pool's."""
        # Each connection found closed is replaced; past this many, the last
        # one is handed out and its failure reported as it comes.
        for _ in range(self.max_connections):
            try:
                raw = self._idle.pop()
            except IndexError:
                raw = self._from_pool()
            if not _server_hung_up(raw.dbapi_connection):
                return raw
            raw.invalidate()
            raw.close()
        return self._from_pool()

    def checkin(self, raw: RawConnection) -> None:
        """Take back a connection from :meth:`checkout`, ready for its next user."""
        if not self.is_sqlite:
            self._checkin_pg(raw)
            return
        self._busy.discard(raw)
        if not raw.is_valid or self._closed or self._pid != os.getpid():
            raw.close()
            return
        dbapi: Any = raw.dbapi_connection
        if dbapi.in_transaction:
            # A failed COMMIT ("database is locked") can leave the transaction
            # open, and the next user's COMMIT would save it: roll it back here.
            try:
                dbapi.rollback()
            except Exception:
                raw.invalidate()
                raw.close()
                return
        if len(self._idle) < _MAX_IDLE_SQLITE_CONNECTIONS:
            self._idle.append(raw)
        else:
            raw.close()

    def _checkin_pg(self, raw: RawConnection) -> None:
        """Park a healthy idle PostgreSQL connection; hand any other back to the pool."""
        dbapi: Any = raw.dbapi_connection
        if (
            raw.is_valid
            and not self._closed
            and self._pid == os.getpid()
            and dbapi is not None
            and not dbapi.closed
            # Idle, outside any transaction: nothing of this user's reaches the next.
            and dbapi.pgconn.transaction_status == _PQ_IDLE
            # A pool's proxy (PostgreSQL's are): its record's info.
            and time.monotonic() - cast(Any, raw).info.get(_CONNECTED_AT, 0.0) < _PG_RECYCLE
        ):
            if len(self._idle) < self.pool_size:
                self._idle.append(raw)
                return
            # One more than the pool keeps between bursts (overflow): closed,
            # its slot back in the pool.
            raw.invalidate()
        # The pool rolls back or replaces it (an old or broken one).
        raw.close()

    def transaction(
        self,
        *,
        write: bool = False,
        snapshot: bool = True,
        commit: bool = True,
        stream: bool = False,
        end_early: bool = False,
    ) -> AbstractContextManager[Cursor]:
        """One short transaction on a pooled connection: COMMIT on success, else ROLLBACK.

        Args:
            write: on SQLite, start with ``BEGIN IMMEDIATE``: wait for the write
                lock (up to busy_timeout) before reading anything, so the
                transaction can never fail later on a lock upgrade.
            snapshot: for reads, run every statement on one snapshot (``BEGIN``
                on SQLite, ``REPEATABLE READ READ ONLY`` on PostgreSQL). A
                single-statement read passes False: on PostgreSQL it then runs
                outside any transaction, in one round trip.
            commit: False rolls the transaction back at the end (a dry run that
                runs the real statements and reports what they did).
            stream: the body reads through a server-side cursor, which on
                PostgreSQL needs a transaction even for one statement.
            end_early: the body has the transaction to itself, and on
                PostgreSQL a write may send its last statements with the
                COMMIT in one round trip (``end_with`` of the cursor).

        Raises:
            StaleConnectionError: PostgreSQL, the pooled connection was found
                dead before the server answered any statement; nothing ran.
            StoreBusyError, StoreFullError, CorruptDatabaseError, CheckpointDBError:
                driver errors, translated; the transaction was rolled back.
        """
        if write and self.read_only:
            raise read_only_error(self.where)
        if not self.is_sqlite:
            if write:
                return _PgTransaction(
                    self, self._pg_write_begin, commit, pipeline=True, end_early=end_early
                )
            if snapshot:
                return _PgTransaction(self, (_PG_SNAPSHOT,), commit, pipeline=False)
            return _PgTransaction(self, (_PG_STREAM,) if stream else (), commit, pipeline=False)
        begin = "BEGIN IMMEDIATE" if write else "BEGIN" if snapshot else None
        return _Transaction(self, begin, commit)

    @contextmanager
    def outside_transaction(self) -> Iterator[Cursor]:
        """A cursor in autocommit mode, for statements that refuse transactions (VACUUM)."""
        self.check_writable()
        raw = self.checkout()
        try:
            dbapi: Any = raw.dbapi_connection
            cursor: Any = raw.cursor()
            if not self.is_sqlite:
                raw.rollback()
                dbapi.autocommit = True
            try:
                with self.errors:
                    yield cursor
            finally:
                cursor.close()
                if not self.is_sqlite:
                    dbapi.autocommit = False
        finally:
            self.checkin(raw)

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A SQLAlchemy Connection (for migrations and schema work), errors translated."""
        with self.errors, self.engine.connect() as connection:
            yield connection

    def dispose(self) -> None:
        """Close every pooled connection; the Database cannot be used afterwards.

        Connections other threads are using are closed when they come back.
        """
        if not self._closed:
            self._closed = True
            if self._pid == os.getpid():
                self.close_idle()
            elif self._engine is not None:
                self._engine.dispose(close=False)


def read_only_error(where: str) -> ReadOnlyStoreError:
    """The error for a write asked of a store opened with ``read_only=True``."""
    return ReadOnlyStoreError(
        f"{where} was opened read-only (read_only=True): writing needs a store opened "
        "without it; nothing was touched"
    )


class _Transaction:
    """The context manager behind :meth:`Database.transaction`.

    A class, not a generator: it is on every call's path, and a generator-based
    context manager costs several microseconds more.
    """

    __slots__ = ("_begin", "_commit", "_cursor", "_db", "_dbapi", "_raw")

    def __init__(self, db: Database, begin: str | None, commit: bool) -> None:
        self._db = db
        self._begin = begin
        self._commit = commit

    def __enter__(self) -> Cursor:
        db = self._db
        raw = self._raw = db.checkout()
        try:
            # The driver's connection itself: the pool's proxy reaches its
            # commit() through __getattr__, a microsecond on every call.
            dbapi: Any = raw.dbapi_connection
            self._dbapi = dbapi
            cursor: Any = dbapi.cursor()
            if self._begin is not None:
                cursor.execute(self._begin)
        except BaseException as exc:
            self._end(exc)
            raise AssertionError("unreachable") from exc  # _end raises
        self._cursor = cursor
        return cast(Cursor, cursor)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            try:
                if self._commit:
                    self._dbapi.commit()
                else:
                    self._dbapi.rollback()
            except BaseException as failure:
                self._end(failure)
            self._cursor.close()
            self._db.checkin(self._raw)
            return
        self._end(exc)

    def _end(self, exc: BaseException) -> NoReturn:
        """Roll back after ``exc``, release the connection and re-raise.

        Also on KeyboardInterrupt or task cancellation: the transaction ends
        here, whole or not at all.
        """
        raw = self._raw
        try:
            raw.rollback()
        except Exception:  # the connection may be dead; do not reuse it
            raw.invalidate()
        self._db.checkin(raw)
        with self._db.errors:
            raise exc


# How a PostgreSQL read of several statements sees one moment.
_PG_SNAPSHOT = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
# A server-side cursor needs a transaction; a read never needs to write.
_PG_STREAM = "BEGIN READ ONLY"


class StaleConnectionError(CheckpointDBError):
    """A pooled PostgreSQL connection was dead before the server answered any statement.

    Nothing of the transaction ran, so :func:`~checkpointdb.operations.perform`
    runs it again on another connection.
    """


class _PgCursor:
    """A psycopg cursor that records whether the server has answered a statement yet.

    Until it has, a failure of the connection means nothing of the
    transaction ran. In pipeline mode (writes) statements are queued and
    sent together with the next fetch: BEGIN rides with the first statement.
    """

    __slots__ = ("_cursor", "_end", "answered", "connection", "ended", "pipeline")

    def __init__(self, cursor: Any, pipeline: Any, end: Callable[[], None] | None) -> None:
        self._cursor = cursor
        self.connection = cursor.connection
        self.pipeline = pipeline
        self.answered = False
        # Sends the transaction's end with what is queued (None: the body may not).
        self._end = end
        # True once the end went to the server: from then on, a lost
        # connection leaves unknown whether the transaction was committed.
        self.ended = False

    def end_with(self, statements: Sequence[tuple[str, dict[str, Any]]]) -> list[Any]:
        """Run ``statements`` as the transaction's last and return the first row of each.

        In a write transaction of its own they are sent with BEGIN and the
        transaction's COMMIT (ROLLBACK for a dry run) in one round trip;
        nothing may run on the cursor afterwards. Elsewhere (several bodies
        sharing one transaction) they run one after the other and the
        transaction ends as usual.
        """
        if self._end is None:
            return self.together(statements)
        cursors = [self.connection.cursor() for _ in statements]
        try:
            for cursor, (operation, parameters) in zip(cursors, statements, strict=True):
                cursor.execute(operation, parameters)
            self.ended = True
            self._end()
            self.answered = True
            return [cursor.fetchone() for cursor in cursors]
        finally:
            for cursor in cursors:
                cursor.close()

    def together(self, statements: Sequence[tuple[str, dict[str, Any]]]) -> list[Any]:
        """Run ``statements`` in one round trip (in pipeline mode) and return each one's first row.

        They are sent together and answered together; the transaction goes
        on, and its COMMIT is still sent only after their answers came.
        """
        cursors = [self.connection.cursor() for _ in statements]
        try:
            for cursor, (operation, parameters) in zip(cursors, statements, strict=True):
                cursor.execute(operation, parameters)
            self.sync()
            return [cursor.fetchone() for cursor in cursors]
        finally:
            for cursor in cursors:
                cursor.close()

    def execute(self, operation: Any, parameters: Any = None) -> _PgCursor:
        """Run (in pipeline mode: queue) one statement."""
        self._cursor.execute(operation, parameters)
        if self.pipeline is None:
            self.answered = True
        return self

    def executemany(self, operation: Any, parameters: Any) -> _PgCursor:
        """Run (in pipeline mode: queue) one statement per set of parameters."""
        self._cursor.executemany(operation, parameters)
        if self.pipeline is None:
            self.answered = True
        return self

    def sync(self) -> None:
        """Wait for the answers to every queued statement."""
        if self.pipeline is not None:
            self.pipeline.sync()
        self.answered = True

    @property
    def rowcount(self) -> int:
        """Rows the last statement affected (waits for its answer)."""
        self.sync()
        return int(self._cursor.rowcount)

    def fetchone(self) -> Any:
        """Next row or None."""
        row = self._cursor.fetchone()
        self.answered = True
        return row

    def fetchall(self) -> list[Any]:
        """All remaining rows."""
        rows: list[Any] = self._cursor.fetchall()
        self.answered = True
        return rows

    def fetchmany(self, size: int) -> list[Any]:
        """Up to ``size`` more rows."""
        rows: list[Any] = self._cursor.fetchmany(size)
        self.answered = True
        return rows

    def close(self) -> None:
        """Release the cursor."""
        self._cursor.close()


class _PgTransaction:
    """The context manager behind :meth:`Database.transaction` on PostgreSQL.

    The connection runs in autocommit mode and the transaction is ours:
    a one-statement read runs bare (one round trip); a write queues BEGIN,
    its ``SET LOCAL lock_timeout`` and its statements in a pipeline, so
    they cost no round trip of their own. A body that has the transaction
    to itself may send its last statements with the COMMIT
    (:meth:`_PgCursor.end_with`): a create without retention is one round
    trip; otherwise COMMIT waits until a statement was answered (a create
    with retention takes two: take the seq and insert together
    (:meth:`_PgCursor.together`), then COMMIT). No setting
    outlives the transaction, which keeps every transaction right behind a
    pooler in transaction mode. There is no pre-ping: a connection whose
    server hung up is replaced before use (:func:`_server_hung_up`), one
    found dead before the server answered anything raises
    :class:`StaleConnectionError` (nothing ran), one lost after the COMMIT
    was sent is reported as an unknown outcome, any other failure as it is.
    """

    __slots__ = (
        "_begin",
        "_commit",
        "_cursor",
        "_db",
        "_end_early",
        "_pipeline",
        "_raw",
        "_use_pipeline",
    )

    def __init__(
        self,
        db: Database,
        begin: tuple[str, ...],
        commit: bool,
        *,
        pipeline: bool,
        end_early: bool = False,
    ) -> None:
        self._db = db
        self._begin = begin
        self._commit = commit
        self._use_pipeline = pipeline
        self._end_early = end_early
        self._pipeline: Any = None

    def __enter__(self) -> Cursor:
        raw = self._raw = self._db.checkout()
        dbapi: Any = raw.dbapi_connection
        try:
            dbapi.autocommit = True
            pipeline = None
            if self._use_pipeline:
                self._pipeline = dbapi.pipeline()  # a context manager
                pipeline = self._pipeline.__enter__()
            end = self._send_end if self._end_early and pipeline is not None else None
            cursor = self._cursor = _PgCursor(dbapi.cursor(), pipeline, end)
            if self._begin:
                for statement in self._begin:
                    cursor.execute(statement)
                # BEGIN alone says nothing ran; only a statement of the body's does.
                cursor.answered = False
        except BaseException as exc:
            self._cursor = None  # type: ignore[assignment]
            self._end(exc)
        return cast(Cursor, cursor)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            self._end(exc)
        cursor = self._cursor
        try:
            if self._begin and not cursor.ended:
                if not cursor.answered:
                    # Never send COMMIT with the first statements unasked (see
                    # _PgCursor.end_with): a connection lost then would leave
                    # unknown whether they were applied.
                    cursor.sync()
                cursor.execute("COMMIT" if self._commit else "ROLLBACK")
            # Leaving the pipeline sends what is queued and waits for the answers.
            self._leave_pipeline(None)
            cursor.close()
            self._raw.dbapi_connection.autocommit = False  # type: ignore[union-attr]
        except BaseException as failure:
            self._end(failure)
        self._db.checkin(self._raw)

    def _send_end(self) -> None:
        """Queue the transaction's end and leave the pipeline: one Sync for everything queued."""
        self._cursor.execute("COMMIT" if self._commit else "ROLLBACK")
        self._leave_pipeline(None)

    def _leave_pipeline(self, exc: BaseException | None) -> None:
        pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            pipeline.__exit__(None if exc is None else type(exc), exc, None)

    def _end(self, exc: BaseException) -> NoReturn:
        """Roll back after ``exc``, release the connection and re-raise it translated."""
        raw = self._raw
        dbapi: Any = raw.dbapi_connection
        try:
            with suppress(Exception):
                self._leave_pipeline(exc)
            dbapi.rollback()
            dbapi.autocommit = False
        except Exception:  # the connection may be dead; do not reuse it
            raw.invalidate()
        cursor = self._cursor
        lost = (
            isinstance(exc, Exception)
            and is_driver_error(exc)
            and bool(dbapi is None or dbapi.closed)
        )
        self._db.checkin(raw)
        if lost and cursor is not None and cursor.ended:
            raise CheckpointDBError(
                f"{self._db.where}: the connection was lost after the write was sent with "
                f"its COMMIT, so whether it was stored is unknown ({str(exc).strip()}). "
                "It was not retried: look before writing it again."
            ) from exc
        if lost and (cursor is None or not cursor.answered):
            raise StaleConnectionError(
                f"{self._db.where}: the connection was lost before any statement ran "
                f"({str(exc).strip()})"
            ) from exc
        with self._db.errors:
            raise exc


# SQLite databases open in this process, for the fork hook below.
_sqlite_databases: weakref.WeakSet[Database] = weakref.WeakSet()


def _prepare_sqlite_stores_for_fork() -> None:
    """Before fork(): close every open store's idle SQLite connections.

    A child inherits SQLite's in-process lock bookkeeping for each connection
    open at the fork. With it, the child's own connections skip the file
    locks they need, so the parent closing its last connection deletes the
    WAL the child is still writing to, and acknowledged checkpoints vanish.
    Connections other threads are using cannot be closed: a child forked
    then refuses to use the store (see :attr:`Database.engine`).
    """
    for database in list(_sqlite_databases):
        database.prepare_for_fork()


if sys.platform != "win32":
    os.register_at_fork(before=_prepare_sqlite_stores_for_fork)


def is_conflict(exc: BaseException) -> bool:
    """True if ``exc`` (or the driver error behind it) is a deadlock or serialization failure."""
    while exc is not None:
        orig = _wrapped_driver_error(exc) or exc
        if getattr(orig, "sqlstate", None) in CONFLICT_SQLSTATES:
            return True
        exc = exc.__cause__  # type: ignore[assignment]
    return False


def is_driver_error(exc: Exception) -> bool:
    """True for errors raised by a DBAPI driver (sqlite3, psycopg) or wrapped by SQLAlchemy."""
    module = type(exc).__module__
    if module.startswith(("sqlite3", "psycopg")):
        return True
    if not module.startswith("sqlalchemy"):
        return False
    from sqlalchemy.exc import DBAPIError

    return isinstance(exc, DBAPIError)
