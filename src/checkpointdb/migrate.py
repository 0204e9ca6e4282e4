"""Is the database at head? Upgrade it under a lock, or say clearly why not.

Opening an up-to-date database reads one row and lists one directory; Alembic
is imported only when there is something to migrate (or a ``db`` command
asks for it), which keeps process start-up fast.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection

from .engine import Database
from .errors import CheckpointDBError, SchemaOutOfDateError, SchemaTooNewError
from .repository import Repository

if TYPE_CHECKING:
    from alembic.config import Config

# Revision files are named "<revision>_<slug>.py", revisions numbered in order.
_REVISION_FILE = re.compile(r"^(\d{4})_\w+\.py$")


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


def ensure_schema(db: Database, repository: Repository, *, auto_upgrade: bool) -> None:
    """Make sure the database is at head, upgrading it when allowed.

    Raises:
        SchemaTooNewError: stamped with a revision this package does not know;
            nothing was written.
        SchemaOutOfDateError: older than head and ``auto_upgrade`` is off.
    """
    current = current_revision(db, repository)
    if current == head_revision():
        return
    _refuse_unknown(db, current)
    if current is not None and not auto_upgrade:
        raise SchemaOutOfDateError(
            f"{db.where} is at schema revision {current}, this checkpointdb needs "
            f"{head_revision()}; run `{upgrade_command(db)}` "
            "(or open the store with auto_upgrade=True)"
        )
    upgrade(db, repository)


def upgrade_command(db: Database) -> str:
    """The shell command that upgrades ``db``, ready to paste.

    The path is shell-quoted; a URL's password, which is never printed, is
    shown as the placeholder PASSWORD.
    """
    if db.is_sqlite:
        target = str(db.url.database)
    else:
        url = db.url.set(password="PASSWORD") if db.url.password else db.url
        target = url.render_as_string(hide_password=False)
    return f"checkpointdb --db {shlex.quote(target)} db upgrade"


def _refuse_unknown(db: Database, current: str | None) -> None:
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

    with locked_connection(db, repository) as connection:
        cursor: Any = connection.connection.cursor()
        current = repository.schema_version(cursor)
        if action == "upgrade":
            _refuse_unknown(db, current)
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
