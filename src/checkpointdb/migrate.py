"""Is the database ours, and at head? Upgrade it under a lock, or say clearly why not.

Every check runs on a connection that cannot write (:func:`inspect`), before
anything that could: a database that is not a checkpointdb store, or that a
newer checkpointdb wrote, keeps its bytes. Opening an up-to-date database
reads a few rows and lists one directory; Alembic is imported only when there
is something to migrate (or a ``db`` command asks for it), which keeps
process start-up fast.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .engine import DEFAULT_SETTINGS, AnyURL, Database, Trace, describe, sqlalchemy_url
from .errors import (
    CheckpointDBError,
    ForeignDatabaseError,
    NoStoreError,
    NotFoundError,
    SchemaOutOfDateError,
    SchemaTooNewError,
)
from .repository import Repository, repository_for

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.engine import Connection

# Revision files are named "<revision>_<slug>.py", revisions numbered in order.
_REVISION_FILE = re.compile(r"^(\d{4})_\w+\.py$")
# Tables every checkpointdb schema has, whatever its revision.
_OUR_TABLES = frozenset({"sessions", "checkpoints"})
# Other tables named in a refusal (the rest are counted).
_TABLES_SHOWN = 5
# A PostgreSQL identifier that needs no quotes.
_PLAIN_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_$]*$")


@cache
def migrations_dir() -> Path:
    """Where the Alembic scripts are: inside the installed wheel, else the checkout."""
    packaged = Path(str(resources.files("checkpointdb"))) / "migrations"
    if (packaged / "env.py").is_file():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / "migrations"
    if (checkout / "env.py").is_file():
        return checkout
    raise CheckpointDBError(
        f"the schema migrations are missing (looked in {packaged} and {checkout}); "
        "reinstall checkpointdb"
    )


@cache
def known_revisions() -> tuple[str, ...]:
    """Every revision this package ships, oldest first (read from file names)."""
    names = (_REVISION_FILE.match(p.name) for p in (migrations_dir() / "versions").iterdir())
    return tuple(sorted(m.group(1) for m in names if m))


def head_revision() -> str:
    """The newest revision this package knows."""
    return known_revisions()[-1]


def alembic_config() -> Config:
    """An Alembic Config for the packaged migrations (no alembic.ini needed)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    return config


def current_revision(db: Database, repository: Repository) -> str | None:
    """The revision the database is stamped with (None: never migrated)."""
    with db.transaction(write=False) as cursor:
        return repository.schema_version(cursor)


@dataclass(frozen=True)
class SchemaState:
    """What :func:`inspect` found: the stamped revision, and every table and view."""

    revision: str | None
    tables: tuple[str, ...]


def inspect(db: Database, repository: Repository) -> SchemaState:
    """Read the database's revision and tables, in one snapshot, without writing.

    Raises:
        NoStoreError: on PostgreSQL, no schema of the search_path exists.
    """
    with db.transaction(write=False) as cursor:
        search_path = repository.missing_schema(cursor)
        if search_path is not None:
            raise _missing_schema(db, search_path)
        return SchemaState(repository.schema_version(cursor), tuple(repository.table_names(cursor)))


def open_reader(
    url: AnyURL,
    *,
    synchronous: str = DEFAULT_SETTINGS["synchronous"],
    busy_timeout: float = DEFAULT_SETTINGS["busy_timeout"],
    echo: bool = False,
    trace: Trace | None = None,
) -> Database:
    """Open ``url`` on connections that cannot write; a missing SQLite file is not created.

    Raises:
        NoStoreError: the SQLite file does not exist.
        CorruptDatabaseError: the file is not an SQLite database.
    """
    try:
        return Database(
            url,
            synchronous=synchronous,
            busy_timeout=busy_timeout,
            echo=echo,
            read_only=True,
            trace=trace,
        )
    except NoStoreError:
        raise
    except NotFoundError:
        raise no_store_error(url) from None


def check_readable(db: Database, repository: Repository) -> None:
    """Refuse to read a database that is not a checkpointdb store at head.

    Raises:
        NoStoreError: it has no checkpointdb schema.
        ForeignDatabaseError: its alembic_version is another application's.
        SchemaTooNewError: a newer checkpointdb wrote it.
        SchemaOutOfDateError: it is at an older revision (``db upgrade`` moves it).
    """
    state = inspect(db, repository)
    if state.revision is None:
        raise no_store_error(db.given_url)
    _refuse_unknown(db, state)
    if state.revision != head_revision():
        raise _out_of_date(db, state.revision, "")


