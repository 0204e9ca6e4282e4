"""A database from revision 1 (the first release) upgrades in place and loses nothing."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from conftest import BACKENDS

from checkpointdb import CheckpointStore, SchemaOutOfDateError
from checkpointdb.cli import cli
from checkpointdb.engine import Database, resolve_url
from checkpointdb.migrate import downgrade, head_revision, upgrade
from checkpointdb.repository import Repository
from checkpointdb.sqltypes import JSONDocument, UTCDateTime

REVISION_1 = "0001"

_sessions = sa.table(
    "sessions",
    sa.column("id", sa.String),
    sa.column("created_at", UTCDateTime()),
    sa.column("updated_at", UTCDateTime()),
    sa.column("last_seq", sa.BigInteger),
    sa.column("checkpoint_count", sa.Integer),
    sa.column("metadata", JSONDocument()),
)
_checkpoints = sa.table(
    "checkpoints",
    sa.column("session_id", sa.String),
    sa.column("seq", sa.BigInteger),
    sa.column("name", sa.String),
    sa.column("created_at", UTCDateTime()),
    sa.column("data", JSONDocument()),
    sa.column("metadata", JSONDocument()),
)


def _build_revision_1(url: str) -> dict[str, list[dict[str, Any]]]:
    """A revision-1 database with rows written in revision 1's shape, as the first release did."""
    rng = random.Random(7)
    db = Database(resolve_url(url))
    expected: dict[str, list[dict[str, Any]]] = {}
    try:
        upgrade(db, Repository(db.engine.dialect), REVISION_1)
        start = datetime(2026, 1, 1, tzinfo=UTC)
        with db.connect() as conn, conn.begin():
            for index, session in enumerate(["agent:1", "ünï:çødé", "planner", "x" * 200]):
                count = 50 + 40 * index
                seqs = sorted(rng.sample(range(1, count * 2), count))  # compaction left gaps
                rows = []
                for seq in seqs:
                    rows.append(
                        {
                            "session_id": session,
                            "seq": seq,
                            "name": rng.choice(["plan", "tool_done", "réport", "'; --"]),
                            "created_at": start + timedelta(seconds=seq, microseconds=seq * 7),
                            "data": {
                                "step": seq,
                                "text": "ü✓" * rng.randint(0, 20),
                                "nested": {"list": [1, 2.5, None, True, {"deep": ["x"]}]},
                                "big": 2**60,
                                "float": rng.random() * 1e20,
                            },
                            "metadata": {"run": f"r{seq % 3}"},
                        }
                    )
                conn.execute(
                    sa.insert(_sessions).values(
                        id=session,
                        created_at=start,
                        updated_at=start + timedelta(days=1),
                        last_seq=seqs[-1] + 3,
                        checkpoint_count=len(seqs),
                        metadata={},
                    )
                )
                conn.execute(sa.insert(_checkpoints), rows)
                expected[session] = rows
    finally:
        db.dispose()
    return expected


def _size(value: dict[str, Any]) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def _check_everything_kept(
    store: CheckpointStore, expected: dict[str, list[dict[str, Any]]]
) -> None:
    assert store.schema_revision() == head_revision()
    infos = {info.id: info for info in store.sessions()}
    assert set(infos) == set(expected)
    for session, rows in expected.items():
        stored = list(store.manager(session))
        assert [cp.id for cp in stored] == [f"{session}:{row['seq']}" for row in rows]
        for cp, row in zip(stored, rows, strict=True):
            assert (cp.name, cp.timestamp, cp.data, cp.metadata, cp.pinned) == (
                row["name"],
                row["created_at"],
                row["data"],
                row["metadata"],
                False,
            )
        sizes = sum(_size(row["data"]) + _size(row["metadata"]) for row in rows)
        assert infos[session].payload_bytes == sizes
        assert infos[session].checkpoint_count == len(rows)
        assert store.manager(session).get_summary()["payload_bytes"] == sizes


def test_revision_1_database_upgrades_on_open_losing_nothing(backend_url: str) -> None:
    expected = _build_revision_1(backend_url)
    with CheckpointStore(backend_url) as store:
        _check_everything_kept(store, expected)
        mgr = store.manager("agent:1")
        last_seq = max(row["seq"] for row in expected["agent:1"]) + 3
        assert mgr.create("after-upgrade", {"ok": True}).id == f"agent:1:{last_seq + 1}"


@pytest.mark.parametrize("backend", [*BACKENDS, "pgbouncer"], indirect=True)
def test_downgrade_to_revision_1_and_back_loses_nothing(backend_url: str) -> None:
    expected = _build_revision_1(backend_url)
    CheckpointStore(backend_url).close()
    db = Database(resolve_url(backend_url))
    try:
        repository = Repository(db.engine.dialect)
        downgrade(db, repository, REVISION_1)
        with db.connect() as conn:
            count = conn.execute(sa.text("SELECT count(*) FROM checkpoints")).scalar()
        assert count == sum(len(rows) for rows in expected.values())
        upgrade(db, repository)
    finally:
        db.dispose()
    with CheckpointStore(backend_url, auto_upgrade=False) as store:
        _check_everything_kept(store, expected)


@pytest.mark.parametrize("backend", [*BACKENDS, "pgbouncer"], indirect=True)
def test_cli_db_upgrade_upgrades_a_revision_1_database(backend_url: str) -> None:
    expected = _build_revision_1(backend_url)
    try:
        CheckpointStore(backend_url, auto_upgrade=False)
    except SchemaOutOfDateError as exc:
        assert "db upgrade" in str(exc)
    else:
        raise AssertionError("an out-of-date database opened with auto_upgrade=False")
    result = CliRunner().invoke(cli, ["--db", backend_url, "db", "upgrade"])
    assert result.exit_code == 0, result.output
    with CheckpointStore(backend_url, auto_upgrade=False) as store:
        _check_everything_kept(store, expected)


def test_revision_3_database_gets_parent_links_and_downgrades(backend_url: str) -> None:
    with CheckpointStore(backend_url) as store:
        mgr = store.manager("s", max_checkpoints=None, compress_after=None)
        for i in range(6):
            mgr.create("n", {"i": i})
        before = [cp.to_dict() for cp in mgr.get_all()]
    db = Database(resolve_url(backend_url))
    try:
        repository = Repository(db.engine.dialect)
        downgrade(db, repository, "0003")
        with db.connect() as conn, conn.begin():
            conn.execute(sa.text("DELETE FROM checkpoints WHERE seq IN (2, 5)"))
            conn.execute(
                sa.text("UPDATE sessions SET checkpoint_count = 4, payload_bytes = payload_bytes")
            )
        upgrade(db, repository)
    finally:
        db.dispose()
    with CheckpointStore(backend_url, auto_upgrade=False) as store:
        stored = store.manager("s").get_all()
        # Each row's parent is the next lower live seq; ids and payloads intact.
        assert [(cp.id, cp.parent_id) for cp in stored] == [
            ("s:1", None),
            ("s:3", "s:1"),
            ("s:4", "s:3"),
            ("s:6", "s:4"),
        ]
        kept = [entry for entry in before if entry["id"] not in ("s:2", "s:5")]
        assert [(cp.id, cp.data, cp.timestamp.isoformat()) for cp in stored] == [
            (e["id"], e["data"], e["timestamp"]) for e in kept
        ]
        assert store.session("s").last_seq == 6
