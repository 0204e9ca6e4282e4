"""The Alembic history: one head, reversible with data, and in step with the models."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.operations import Operations
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from checkpointdb import CheckpointStore
from checkpointdb.engine import Database, resolve_url
from checkpointdb.migrate import (
    alembic_config,
    downgrade,
    head_revision,
    known_revisions,
    locked_connection,
    upgrade,
)
from checkpointdb.models import Base
from checkpointdb.repository import Repository

REPO_ROOT = Path(__file__).resolve().parents[1]


def _open(url: str) -> tuple[Database, Repository]:
    db = Database(resolve_url(url))
    return db, Repository(db.engine.dialect)


def test_history_has_exactly_one_head() -> None:
    scripts = ScriptDirectory.from_config(alembic_config())
    assert len(scripts.get_heads()) == 1


def test_known_revisions_are_the_alembic_history_in_order() -> None:
    scripts = ScriptDirectory.from_config(alembic_config())
    walked = [rev.revision for rev in scripts.walk_revisions()]
    walked.reverse()
    assert tuple(walked) == known_revisions()
    assert scripts.get_current_head() == head_revision()


def test_models_and_migrations_agree(backend_url: str) -> None:
    db, repo = _open(backend_url)
    try:
        upgrade(db, repo)
        with db.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "target_metadata": Base.metadata}
            )
            diff = compare_metadata(context, Base.metadata)
        assert diff == []
    finally:
        db.dispose()


def _fill(url: str) -> dict[str, int]:
    with CheckpointStore(url) as store:
        for session in ("alpha", "beta:1"):
            mgr = store.manager(session, compress_after=None, max_checkpoints=None)
            for i in range(25):
                mgr.create(f"step-{i % 4}", {"i": i, "nested": {"ü": [i, None]}})
        return {info.id: info.checkpoint_count for info in store.sessions()}


def test_base_head_base_head_with_rows(backend_url: str) -> None:
    counts = _fill(backend_url)
    assert counts == {"alpha": 25, "beta:1": 25}
    db, repo = _open(backend_url)
    try:
        # Every step down to an older revision and back keeps the rows.
        for older in reversed(known_revisions()[:-1]):
            downgrade(db, repo, older)
            upgrade(db, repo)
            with CheckpointStore(backend_url, auto_upgrade=False) as store:
                assert {i.id: i.checkpoint_count for i in store.sessions()} == counts
        downgrade(db, repo, "base")
        with db.connect() as connection:
            tables = set(inspect(connection).get_table_names())
        assert not tables & {"sessions", "checkpoints"}
        upgrade(db, repo)
    finally:
        db.dispose()
    with CheckpointStore(backend_url, auto_upgrade=False) as store:
        assert store.sessions() == []
        assert store.schema_revision() == head_revision()
    assert _fill(backend_url) == counts


def test_rebuilding_a_parent_table_keeps_its_children(sqlite_path: Path) -> None:
    """Batch mode recreates tables; with foreign keys on, the cascade would empty checkpoints."""
    url = str(sqlite_path)
    _fill(url)
    db, repo = _open(url)
    try:
        with locked_connection(db, repo) as connection:
            operations = Operations(MigrationContext.configure(connection))
            with operations.batch_alter_table("sessions", recreate="always"):
                pass
    finally:
        db.dispose()
    with CheckpointStore(url) as store:
        assert sum(info.checkpoint_count for info in store.sessions()) == 50
        assert len(store.manager("alpha").get_all()) == 25


def test_alembic_command_from_repo_root_uses_checkpointdb_url(tmp_path: Path) -> None:
    target = tmp_path / "from-cli.db"
    env = {**os.environ, "CHECKPOINTDB_URL": str(target)}
    alembic = Path(sys.executable).with_name("alembic")
    result = subprocess.run(
        [str(alembic), "upgrade", "head"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert target.stat().st_mode & 0o777 == 0o600
    with CheckpointStore(target, auto_upgrade=False) as store:
        assert store.schema_revision() == head_revision()
    current = subprocess.run(
        [str(alembic), "current"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert head_revision() in current.stdout


@pytest.mark.parametrize("older", known_revisions()[:-1])
def test_older_database_is_upgraded_on_open(backend_url: str, older: str) -> None:
    counts = _fill(backend_url)
    db, repo = _open(backend_url)
    try:
        downgrade(db, repo, older)
    finally:
        db.dispose()
    with CheckpointStore(backend_url) as store:
        assert store.schema_revision() == head_revision()
        assert {i.id: i.checkpoint_count for i in store.sessions()} == counts
