"""Opening a store: URL forms, new/old/too-new schemas, concurrent openers, start-up cost."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

import checkpointdb.store as store_module
from checkpointdb import (
    CheckpointDBError,
    CheckpointManager,
    CheckpointStore,
    SchemaOutOfDateError,
    SchemaTooNewError,
    StoreClosedError,
)
from checkpointdb.engine import Database, describe, resolve_target, resolve_url
from checkpointdb.migrate import downgrade, head_revision, known_revisions
from checkpointdb.repository import Repository


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_new_database_is_created_at_head(store: CheckpointStore) -> None:
    assert store.schema_revision() == head_revision()
    assert store.sessions() == []


@pytest.mark.parametrize("form", ["path", "pathlib", "sqlite-url", "env", "cwd-default"])
def test_every_way_of_naming_an_sqlite_file_opens_it(
    form: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "named.db"
    monkeypatch.delenv("CHECKPOINTDB_URL", raising=False)
    if form == "path":
        store = CheckpointStore(str(target))
    elif form == "pathlib":
        store = CheckpointStore(target)
    elif form == "sqlite-url":
        store = CheckpointStore(f"sqlite:///{target}")
    elif form == "env":
        monkeypatch.setenv("CHECKPOINTDB_URL", str(target))
        store = CheckpointStore()
    else:
        monkeypatch.chdir(tmp_path)
        target = tmp_path / "checkpoints.db"
        store = CheckpointStore()
    with store:
        store.manager("s").create("a", {"x": 1})
        assert store.where == str(target)
    assert target.is_file()


def test_a_manager_without_a_store_uses_the_default_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHECKPOINTDB_URL", str(tmp_path / "default.db"))
    monkeypatch.setattr(store_module, "_default_store", None)
    mgr = CheckpointManager("default-session", max_checkpoints=10, compress_after=5)
    try:
        mgr.create("task_started", {"step": 1})
        assert mgr.store.where == str(tmp_path / "default.db")
        assert CheckpointManager("default-session").get_latest() is not None
    finally:
        mgr.store.close()


def test_newer_sqlite_database_is_refused_and_left_unchanged(sqlite_path: Path) -> None:
    with CheckpointStore(sqlite_path) as store:
        store.manager("s").create("a", {"x": 1})
    with sqlite3.connect(sqlite_path) as raw:
        raw.execute("UPDATE alembic_version SET version_num = '9999'")
    before = _sha256(sqlite_path)
    with pytest.raises(SchemaTooNewError) as excinfo:
        CheckpointStore(sqlite_path)
    assert "9999" in str(excinfo.value)
    assert str(sqlite_path) in str(excinfo.value)
    assert _sha256(sqlite_path) == before


def test_newer_postgres_database_is_refused_and_left_unchanged(postgres_url: str) -> None:
    with CheckpointStore(postgres_url) as store:
        store.manager("s").create("a", {"x": 1})
        with store._db.connect() as conn, conn.begin():
            conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(SchemaTooNewError, match="9999"):
        CheckpointStore(postgres_url)
    db = Database(resolve_url(postgres_url))
    try:
        with db.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "9999"
            assert conn.execute(text("SELECT count(*) FROM checkpoints")).scalar() == 1
    finally:
        db.dispose()


@pytest.mark.parametrize("older", known_revisions()[:-1])
def test_older_database_with_auto_upgrade_off_names_the_command(
    backend_url: str, older: str
) -> None:
    CheckpointStore(backend_url).close()
    db = Database(resolve_url(backend_url))
    try:
        downgrade(db, Repository(db.engine.dialect), older)
    finally:
        db.dispose()
    with pytest.raises(SchemaOutOfDateError) as excinfo:
        CheckpointStore(backend_url, auto_upgrade=False)
    assert "checkpointdb --db" in str(excinfo.value)
    assert "db upgrade" in str(excinfo.value)


def _open_and_write(path: str, barrier: multiprocessing.synchronize.Barrier, name: str) -> None:
    barrier.wait(timeout=30)
    with CheckpointStore(path) as store:
        store.manager(name).create("opened", {"by": name})


def test_processes_opening_a_new_file_at_once_all_succeed(tmp_path: Path) -> None:
    path = str(tmp_path / "race.db")
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_open_and_write, args=(path, barrier, f"p{i}")) for i in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    assert [proc.exitcode for proc in procs] == [0, 0, 0, 0]
    with CheckpointStore(path) as store:
        assert sorted(info.id for info in store.sessions()) == ["p0", "p1", "p2", "p3"]
        assert store.schema_revision() == head_revision()


@pytest.mark.parametrize("as_url", [False, True], ids=["path", "sqlite-url"])
def test_an_up_to_date_sqlite_store_opens_and_works_without_sqlalchemy_or_alembic(
    sqlite_path: Path, as_url: bool
) -> None:
    with CheckpointStore(sqlite_path) as store:
        store.manager("s").create("old", {"n": 0})
    target = f"sqlite:///{sqlite_path}" if as_url else str(sqlite_path)
    code = (
        "import sys\n"
        "from datetime import UTC, datetime, timedelta\n"
        "from checkpointdb import CheckpointStore\n"
        f"store = CheckpointStore({target!r})\n"
        "mgr = store.manager('s')\n"
        "new = mgr.create('a', {'n': 1}, metadata={'m': 1})\n"
        "assert mgr.get(new.id) == new and mgr.get_latest() == new\n"
        "assert [c.name for c in mgr.get_all()] == ['old', 'a'] == [c.name for c in mgr]\n"
        "assert [c.id for c in mgr.find(name='a', limit=5)] == [new.id]\n"
        "since = datetime.now(UTC) - timedelta(hours=1)\n"
        "assert [c.id for c in store.find(since=since, limit=1)] == [new.id]\n"
        "assert [s.id for s in store.sessions()] == ['s']\n"
        "store.close()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'sqlalchemy')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_asyncio_store_opens_an_sqlite_store_and_works_without_sqlalchemy(
    sqlite_path: Path,
) -> None:
    with CheckpointStore(sqlite_path) as store:
        store.manager("s").create("old", {"n": 0})
    code = (
        "import asyncio, sys\n"
        "from checkpointdb.aio import AsyncCheckpointStore\n"
        "async def main():\n"
        f"    async with AsyncCheckpointStore({str(sqlite_path)!r}) as store:\n"
        "        mgr = store.manager('s')\n"
        "        new = await mgr.create('a', {'n': 1})\n"
        "        assert await mgr.get(new.id) == new == await mgr.get_latest()\n"
        "        assert [c.name async for c in mgr] == ['old', 'a']\n"
        "        assert [c.id async for c in mgr.find(name='a', limit=5)] == [new.id]\n"
        "        assert store.where.endswith('.db')\n"
        "asyncio.run(main())\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'sqlalchemy')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("read_only", [False, True], ids=["read-write", "read-only"])
def test_the_stores_own_sqlite_connections_are_set_up_as_the_engines(
    sqlite_path: Path, read_only: bool
) -> None:
    CheckpointStore(sqlite_path).close()
    statements: list[str] = []
    db = Database(
        resolve_target(sqlite_path),
        synchronous="FULL",
        busy_timeout=7,
        read_only=read_only,
        trace=statements.append,
    )
    probe = (
        "SELECT * FROM pragma_busy_timeout, pragma_synchronous, pragma_foreign_keys, "
        "pragma_query_only, pragma_journal_mode, (SELECT 'abc' REGEXP 'b'), (SELECT floor(2.5))"
    )

    def settings() -> tuple[object, ...]:
        with db.transaction() as cursor:
            row = cursor.execute(probe).fetchone()
            return (*row, cursor.connection.isolation_level)

    try:
        assert db._engine is None
        own = settings()
        db.close_idle()
        assert db.engine is not None  # from now on, connections come from the Engine
        from_engine = settings()
    finally:
        db.dispose()
    assert own == from_engine
    assert own[:4] == (7000, 2, 1, int(read_only))
    assert statements.count(probe) == 2  # the tracer saw the probe on both connections


@pytest.mark.parametrize(
    "target",
    ["sqlite:///relative.db", "sqlite:////tmp/x/absolute.db", "sqlite+pysqlite:///a/b.db"],
)
def test_plain_sqlite_urls_read_without_sqlalchemy_name_the_same_database(target: str) -> None:
    light = resolve_target(target)
    assert type(light).__name__ == "SqliteURL"
    full = resolve_url(target)
    assert (light.database, describe(light)) == (full.database, describe(full))
    assert light.render_as_string() == full.render_as_string()


def test_an_sqlite_url_with_a_query_is_left_to_sqlalchemy(tmp_path: Path) -> None:
    with pytest.raises(CheckpointDBError, match="in-memory SQLite"):
        resolve_target("sqlite:///:memory:")
    url = resolve_target(f"sqlite:///{tmp_path}/x.db?timeout=5")
    assert type(url).__name__ == "URL"
    assert url.query == {"timeout": "5"}


def test_a_closed_store_refuses_to_work(store: CheckpointStore) -> None:
    mgr = store.manager("s")
    mgr.create("a", {})
    store.close()
    with pytest.raises(StoreClosedError):
        mgr.create("b", {})
    with pytest.raises(StoreClosedError):
        store.sessions()


def test_context_manager_closes_the_store(sqlite_path: Path) -> None:
    with CheckpointStore(sqlite_path) as store:
        store.manager("s").create("a", {})
    assert store._db.closed
    # Every connection is closed: the WAL was checkpointed into the file.
    assert not Path(f"{sqlite_path}-wal").exists() or os.path.getsize(f"{sqlite_path}-wal") == 0


def test_the_upgrade_command_in_errors_can_be_pasted(tmp_path: Path) -> None:
    import shlex

    from checkpointdb.migrate import upgrade_command

    spaced = tmp_path / "my dir" / "agent's.db"
    spaced.parent.mkdir()
    db = Database(resolve_url(spaced))
    try:
        command = upgrade_command(db)
    finally:
        db.dispose()
    assert shlex.split(command) == ["checkpointdb", "--db", str(spaced), "db", "upgrade"]
    url = "postgresql+psycopg://agent:s3cret@db.internal:5432/agents"
    remote = Database(resolve_url(url))
    try:
        command = upgrade_command(remote)
    finally:
        remote.dispose()
    assert "s3cret" not in command and "***" not in command
    assert shlex.split(command)[2] == "postgresql+psycopg://agent:PASSWORD@db.internal:5432/agents"
