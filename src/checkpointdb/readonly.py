"""Run one SQL query on a connection that cannot write, whatever the query says.

This backs ``checkpointdb sql``: people paste queries into it, so it must be
impossible for a query to change the database, not merely unlikely.

* SQLite: the query runs on a connection opened through a
  ``file:...?mode=ro`` URI, so the driver itself refuses every write, and
  ``PRAGMA query_only`` is set as a second lock. An authorizer also refuses
  ATTACH / DETACH (which would create or open other files, and through which
  ``VACUUM INTO`` writes a copy) and every PRAGMA outside a list of ones that
  only read (``query_only = OFF`` would lift the second lock). Nothing is
  left behind either: where reading a WAL database creates its ``-wal`` and
  ``-shm`` files, a second, read-write connection that never sees the query
  closes last and deletes them (see :func:`~checkpointdb.engine.sqlite_read_mode`).
* PostgreSQL: a READ ONLY transaction, pinned by a first query (after which
  it cannot be switched to read-write), and rolled back at the end. The query
  is prepared, so it is exactly one statement: ``COMMIT; DROP ...`` cannot end
  the read-only transaction and write in a new one. A READ ONLY transaction
  does not stop functions that act outside it (``pg_terminate_backend``,
  ``dblink``): that takes connecting as a role that may only SELECT
  (``checkpointdb sql --url``); ``SET ROLE`` would not do, as the query
  itself can undo it with ``set_config('role', ...)``.

Rows are fetched in batches (streamed from the PostgreSQL server), so
memory stays bounded however many rows a query returns.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager, suppress
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import URL

from .engine import (
    DEFAULT_SETTINGS,
    describe,
    require_psycopg,
    resolve_url,
    sqlite_read_mode,
    sqlite_uri,
    translate_error,
)
from .errors import CheckpointDBError
from .migrate import no_store_error
from .store import CheckpointStore

if TYPE_CHECKING:
    import psycopg

Columns = list[str]
Row = tuple[Any, ...]
Rows = list[Row]

# Pragmas that only report; allowed without an argument (a value would set them).
_READING_PRAGMAS = frozenset(
    {
        "application_id",
        "auto_vacuum",
        "busy_timeout",
        "cache_size",
        "collation_list",
        "compile_options",
        "data_version",
        "database_list",
        "encoding",
        "foreign_key_check",
        "foreign_keys",
        "freelist_count",
        "function_list",
        "integrity_check",
        "journal_mode",
        "module_list",
        "page_count",
        "page_size",
        "pragma_list",
        "query_only",
        "quick_check",
        "schema_version",
        "synchronous",
        "table_list",
        "user_version",
    }
)
# Pragmas whose argument names a table or index (or a row limit), not a new value.
_READING_PRAGMAS_WITH_ARGUMENT = frozenset(
    {
        "foreign_key_check",
        "foreign_key_list",
        "index_info",
        "index_list",
        "index_xinfo",
        "integrity_check",
        "quick_check",
        "table_info",
        "table_list",
        "table_xinfo",
    }
)
_WRITE_REFUSED = "the query tries to write; `checkpointdb sql` is read-only and nothing was changed"


# Seconds a query may run before it is stopped (``checkpointdb sql --timeout``).
DEFAULT_TIMEOUT = 30.0
# SQLite virtual machine steps between two checks of the clock (and of Ctrl-C).
_STEPS_PER_CHECK = 10_000
# Rows fetched at a time (on PostgreSQL, per chunk the server sends): what a
# query's output holds in memory, however many rows it returns.
FETCH_BATCH = 500


@contextmanager
def read_only_query(
    store_or_url: CheckpointStore | str | os.PathLike[str] | URL | None,
    query: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> Iterator[tuple[Columns, Iterator[Row]]]:
    """Run ``query`` on a read-only connection; its rows arrive as they are fetched.

    ``with read_only_query(url, query) as (columns, rows):`` gives the column
    names (empty for a statement that returns no rows) and an iterator over
    the rows, fetched in batches of :data:`FETCH_BATCH` (on PostgreSQL
    streamed from the server), so memory stays bounded however many rows
    the query returns. The connection closes when the block ends.

    Args:
        store_or_url: an open store (its database is used), an SQLite path, a
            URL, or None for ``$CHECKPOINTDB_URL``, else ``./checkpoints.db``.
        query: exactly one SQL statement.
        timeout: seconds the query may run, fetching included; the server
            stops it then (on PostgreSQL as ``statement_timeout``, so a client
            that is gone leaves no query running for longer).

    Raises (also while iterating):
        NoStoreError: the SQLite file does not exist (it is not created).
        CheckpointDBError: the query failed, or tried to write (the message
            says so); the database is unchanged either way.
    """
    if isinstance(store_or_url, CheckpointStore):
        url = store_or_url.url
    else:
        url = resolve_url(store_or_url)
    backend = url.get_backend_name()
    if not timeout > 0:
        raise CheckpointDBError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if backend == "sqlite":
        path = Path(str(url.database))
        if not path.is_file():
            raise no_store_error(url)
        with _sqlite_query(path, query, timeout) as result:
            yield result
    elif backend == "postgresql":
        with _postgresql_query(url, query, timeout) as result:
            yield result
    else:
        raise CheckpointDBError(f"unsupported database {describe(url)!r}")


def run_read_only(
    store_or_url: CheckpointStore | str | os.PathLike[str] | URL | None,
    query: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    max_rows: int | None = None,
) -> tuple[Columns, Rows]:
    """Run ``query`` on a read-only connection and return its columns and rows.

    As :func:`read_only_query`, with every row (at most ``max_rows``; None:
    all) in one list.

    Returns:
        ``(columns, rows)``: the column names (empty for a statement that
        returns no rows) and every row as a tuple.
    """
    with read_only_query(store_or_url, query, timeout=timeout) as (columns, rows):
        return columns, list(islice(rows, max_rows))


def _fetched(cursor: Any, failure: Callable[[Exception], BaseException]) -> Iterator[Row]:
    """The cursor's rows, fetched in batches; a driver error becomes ``failure(error)``."""
    try:
        while batch := cursor.fetchmany(FETCH_BATCH):
            for row in batch:
                yield tuple(row)
    except sqlite3.Error as exc:
        raise failure(exc) from exc


