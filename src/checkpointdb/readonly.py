"""Run one SQL query on a connection that cannot write, whatever the query says.

This backs ``checkpointdb sql``: people paste queries into it, so it must be
impossible for a query to change the database, not merely unlikely.

* SQLite: the file is opened through a ``file:...?mode=ro`` URI, so the
  driver itself refuses every write, and ``PRAGMA query_only`` is set as a
  second lock. An authorizer also refuses ATTACH / DETACH (which would create
  or open other files, and through which ``VACUUM INTO`` writes a copy) and
  every PRAGMA outside a list of ones that only read (``query_only = OFF``
  would lift the second lock).
* PostgreSQL: a READ ONLY transaction, pinned by a first query (after which
  it cannot be switched to read-write), and rolled back at the end. The query
  is prepared, so it is exactly one statement: ``COMMIT; DROP ...`` cannot end
  the read-only transaction and write in a new one.
"""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL

from .engine import (
    DEFAULT_SETTINGS,
    DriverErrors,
    describe,
    read_only_sqlite_uri,
    require_psycopg,
    resolve_url,
    translate_error,
)
from .errors import CheckpointDBError
from .migrate import no_store_error
from .store import CheckpointStore

Columns = list[str]
Rows = list[tuple[Any, ...]]

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


def run_read_only(
    store_or_url: CheckpointStore | str | os.PathLike[str] | URL | None,
    query: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    max_rows: int | None = None,
) -> tuple[Columns, Rows]:
    """Run ``query`` on a read-only connection and return its columns and rows.

    Args:
        store_or_url: an open store (its database is used), an SQLite path, a
            URL, or None for ``$CHECKPOINTDB_URL``, else ``./checkpoints.db``.
        query: exactly one SQL statement.
        timeout: seconds the query may run; the server stops it then (on
            PostgreSQL as ``statement_timeout``, so a client that is gone
            leaves no query running for longer).
        max_rows: return at most this many rows (None: all).

    Returns:
        ``(columns, rows)``: the column names (empty for a statement that
        returns no rows) and every row as a tuple.

    Raises:
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
        return _run_sqlite(path, query, timeout, max_rows)
    if backend == "postgresql":
        return _run_postgresql(url, query, timeout, max_rows)
    raise CheckpointDBError(f"unsupported database {describe(url)!r}")


def _fetch(cursor: Any, max_rows: int | None) -> Rows:
    """At most ``max_rows`` rows of the cursor (all of them for None)."""
    if max_rows is None:
        return [tuple(row) for row in cursor.fetchall()]
    return [tuple(row) for row in cursor.fetchmany(max_rows)]


def _timed_out(where: str, timeout: float) -> CheckpointDBError:
    return CheckpointDBError(
        f"{where}: the query ran longer than {timeout:g}s and was stopped (raise --timeout)"
    )


def _run_sqlite(
    path: Path, query: str, timeout: float, max_rows: int | None
) -> tuple[Columns, Rows]:
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
    with DriverErrors(str(path), busy_timeout):
        connection = sqlite3.connect(
            read_only_sqlite_uri(path),
            uri=True,
            timeout=busy_timeout,
            isolation_level=None,
        )
    try:
        connection.execute("PRAGMA query_only = ON")
        # SQLite reads the file lazily; this makes a file that is not a
        # database fail here, even for a query that touches no table.
        connection.execute("SELECT count(*) FROM sqlite_master").fetchall()
        connection.set_authorizer(authorize)
        deadline = time.monotonic() + timeout
        # Runs every few thousand steps: past the deadline it stops the query.
        # Being Python, it also lets Ctrl-C in, which interrupts the query too.
        connection.set_progress_handler(
            lambda: time.monotonic() > deadline, _STEPS_PER_CHECK
        )
        cursor = connection.execute(query)
        rows = _fetch(cursor, max_rows)
        columns = [column[0] for column in cursor.description or ()]
    except sqlite3.Error as exc:
        message = str(exc)
        if message == "interrupted":
            if time.monotonic() > deadline:
                raise _timed_out(str(path), timeout) from exc
            # Ctrl-C arrived in the progress handler, which stopped the query.
            raise KeyboardInterrupt from exc
        if refusals:
            raise CheckpointDBError(f"{path}: {refusals[0]}; nothing was changed") from exc
        if "readonly database" in message:
            raise CheckpointDBError(f"{path}: {_WRITE_REFUSED} ({message})") from exc
        if isinstance(exc, sqlite3.ProgrammingError) and "one statement" in message:
            raise CheckpointDBError(f"{path}: give one SQL statement at a time") from exc
        raise translate_error(exc, str(path), busy_timeout) from exc
    finally:
        connection.close()
    return columns, rows


def _run_postgresql(
    url: URL, query: str, timeout: float, max_rows: int | None
) -> tuple[Columns, Rows]:
    require_psycopg()
    import psycopg

    where = describe(url)
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        connection = psycopg.connect(conninfo, application_name="checkpointdb sql")
    except psycopg.Error as exc:
        raise CheckpointDBError(f"cannot connect to {where}: {exc}") from exc
    try:
        connection.read_only = True  # the driver opens the transaction as BEGIN READ ONLY
        cursor = psycopg.RawCursor(connection)
        # A snapshot is taken from here on, so the transaction can no longer be
        # made read-write ("must be set before any query").
        cursor.execute("SELECT 1")
        cursor.execute("SET LOCAL TIME ZONE 'UTC'")
        # The server stops the query itself, even if this client is gone.
        cursor.execute(f"SET LOCAL statement_timeout = {max(1, int(timeout * 1000))}")
        # Prepared: the server accepts exactly one statement.
        cursor.execute(query, prepare=True)
        columns = [column.name for column in cursor.description or ()]
        rows = _fetch(cursor, max_rows) if cursor.description else []
    except psycopg.errors.ReadOnlySqlTransaction as exc:
        raise CheckpointDBError(f"{where}: {_WRITE_REFUSED} ({_first_line(exc)})") from exc
    except psycopg.errors.QueryCanceled as exc:
        raise _timed_out(where, timeout) from exc
    except psycopg.Error as exc:
        if "COPY" in str(exc) and "copy()" in str(exc):
            raise CheckpointDBError(
                f"{where}: COPY cannot run here; SELECT the rows instead (--json for "
                "machine-readable output)"
            ) from exc
        raise CheckpointDBError(f"{where}: {_first_line(exc)}") from exc
    finally:
        # A COPY left in progress makes ROLLBACK fail; closing ends it anyway.
        with suppress(psycopg.Error):
            if not connection.broken:
                connection.rollback()
        connection.close()
    return columns, rows


def _first_line(exc: BaseException) -> str:
    """A driver message without the caret diagram PostgreSQL appends."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
