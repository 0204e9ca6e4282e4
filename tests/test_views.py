"""checkpoint_view and session_view: same columns on both backends, read-only, migrated."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import inspect

from checkpointdb import CheckpointStore
from checkpointdb.engine import Database, resolve_url
from checkpointdb.migrate import downgrade, head_revision, locked_connection, upgrade
from checkpointdb.readonly import run_read_only
from checkpointdb.repository import Repository

REPO_ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT_VIEW_COLUMNS = [
    "id",
    "session_id",
    "seq",
    "parent_id",
    "name",
    "created_at",
    "payload_bytes",
    "pinned",
    "data",
    "metadata",
]
SESSION_VIEW_COLUMNS = [
    "id",
    "checkpoint_count",
    "last_seq",
    "payload_bytes",
    "created_at",
    "updated_at",
    "first_checkpoint_at",
    "last_checkpoint_at",
    "metadata",
    "forked_from",
    "max_checkpoints",
    "compress_after",
    "keep_recent",
]
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
T0 = datetime(2026, 3, 1, 9, 30, 0, 250, tzinfo=UTC)


def iso(moment: datetime) -> str:
    """The text the views show for a time."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def json_bytes(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def as_json(value: Any) -> Any:
    """A JSON cell: text on SQLite, already parsed on PostgreSQL."""
    return json.loads(value) if isinstance(value, str) else value


def rows_of(store: CheckpointStore, query: str) -> tuple[list[str], list[dict[str, Any]]]:
    columns, rows = run_read_only(store, query)
    return columns, [dict(zip(columns, row, strict=True)) for row in rows]


def fill(store: CheckpointStore) -> None:
    mgr = store.manager("team:a", max_checkpoints=None, compress_after=None)
    entries = [
        {
            "id": f"x:{i}",
            "name": name,
            "timestamp": (T0 + timedelta(minutes=i)).isoformat(),
            "data": {"step": i, "note": "zürich ✓"},
            "metadata": {"run": "r1"},
        }
        for i, name in enumerate(["plan", "tool_done", "tool_done"])
    ]
    mgr.import_checkpoints(json.dumps(entries))
    mgr.pin("team:a:2")
    empty = store.manager("empty")
    empty.create("only", {})
    empty.clear()


def view_names(url: str) -> set[str]:
    db = Database(resolve_url(url))
    try:
        with db.connect() as connection:
            return set(inspect(connection).get_view_names())
    finally:
        db.dispose()


def test_views_have_the_documented_columns(store: CheckpointStore) -> None:
    fill(store)
    columns, _ = rows_of(store, "SELECT * FROM checkpoint_view")
    assert columns == CHECKPOINT_VIEW_COLUMNS
    columns, _ = rows_of(store, "SELECT * FROM session_view")
    assert columns == SESSION_VIEW_COLUMNS


def test_checkpoint_view_shows_every_checkpoint_as_the_api_does(store: CheckpointStore) -> None:
    fill(store)
    _, rows = rows_of(store, "SELECT * FROM checkpoint_view ORDER BY session_id, seq")
    checkpoints = store.manager("team:a").get_all()
    assert [row["id"] for row in rows] == [cp.id for cp in checkpoints]
    for row, cp in zip(rows, checkpoints, strict=True):
        assert (row["session_id"], row["seq"], row["name"]) == (cp.session_id, cp.seq, cp.name)
        assert row["created_at"] == iso(cp.timestamp)
        assert ISO_UTC.match(row["created_at"])
        assert as_json(row["data"]) == cp.data
        assert as_json(row["metadata"]) == cp.metadata
        assert row["payload_bytes"] == json_bytes(cp.data) + json_bytes(cp.metadata)
        assert bool(row["pinned"]) == cp.pinned
    assert [bool(row["pinned"]) for row in rows] == [False, True, False]


def test_session_view_shows_counters_sizes_and_checkpoint_times(store: CheckpointStore) -> None:
    fill(store)
    _, rows = rows_of(store, "SELECT * FROM session_view ORDER BY id")
    by_id = {row["id"]: row for row in rows}
    infos = {info.id: info for info in store.sessions()}
    assert set(by_id) == set(infos) == {"empty", "team:a"}
    for session_id, row in by_id.items():
        info = infos[session_id]
        assert row["checkpoint_count"] == info.checkpoint_count
        assert row["last_seq"] == info.last_seq
        assert row["payload_bytes"] == info.payload_bytes
        assert row["created_at"] == iso(info.created_at)
        assert row["updated_at"] == iso(info.updated_at)
        assert as_json(row["metadata"]) == {}
    team = by_id["team:a"]
    assert (team["checkpoint_count"], team["last_seq"]) == (3, 3)
    assert team["first_checkpoint_at"] == iso(T0)
    assert team["last_checkpoint_at"] == iso(T0 + timedelta(minutes=2))
    assert team["payload_bytes"] == sum(
        json_bytes(cp.data) + json_bytes(cp.metadata) for cp in store.manager("team:a")
    )
    empty = by_id["empty"]
    assert (empty["checkpoint_count"], empty["last_seq"], empty["payload_bytes"]) == (0, 1, 0)
    assert empty["first_checkpoint_at"] is None and empty["last_checkpoint_at"] is None