def _timed_out(where: str, timeout: float) -> CheckpointDBError:
    return CheckpointDBError(
        f"{where}: the query ran longer than {timeout:g}s and was stopped (raise --timeout)"
    )


@contextmanager
def _sqlite_query(
    path: Path, query: str, timeout: float
) -> Iterator[tuple[Columns, Iterator[Row]]]:
    refusals: list[str] = []

    def authorize(action: int, arg1: str | None, arg2: str | None, *_: str | None) -> int:
        if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
            refusals.append("ATTACH and DETACH (and VACUUM INTO) are refused")
            return sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_PRAGMA:
            name = (arg1 or "").lower()
            if name in _READING_PRAGMAS_WITH_ARGUMENT or (
                arg2 is None and name in _READING_PRAGMAS
            ):
                return sqlite3.SQLITE_OK
            refusals.append(f"PRAGMA {name} is refused (only pragmas that read are allowed)")
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK

    busy_timeout = float(DEFAULT_SETTINGS["busy_timeout"])
    deadline = time.monotonic() + timeout

    def failure(exc: Exception) -> BaseException:
        message = str(exc)
        if message == "interrupted":
            if time.monotonic() > deadline:
                return _timed_out(str(path), timeout)
            # Ctrl-C arrived in the progress handler, which stopped the query.
            return KeyboardInterrupt()
        if refusals:
            return CheckpointDBError(f"{path}: {refusals[0]}; nothing was changed")
        if "readonly database" in message:
            return CheckpointDBError(f"{path}: {_WRITE_REFUSED} ({message})")
        if isinstance(exc, sqlite3.ProgrammingError) and "one statement" in message:
            return CheckpointDBError(f"{path}: give one SQL statement at a time")
        return translate_error(exc, str(path), busy_timeout)

    def connect(mode: str) -> sqlite3.Connection:
        connection = sqlite3.connect(
            sqlite_uri(path, mode), uri=True, timeout=busy_timeout, isolation_level=None
        )
        opened.append(connection)
        connection.execute("PRAGMA query_only = ON")
        # SQLite reads the file lazily; this makes a file that is not a
        # database fail here, even for a query that touches no table. It also
        # creates the -wal and -shm a WAL database is read with.
        connection.execute("SELECT count(*) FROM sqlite_master").fetchall()
        return connection

    opened: list[sqlite3.Connection] = []
    try:
        try:
            mode = sqlite_read_mode(path)
            if mode == "rw":
                # Never given the query: it only closes last, and as the last
                # connection to close it deletes the -wal and -shm that
                # reading created. The query runs on a connection SQLite
                # itself keeps from writing.
                connect("rw")
                mode = "ro"
            connection = connect(mode)
            connection.set_authorizer(authorize)
            # Runs every few thousand steps: past the deadline it stops the
            # query. Being Python, it also lets Ctrl-C in, which interrupts
            # the query too.
            connection.set_progress_handler(lambda: time.monotonic() > deadline, _STEPS_PER_CHECK)
            cursor = connection.execute(query)
        except sqlite3.Error as exc:
            raise failure(exc) from exc
        columns = [column[0] for column in cursor.description or ()]
        yield columns, _fetched(cursor, failure)
    finally:
        for connection in reversed(opened):
            connection.close()


