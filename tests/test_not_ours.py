"""A database that is not a checkpointdb store is never changed, by reading or by opening.

Each test takes a fingerprint of the database before and after: on SQLite the
file's sha256 and which of its -wal/-shm/-journal files exist, on PostgreSQL
the tables of the test's schema and the rows of the application's table.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from conftest import POSTGRES_URL, _postgres_or_skip
from sqlalchemy.engine import make_url
from test_cli import invoke, one_error_line

from checkpointdb import (
    CheckpointStore,
    ForeignDatabaseError,
    NoStoreError,
    ReadOnlyStoreError,
    SchemaTooNewError,
    migrate,
)
from checkpointdb.aio import AsyncCheckpointStore

SIDECARS = ("-wal", "-shm", "-journal")
# Every command that only reads, with arguments that would find something in a store.
READING_COMMANDS = [
    ["sessions"],
    ["list", "s"],
    ["show", "s:1"],
    ["latest", "s"],
    ["export", "s"],
    ["stats"],
    ["db", "current"],
    ["db", "check"],
]
ENTRIES = json.dumps(
    [{"id": "s:1", "name": "plan", "timestamp": "2026-01-01T00:00:00+00:00", "data": {"i": 1}}]
)


def _conninfo(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _postgres(url: str, statement: str) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(_conninfo(url), autocommit=True) as connection:
        cursor = connection.execute(statement)
        return list(cursor.fetchall()) if cursor.description else []


def fingerprint(url: str) -> object:
    """What must not change: the bytes of an SQLite file, or a PostgreSQL schema's contents."""
    if "://" not in url:
        path = Path(url)
        content = hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None
        return content, [suffix for suffix in SIDECARS if Path(f"{path}{suffix}").exists()]
    tables = _postgres(
        url,
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = current_schema() ORDER BY table_name",
    )
    rows = _postgres(url, "SELECT * FROM orders ORDER BY id") if ("orders",) in tables else []
    return tables, rows


def make_application_database(url: str) -> None:
    """Another application's database: its own tables and a view, in rollback-journal mode."""
    statements = [
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)",
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT)",
        "INSERT INTO users VALUES (1, 'ada')",
        "INSERT INTO orders VALUES (1, 'tea'), (2, 'cake')",
        "CREATE VIEW big_orders AS SELECT * FROM orders WHERE id > 1",
    ]
    if "://" in url:
        for statement in statements:
            _postgres(url, statement)
        return
    with sqlite3.connect(url) as connection:
        for statement in statements:
            connection.execute(statement)
    connection.close()
    assert sqlite3.connect(url).execute("PRAGMA journal_mode").fetchone()[0] == "delete"


@pytest.fixture
def application_url(backend_url: str) -> str:
    make_application_database(backend_url)
    return backend_url


# -- reading changes nothing ---------------------------------------------------------


@pytest.mark.parametrize("args", READING_COMMANDS, ids=" ".join)
def test_reading_commands_leave_another_applications_database_unchanged(
    application_url: str, args: list[str]
) -> None:
    before = fingerprint(application_url)
    result = invoke("--db", application_url, *args)
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "no checkpointdb store at " in line
    assert line.endswith("db upgrade")
    assert fingerprint(application_url) == before


def test_sql_and_db_history_read_another_applications_database_unchanged(
    application_url: str,
) -> None:
    before = fingerprint(application_url)
    counted = invoke("--db", application_url, "sql", "SELECT count(*) FROM orders", "--json")
    assert counted.exit_code == 0, counted.stderr
    assert json.loads(counted.stdout)["rows"] == [[2]]
    history = invoke("--db", application_url, "db", "history")
    assert history.exit_code == 0, history.stderr
    assert "has no checkpointdb schema" in history.stdout
    assert fingerprint(application_url) == before


def test_a_read_only_store_refuses_another_applications_database(application_url: str) -> None:
    before = fingerprint(application_url)
    with pytest.raises(NoStoreError, match=r"no checkpointdb store at .*db upgrade"):
        CheckpointStore(application_url, read_only=True)
    assert fingerprint(application_url) == before