def test_postgresql_views_show_utc_whatever_the_session_time_zone(postgres_url: str) -> None:
    import psycopg

    with CheckpointStore(postgres_url) as store:
        fill(store)
    conninfo = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo) as conn:
        conn.execute("SET TIME ZONE 'Asia/Kolkata'")
        first = conn.execute(
            "SELECT created_at FROM checkpoint_view WHERE id = 'team:a:1'"
        ).fetchone()
        session = conn.execute(
            "SELECT first_checkpoint_at FROM session_view WHERE id = 'team:a'"
        ).fetchone()
    assert first is not None and first[0] == iso(T0)
    assert session is not None and session[0] == iso(T0)


def test_views_follow_the_schema_revisions(backend_url: str) -> None:
    with CheckpointStore(backend_url) as store:
        fill(store)
    assert {"checkpoint_view", "session_view"} <= view_names(backend_url)
    db = Database(resolve_url(backend_url))
    repo = Repository(db.engine.dialect)
    try:
        downgrade(db, repo, "0002")
        assert not {"checkpoint_view", "session_view"} & view_names(backend_url)
        upgrade(db, repo)
        assert {"checkpoint_view", "session_view"} <= view_names(backend_url)
        downgrade(db, repo, "0002")
    finally:
        db.dispose()
    # Opening an older database upgrades it: the views come back, rows intact.
    with CheckpointStore(backend_url) as store:
        assert store.schema_revision() == head_revision()
        _, rows = rows_of(store, "SELECT id FROM checkpoint_view ORDER BY seq")
        assert [row["id"] for row in rows] == ["team:a:1", "team:a:2", "team:a:3"]


def test_alembic_upgrade_head_creates_the_views(backend_url: str) -> None:
    env = {**os.environ, "CHECKPOINTDB_URL": backend_url}
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
    assert {"checkpoint_view", "session_view"} <= view_names(backend_url)
    with CheckpointStore(backend_url, auto_upgrade=False) as store:
        store.manager("s").create("n", {"k": 1})
        _, rows = rows_of(store, "SELECT id, name FROM checkpoint_view")
    assert rows == [{"id": "s:1", "name": "n"}]


def test_rebuilding_a_table_in_batch_mode_keeps_the_views_working(sqlite_path: Path) -> None:
    """SQLite re-checks views when batch mode renames a rebuilt table into place."""
    url = str(sqlite_path)
    with CheckpointStore(url) as store:
        fill(store)
    db = Database(resolve_url(url))
    try:
        with locked_connection(db, Repository(db.engine.dialect)) as connection:
            operations = Operations(MigrationContext.configure(connection))
            for table in ("sessions", "checkpoints"):
                with operations.batch_alter_table(table, recreate="always"):
                    pass
    finally:
        db.dispose()
    with CheckpointStore(url) as store:
        _, rows = rows_of(store, "SELECT id FROM checkpoint_view ORDER BY seq")
        assert [row["id"] for row in rows] == ["team:a:1", "team:a:2", "team:a:3"]
        _, rows = rows_of(store, "SELECT id, checkpoint_count FROM session_view ORDER BY id")
        assert rows == [
            {"id": "empty", "checkpoint_count": 0},
            {"id": "team:a", "checkpoint_count": 3},
        ]


@pytest.mark.skipif(shutil.which("sqlite3") is None, reason="no sqlite3 shell installed")
def test_the_sqlite3_shell_reads_the_views(sqlite_path: Path) -> None:
    with CheckpointStore(sqlite_path) as store:
        fill(store)
    result = subprocess.run(
        ["sqlite3", "-readonly", str(sqlite_path)],
        input="SELECT id, created_at, pinned FROM checkpoint_view ORDER BY seq;\n"
        "SELECT id, last_checkpoint_at FROM session_view ORDER BY id;\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"team:a:1|{iso(T0)}|0",
        f"team:a:2|{iso(T0 + timedelta(minutes=1))}|1",
        f"team:a:3|{iso(T0 + timedelta(minutes=2))}|0",
        "empty|",
        f"team:a|{iso(T0 + timedelta(minutes=2))}",
    ]
    with sqlite3.connect(sqlite_path) as raw:
        assert raw.execute("SELECT count(*) FROM checkpoint_view").fetchone() == (3,)