def check_before_writing(
    url: AnyURL,
    *,
    auto_upgrade: bool,
    create_in_existing: bool,
    synchronous: str = DEFAULT_SETTINGS["synchronous"],
    busy_timeout: float = DEFAULT_SETTINGS["busy_timeout"],
    echo: bool = False,
    repository: Repository | None = None,
) -> str | None:
    """Every check an opening for writing needs, on a connection that cannot write.

    Args:
        url: the database.
        auto_upgrade: an older schema may be upgraded.
        create_in_existing: the schema may be created beside other tables.
        synchronous, busy_timeout, echo: as for :class:`Database`.
        repository: a repository for ``url``'s dialect, if the caller has one
            (building one compiles every statement, 20-45 ms).

    Returns:
        The revision the database is stamped with; None for a new file or a
        database without a checkpointdb schema, where the schema is to be created.

    Raises:
        ForeignDatabaseError: other tables and no checkpointdb schema (and
            ``create_in_existing`` is off), or another application's alembic_version.
        SchemaTooNewError: a newer checkpointdb wrote it.
        SchemaOutOfDateError: older than head and ``auto_upgrade`` is off.
        NoStoreError: on PostgreSQL, no schema of the search_path exists.
    """
    if url.get_backend_name() == "sqlite" and not Path(str(url.database)).exists():
        return None
    reader = open_reader(url, synchronous=synchronous, busy_timeout=busy_timeout, echo=echo)
    try:
        state = inspect(reader, repository or repository_for(reader))
    finally:
        reader.dispose()
    if state.revision is None:
        if state.tables and not create_in_existing:
            raise _foreign(reader, state.tables)
        return None
    _refuse_unknown(reader, state)
    if state.revision != head_revision() and not auto_upgrade:
        raise _out_of_date(reader, state.revision, " (or open the store with auto_upgrade=True)")
    return state.revision


def no_store_error(url: AnyURL) -> NoStoreError:
    """The one-line refusal to read where there is no checkpointdb store."""
    return NoStoreError(
        f"no checkpointdb store at {describe(url)}; create one with: {upgrade_command(url)}"
    )


def _foreign(db: Database, tables: tuple[str, ...]) -> ForeignDatabaseError:
    shown = ", ".join(tables[:_TABLES_SHOWN])
    more = len(tables) - _TABLES_SHOWN
    if more > 0:
        shown += f" and {more} more"
    return ForeignDatabaseError(
        f"{db.where} is not a checkpointdb store: it holds other tables ({shown}) and no "
        "checkpointdb schema; it was left untouched. To add the checkpointdb tables beside "
        f"them, run `{upgrade_command(db)}` or open it with "
        "CheckpointStore(url, create_in_existing=True); or use a database of its own"
    )


def _missing_schema(db: Database, search_path: str) -> NoStoreError:
    names = [name.strip().strip('"') for name in search_path.split(",")]
    wanted = next((name for name in names if name and name != "$user"), "")
    if not wanted:
        return NoStoreError(
            f"{db.where}: its search_path ({search_path}) names no schema that exists; "
            "add ?options=-csearch_path%3DNAME to the URL, or create the schema it names"
        )
    quoted = wanted if _PLAIN_IDENTIFIER.match(wanted) else '"' + wanted.replace('"', '""') + '"'
    return NoStoreError(
        f"{db.where}: schema {wanted!r} (the search_path) does not exist; "
        f"create it first: CREATE SCHEMA {quoted};"
    )


def _out_of_date(db: Database, current: str, hint: str) -> SchemaOutOfDateError:
    return SchemaOutOfDateError(
        f"{db.where} is at schema revision {current}, this checkpointdb needs "
        f"{head_revision()}; run `{upgrade_command(db)}`{hint}"
    )


def upgrade_command(target: Database | AnyURL) -> str:
    """The shell command that upgrades a database (or its URL), ready to paste.

    The path is shell-quoted; a URL's password, which is never printed, is
    shown as the placeholder PASSWORD.
    """
    given = target.given_url if isinstance(target, Database) else target
    if given.get_backend_name() == "sqlite":
        shown = str(given.database)
    else:
        url = sqlalchemy_url(given)
        url = url.set(password="PASSWORD") if url.password else url
        shown = url.render_as_string(hide_password=False)
    return f"checkpointdb --db {shlex.quote(shown)} db upgrade"