def test_reading_an_empty_database_creates_nothing(backend_url: str) -> None:
    before = fingerprint(backend_url)
    with pytest.raises(NoStoreError):
        CheckpointStore(backend_url, read_only=True)
    for args in READING_COMMANDS:
        result = invoke("--db", backend_url, *args)
        assert result.exit_code == 1, args
        assert "no checkpointdb store at" in one_error_line(result)
    assert fingerprint(backend_url) == before


def test_reading_a_zero_byte_file_leaves_it_empty(sqlite_path: Path) -> None:
    sqlite_path.touch()
    with pytest.raises(NoStoreError, match=f"create one with: checkpointdb --db {sqlite_path}"):
        CheckpointStore(sqlite_path, read_only=True)
    for args in READING_COMMANDS:
        assert invoke("--db", str(sqlite_path), *args).exit_code == 1, args
    assert sqlite_path.stat().st_size == 0
    assert fingerprint(str(sqlite_path)) == (hashlib.sha256(b"").hexdigest(), [])


def test_a_read_only_store_on_a_missing_file_does_not_create_it(sqlite_path: Path) -> None:
    with pytest.raises(NoStoreError, match=f"no checkpointdb store at {sqlite_path}"):
        CheckpointStore(sqlite_path, read_only=True)
    assert not sqlite_path.exists()


def test_a_newer_database_in_rollback_journal_mode_keeps_its_bytes(sqlite_path: Path) -> None:
    CheckpointStore(sqlite_path).close()
    with sqlite3.connect(sqlite_path) as raw:
        raw.execute("UPDATE alembic_version SET version_num = '9999'")
    raw.execute("PRAGMA journal_mode = DELETE")
    raw.close()
    url = str(sqlite_path)
    before = fingerprint(url)
    assert before[1] == []
    for options in ({}, {"read_only": True}, {"auto_upgrade": False}):
        with pytest.raises(SchemaTooNewError):
            CheckpointStore(sqlite_path, **options)
    for args in (["sessions"], ["pin", "s:1"], ["db", "upgrade"], ["db", "check"]):
        result = invoke("--db", url, *args)
        assert result.exit_code == 1, args
        assert "newer" in one_error_line(result)
    assert "does not know" in invoke("--db", url, "db", "current").stdout
    assert fingerprint(url) == before


# -- a read-only store ---------------------------------------------------------------


def test_a_read_only_store_reads_and_refuses_every_write(backend_url: str) -> None:
    with CheckpointStore(backend_url) as writer:
        writer.manager("s").import_checkpoints(ENTRIES)
    before = fingerprint(backend_url)
    with CheckpointStore(backend_url, read_only=True) as store:
        assert store.read_only
        assert [info.id for info in store.sessions()] == ["s"]
        mgr = store.manager("s")
        assert [cp.name for cp in mgr.get_all()] == ["plan"]
        assert store.schema_revision() == migrate.head_revision()
        writes: list[Callable[[], object]] = [
            lambda: mgr.create("step", {"i": 2}),
            lambda: mgr.pin("s:1"),
            lambda: mgr.clear(),
            lambda: mgr.import_checkpoints(ENTRIES),
            lambda: store.delete_session("s"),
            lambda: store.vacuum(),
            lambda: store.manager("new").create("step", {}),
        ]
        for write in writes:
            with pytest.raises(ReadOnlyStoreError, match="read-only"):
                write()
        assert len(mgr) == 1
    assert fingerprint(backend_url) == before  # on SQLite: no -wal or -shm left either


def test_an_async_read_only_store_reads_and_refuses_writes(backend_url: str) -> None:
    with CheckpointStore(backend_url) as writer:
        writer.manager("s").import_checkpoints(ENTRIES)

    async def main() -> None:
        async with AsyncCheckpointStore(backend_url, read_only=True) as store:
            mgr = store.manager("s")
            assert [cp.name for cp in await mgr.get_all()] == ["plan"]
            with pytest.raises(ReadOnlyStoreError):
                await mgr.create("step", {})
            with pytest.raises(ReadOnlyStoreError):
                await store.vacuum()
            assert await mgr.count() == 1

    asyncio.run(main())