@contextmanager
def _postgresql_query(
    url: URL, query: str, timeout: float
) -> Iterator[tuple[Columns, Iterator[Row]]]:
    require_psycopg()
    import psycopg
    from psycopg import pq

    where = describe(url)

    def failure(exc: Exception) -> BaseException:
        if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
            return CheckpointDBError(f"{where}: {_WRITE_REFUSED} ({_first_line(exc)})")
        if isinstance(exc, psycopg.errors.QueryCanceled):
            return _timed_out(where, timeout)
        if "COPY" in str(exc) and "copy()" in str(exc):
            return CheckpointDBError(
                f"{where}: COPY cannot run here; SELECT the rows instead (--json for "
                "machine-readable output)"
            )
        if isinstance(exc, psycopg.Error):
            return CheckpointDBError(f"{where}: {_first_line(exc)}")
        return exc

    connection = connect_postgres(url, where, "checkpointdb sql")
    try:
        try:
            connection.read_only = True  # the driver opens the transaction as BEGIN READ ONLY
            cursor = psycopg.RawCursor(connection)
            # A snapshot is taken from here on, so the transaction can no longer
            # be made read-write ("must be set before any query").
            cursor.execute("SELECT 1")
            cursor.execute("SET LOCAL TIME ZONE 'UTC'")
            # The server stops the query itself, even if this client is gone.
            cursor.execute(f"SET LOCAL statement_timeout = {max(1, int(timeout * 1000))}")
            # Parsed as a prepared statement, which the server accepts only
            # for exactly one statement; described, for the column names of
            # a result without rows.
            encoding = connection.info.encoding
            pgconn = connection.pgconn
            for result in (
                pgconn.prepare(b"", query.encode(encoding)),
                pgconn.describe_prepared(b""),
            ):
                if result.status != pq.ExecStatus.COMMAND_OK:
                    raise psycopg.errors.error_from_result(result, encoding=encoding)
            columns = [
                (result.fname(index) or b"").decode(encoding) for index in range(result.nfields)
            ]
            if not columns:  # a statement that returns no rows: run it for its errors
                cursor.execute(query, prepare=True)
        except psycopg.Error as exc:
            raise failure(exc) from exc
        rows = _streamed(cursor, query, failure)
        try:
            yield columns, rows if columns else iter(())
        finally:
            # A stream left part-read holds the connection: closing it cancels
            # the rest of the query, so the ROLLBACK below can be sent.
            rows.close()
    finally:
        # A COPY left in progress makes ROLLBACK fail; closing ends it anyway.
        with suppress(psycopg.Error):
            if not connection.broken:
                connection.rollback()
        connection.close()


def _streamed(
    cursor: Any, query: str, failure: Callable[[Exception], BaseException]
) -> Generator[Row, None, None]:
    """The rows of ``query``, streamed from the server in chunks of :data:`FETCH_BATCH`."""
    import psycopg

    try:
        for row in cursor.stream(query, size=FETCH_BATCH):
            yield tuple(row)
    except psycopg.Error as exc:
        raise failure(exc) from exc


def connect_postgres(url: URL, where: str, application_name: str) -> psycopg.Connection[Any]:
    """A plain psycopg connection to ``url``; a failure is one line naming ``where``.

    Raises:
        CheckpointDBError: the server could not be reached or refused the login.
    """
    import psycopg

    # Keywords, not a rendered URL: libpq's URL parser refuses a password
    # with a space in it, which SQLAlchemy's rendering leaves unescaped.
    params: dict[str, Any] = {
        key: value[-1] if isinstance(value, tuple) else value  # libpq keeps the last
        for key, value in url.query.items()
    }
    for key, value in (
        ("host", url.host),
        ("port", url.port),
        ("user", url.username),
        ("password", url.password),
        ("dbname", url.database),
    ):
        if value is not None:
            params[key] = value
    try:
        return psycopg.connect(application_name=application_name, **params)
    except psycopg.Error as exc:
        raise CheckpointDBError(f"cannot connect to {where}: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    """A driver message without the caret diagram PostgreSQL appends."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