def _refuse_unknown(db: Database, state: SchemaState) -> None:
    current = state.revision
    ours = _OUR_TABLES.issubset(state.tables)
    if current is not None and current not in known_revisions() and not ours:
        raise ForeignDatabaseError(
            f"{db.where} is not a checkpointdb store: its alembic_version table is another "
            f"application's (revision {current!r}); it was left untouched. Give checkpointdb "
            "a database (or PostgreSQL schema) of its own"
        )
    if current is not None and current not in known_revisions():
        raise SchemaTooNewError(
            f"{db.where} is at schema revision {current!r}, which this checkpointdb "
            f"does not know (it knows {', '.join(known_revisions())}); it was written "
            "by a newer version: upgrade checkpointdb. The database was not changed."
        )


@contextmanager
def locked_connection(db: Database, repository: Repository) -> Iterator[Connection]:
    """A connection inside a transaction that holds the migration lock.

    SQLite: foreign keys off (batch mode rebuilds tables, and ON DELETE
    CASCADE would empty the child tables), BEGIN IMMEDIATE, and a
    ``foreign_key_check`` before COMMIT. PostgreSQL: a transaction-scoped
    advisory lock, so many hosts starting at once migrate exactly once.
    """
    with db.connect() as connection:
        dbapi: Any = connection.connection.dbapi_connection
        if db.is_sqlite:
            repository.set_foreign_keys(dbapi, enabled=False)
            # Batch mode ends a rebuild by renaming the new table into place;
            # SQLite's modern RENAME re-checks every view first, and a view of
            # the table being rebuilt fails ("no such table"), so it is refused.
            dbapi.execute("PRAGMA legacy_alter_table = ON")
            connection = connection.execution_options(sqlite_immediate=True)
        try:
            with connection.begin():
                cursor: Any = connection.connection.cursor()
                if not db.is_sqlite:
                    # Set for this transaction only: it may be a pooler's.
                    cursor.execute(db.pg_lock_timeout)
                repository.take_migration_lock(cursor)
                yield connection
                problems = repository.foreign_key_problems(cursor)
                if problems:
                    raise CheckpointDBError(
                        f"migration of {db.where} left rows without a parent: "
                        f"{problems[:5]}; it was rolled back"
                    )
        finally:
            if db.is_sqlite:
                dbapi.execute("PRAGMA legacy_alter_table = OFF")
                repository.set_foreign_keys(dbapi, enabled=True)


def _run_alembic(db: Database, repository: Repository, action: str, revision: str) -> None:
    from alembic import command

    db.check_writable()
    with locked_connection(db, repository) as connection:
        cursor: Any = connection.connection.cursor()
        current = repository.schema_version(cursor)
        if action == "upgrade":
            _refuse_unknown(db, SchemaState(current, tuple(repository.table_names(cursor))))
            if current == head_revision() and revision == "head":
                return
        config = alembic_config()
        config.attributes["connection"] = connection
        if action == "upgrade":
            command.upgrade(config, revision)
        else:
            command.downgrade(config, revision)


def upgrade(db: Database, repository: Repository, revision: str = "head") -> None:
    """Upgrade to ``revision`` under the migration lock (a no-op when already there)."""
    try:
        _run_alembic(db, repository, "upgrade", revision)
    except CheckpointDBError:
        raise
    except Exception as exc:
        raise _wrap(db, exc) from exc


def downgrade(db: Database, repository: Repository, revision: str) -> None:
    """Downgrade to ``revision`` under the migration lock."""
    try:
        _run_alembic(db, repository, "downgrade", revision)
    except CheckpointDBError:
        raise
    except Exception as exc:
        raise _wrap(db, exc) from exc


def _wrap(db: Database, exc: Exception) -> CheckpointDBError:
    translated = db.translate(exc)
    return CheckpointDBError(f"schema migration of {db.where} failed: {translated}")


def history() -> list[dict[str, Any]]:
    """Every packaged revision, oldest first: id, parent and message."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(alembic_config())
    revisions = list(scripts.walk_revisions())
    revisions.reverse()
    return [
        {"revision": r.revision, "down_revision": r.down_revision, "message": r.doc}
        for r in revisions
    ]