def test_an_async_read_only_store_refuses_another_applications_database(
    application_url: str,
) -> None:
    before = fingerprint(application_url)

    async def main() -> None:
        with pytest.raises(NoStoreError):
            await AsyncCheckpointStore.open(application_url, read_only=True)

    asyncio.run(main())
    assert fingerprint(application_url) == before


# -- writing creates only in what is empty ---------------------------------------------


def test_opening_for_writing_refuses_a_database_with_other_tables(application_url: str) -> None:
    before = fingerprint(application_url)
    with pytest.raises(ForeignDatabaseError) as refused:
        CheckpointStore(application_url)
    message = str(refused.value)
    assert "\n" not in message
    for named in ("big_orders", "orders", "users", "db upgrade", "create_in_existing=True"):
        assert named in message
    for args in (["import", "s", "-"], ["demo", "--pace", "0"]):
        result = invoke("--db", application_url, *args, input=ENTRIES)
        assert result.exit_code == 1, args
        assert "not a checkpointdb store" in one_error_line(result)
    for args in (["pin", "s:1"], ["compact", "s"], ["expire", "--older-than", "1d"], ["vacuum"]):
        assert invoke("--db", application_url, *args).exit_code == 1, args
    assert fingerprint(application_url) == before


def test_create_in_existing_adds_the_store_beside_the_applications_tables(
    application_url: str,
) -> None:
    before = fingerprint(application_url)
    with CheckpointStore(application_url, create_in_existing=True) as store:
        store.manager("s").import_checkpoints(ENTRIES)
    with CheckpointStore(application_url) as store:  # ours now: no consent needed again
        assert len(store.manager("s")) == 1
    if "://" in application_url:
        assert fingerprint(application_url)[1] == before[1]  # type: ignore[index]
    else:
        rows = sqlite3.connect(application_url).execute("SELECT * FROM orders").fetchall()
        assert rows == [(1, "tea"), (2, "cake")]


def test_db_upgrade_is_consent_to_create_beside_other_tables(application_url: str) -> None:
    result = invoke("--db", application_url, "db", "upgrade")
    assert result.exit_code == 0, result.stderr
    assert "created the schema" in result.stdout
    imported = invoke("--db", application_url, "import", "s", "-", input=ENTRIES)
    assert imported.exit_code == 0, imported.stderr


def test_opening_for_writing_creates_the_store_in_an_empty_database(backend_url: str) -> None:
    with CheckpointStore(backend_url) as store:
        assert store.schema_revision() == migrate.head_revision()


def test_opening_for_writing_creates_the_store_in_a_zero_byte_file(sqlite_path: Path) -> None:
    sqlite_path.touch()
    with CheckpointStore(sqlite_path) as store:
        assert store.schema_revision() == migrate.head_revision()


def test_another_applications_alembic_version_is_not_taken_for_a_newer_store(
    application_url: str,
) -> None:
    statements = [
        "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)",
        "INSERT INTO alembic_version VALUES ('ae1027a6acf')",
    ]
    for statement in statements:
        if "://" in application_url:
            _postgres(application_url, statement)
        else:
            with sqlite3.connect(application_url) as connection:
                connection.execute(statement)
            connection.close()
    before = fingerprint(application_url)
    for options in ({}, {"create_in_existing": True}, {"read_only": True}):
        with pytest.raises(ForeignDatabaseError, match="another application's"):
            CheckpointStore(application_url, **options)
    result = invoke("--db", application_url, "db", "upgrade")
    assert "another application's" in one_error_line(result)
    assert fingerprint(application_url) == before


# -- no database for a command that failed or had nothing to write --------------------------


@pytest.mark.parametrize("document", ["[{not json", '[{"id": "s:1"}]', "{}"])
def test_a_failed_import_into_a_new_path_leaves_no_file(sqlite_path: Path, document: str) -> None:
    result = invoke("--db", str(sqlite_path), "import", "s", "-", input=document)
    assert result.exit_code == 1
    one_error_line(result)
    assert list(sqlite_path.parent.iterdir()) == []


def test_importing_an_empty_list_creates_no_file(sqlite_path: Path) -> None:
    result = invoke("--db", str(sqlite_path), "import", "s", "-", input="[]")
    assert result.exit_code == 0, result.stderr
    assert "nothing was imported" in result.stdout
    assert list(sqlite_path.parent.iterdir()) == []


def test_importing_an_empty_list_creates_no_session(backend_url: str) -> None:
    with CheckpointStore(backend_url) as store:
        assert store.manager("s").import_checkpoints("[]") == 0
        assert store.session("s") is None
    result = invoke("--db", backend_url, "import", "s", "-", "--json", input="[]")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {
        "session_id": "s",
        "imported": 0,
        "checkpoint_count": 0,
        "last_seq": 0,
    }
    with CheckpointStore(backend_url, read_only=True) as store:
        assert store.sessions() == []


def test_an_import_into_an_existing_file_that_fails_keeps_the_file(sqlite_path: Path) -> None:
    with CheckpointStore(sqlite_path) as store:
        store.manager("s").import_checkpoints(ENTRIES)
    result = invoke("--db", str(sqlite_path), "import", "t", "-", input="[{not json")
    assert result.exit_code == 1
    with CheckpointStore(sqlite_path, read_only=True) as store:
        assert [info.id for info in store.sessions()] == ["s"]


# -- PostgreSQL first contact -------------------------------------------------------------


def _without_psycopg(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter where importing psycopg fails."""
    prelude = "import sys\nsys.modules['psycopg'] = None\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=120
    )


NEEDS_EXTRA = "PostgreSQL needs the postgres extra: pip install 'checkpointdb[postgres]'"


def test_postgresql_without_the_driver_is_one_error_from_python() -> None:
    result = _without_psycopg(
        "from checkpointdb import CheckpointStore, CheckpointDBError, MissingDriverError\n"
        "for options in ({}, {'read_only': True}):\n"
        "    try:\n"
        "        CheckpointStore('postgresql+psycopg://agent@db.invalid/agents', **options)\n"
        "    except MissingDriverError as exc:\n"
        "        assert isinstance(exc, CheckpointDBError) and isinstance(exc, ImportError)\n"
        "        print(exc)\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [NEEDS_EXTRA, NEEDS_EXTRA]


@pytest.mark.parametrize("args", [["sessions"], ["import", "s", "-"], ["sql", "SELECT 1"]])
def test_postgresql_without_the_driver_is_one_line_from_the_cli(args: list[str]) -> None:
    argv = ["checkpointdb", "--db", "postgresql://agent@db.invalid/agents", *args]
    result = _without_psycopg(f"from checkpointdb.cli import main\nsys.argv = {argv!r}\nmain()\n")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"Error: {NEEDS_EXTRA}"]


def test_a_search_path_schema_that_does_not_exist_is_one_line() -> None:
    _postgres_or_skip()
    schema = f"nosuchschema_{uuid.uuid4().hex[:8]}"
    separator = "&" if "?" in POSTGRES_URL else "?"
    url = f"{POSTGRES_URL}{separator}options={quote(f'-csearch_path={schema}')}"
    for options in ({}, {"read_only": True}, {"create_in_existing": True}):
        with pytest.raises(NoStoreError) as refused:
            CheckpointStore(url, **options)
        assert f"CREATE SCHEMA {schema};" in str(refused.value)
        assert "\n" not in str(refused.value)
    for args in (["sessions"], ["import", "s", "-"], ["db", "upgrade"]):
        result = invoke("--db", url, *args, input=ENTRIES)
        assert result.exit_code == 1, args
        assert f"schema '{schema}'" in one_error_line(result)
    assert _postgres(POSTGRES_URL, f"SELECT 1 FROM pg_namespace WHERE nspname = '{schema}'") == []
