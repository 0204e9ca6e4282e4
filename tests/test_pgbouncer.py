"""The store through PgBouncer in transaction pooling mode.

Each transaction may run on another server connection, and server
connections are shared with other clients: nothing the store relies on may
live in the session (startup options, SET, prepared statements, session
advisory locks). Every test here gets a fresh database reached through the
PgBouncer the ``pgbouncer`` fixture started; the model test, the
multi-process tests, the busy path and the schema upgrades run through it too
(tests/test_model.py, tests/test_postgres.py, tests/test_upgrade.py).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from click.testing import CliRunner
from conftest import POSTGRES_URL
from sqlalchemy.engine import make_url

from checkpointdb import CheckpointStore, ReadOnlyStoreError
from checkpointdb.cli import cli
from checkpointdb.migrate import head_revision

POOLED = pytest.mark.parametrize("postgres_url", ["pgbouncer"], indirect=True)
BOTH_WAYS = pytest.mark.parametrize("postgres_url", ["direct", "pgbouncer"], indirect=True)


def _connect(url: str) -> psycopg.Connection[Any]:
    """A plain psycopg client of ``url`` that prepares nothing (a pooler cannot keep it)."""
    parsed = make_url(url)
    return psycopg.connect(
        **parsed.translate_connect_args(database="dbname", username="user"),
        **parsed.query,
        autocommit=True,
        prepare_threshold=None,
    )


def _utc_text(moment: datetime) -> str:
    """``moment`` as the views print it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@POOLED
def test_a_store_creates_its_schema_through_pgbouncer_and_reopens_it(postgres_url: str) -> None:
    with CheckpointStore(postgres_url) as store:
        assert store.schema_revision() == head_revision()
        created = store.manager("s").create("first", {"n": 1})
    with CheckpointStore(postgres_url, auto_upgrade=False) as store:
        assert store.schema_revision() == head_revision()
        assert store.manager("s").get_latest() == created
    with CheckpointStore(postgres_url, read_only=True) as reader:
        assert [cp.id for cp in reader.manager("s")] == ["s:1"]
        with pytest.raises(ReadOnlyStoreError):
            reader.manager("s").create("second", {})
    with _connect(postgres_url) as client:
        (count,) = client.execute("SELECT count(*) FROM alembic_version").fetchone() or (0,)
    assert count == 1


@POOLED
def test_reads_forks_exports_and_compaction_work_through_pgbouncer(postgres_url: str) -> None:
    with CheckpointStore(postgres_url) as store:
        manager = store.manager("s", max_checkpoints=None, compress_after=None, keep_recent=1)
        for index in range(6):
            manager.create("plan" if index % 2 else "tool", {"i": index}, {"run": f"r{index % 3}"})

        third = manager.get("s:3")
        assert third is not None and third.data == {"i": 2}
        assert [cp.id for cp in manager.find(name="plan")] == ["s:6", "s:4", "s:2"]  # newest first
        assert [cp.id for cp in store.find(metadata={"run": "r0"})] == ["s:4", "s:1"]
        assert [cp.id for cp in manager.lineage("s:3")] == ["s:1", "s:2", "s:3"]

        fork = manager.fork("s:5", "t", history="all")
        assert [cp.data for cp in fork] == [{"i": i} for i in range(5)]
        assert store.session("t").forked_from == "s:5"  # type: ignore[union-attr]

        exported = json.loads(manager.export())
        assert [entry["id"] for entry in exported] == [f"s:{seq}" for seq in range(1, 7)]
        copy = store.manager("copy", max_checkpoints=None, compress_after=None)
        assert copy.import_checkpoints(manager.export()) == 6
        assert [cp.data for cp in copy] == [cp.data for cp in manager]

        report = manager.compact()
        # Kept: the first, the newest, and then the newest of each name.
        assert report.removed == ["s:2", "s:3"]
        assert [cp.id for cp in manager] == ["s:1", "s:4", "s:5", "s:6"]
        assert store.vacuum() is not None
        assert {info.id: info.checkpoint_count for info in store.sessions()} == {
            "copy": 6,
            "s": 4,
            "t": 5,
        }


@POOLED
def test_the_cli_reads_and_writes_through_pgbouncer(postgres_url: str) -> None:
    with CheckpointStore(postgres_url) as store:
        store.manager("s").create("first", {"n": 1})
    runner = CliRunner()
    listed = runner.invoke(cli, ["--db", postgres_url, "list", "s", "--json"])
    assert listed.exit_code == 0, listed.output
    assert [row["id"] for row in json.loads(listed.output)] == ["s:1"]
    forked = runner.invoke(cli, ["--db", postgres_url, "fork", "s:1", "t"])
    assert forked.exit_code == 0, forked.output
    with CheckpointStore(postgres_url) as store:
        assert [cp.data for cp in store.manager("t")] == [{"n": 1}]
    # `sql` prepares the query (to allow one statement): twice, in case the
    # second lands on the server connection the first used.
    for _ in range(2):
        counted = runner.invoke(
            cli, ["--db", postgres_url, "sql", "--json", "SELECT count(*) AS n FROM checkpoints"]
        )
        assert counted.exit_code == 0, counted.output
        assert json.loads(counted.output)["rows"] == [[2]]


@POOLED
def test_a_timezone_another_client_left_on_a_pooled_server_connection_does_not_change_times(
    postgres_url: str,
) -> None:
    with CheckpointStore(postgres_url) as store, _connect(postgres_url) as other:
        manager = store.manager("s")
        first = manager.create("first", {})
        # Outside a transaction: the setting stays on the server connection,
        # which PgBouncer hands to the store's next transaction.
        other.execute("SET timezone = 'Asia/Tokyo'")
        assert other.execute("SHOW timezone").fetchone() == ("Asia/Tokyo",)
        second = manager.create("second", {})
        for created, read in zip((first, second), manager.get_all(), strict=True):
            assert read.timestamp == created.timestamp
            assert read.timestamp.tzinfo is UTC
        hour_ago = datetime.now(UTC) - timedelta(hours=1)
        assert [cp.id for cp in manager.get_since(hour_ago)] == ["s:1", "s:2"]
        viewed = other.execute("SELECT created_at FROM checkpoint_view ORDER BY seq").fetchall()
        assert viewed == [(_utc_text(first.timestamp),), (_utc_text(second.timestamp),)]


def _in_tokyo(url: str) -> str:
    """``url`` with every new connection's TimeZone Asia/Tokyo, without the store's say.

    Direct: the URL's own startup options. Through PgBouncer (which refuses
    options): the test database's default.
    """
    parsed = make_url(url)
    options = parsed.query.get("options")
    if isinstance(options, str):
        base = url.split("?", 1)[0]
        return f"{base}?options={quote(f'{options} -c TimeZone=Asia/Tokyo')}"
    # Directly, before PgBouncer opens a server connection to the database.
    with _connect(POSTGRES_URL) as admin:
        admin.execute(f"ALTER DATABASE {parsed.database} SET timezone = 'Asia/Tokyo'")
    return url


@BOTH_WAYS
def test_times_come_back_utc_whatever_the_sessions_timezone(postgres_url: str) -> None:
    url = _in_tokyo(postgres_url)
    with _connect(url) as client:
        assert client.execute("SHOW timezone").fetchone() == ("Asia/Tokyo",)
    with CheckpointStore(url) as store:
        manager = store.manager("s")
        created = manager.create("first", {})
        latest = manager.get_latest()
        assert latest is not None
        assert latest.timestamp == created.timestamp
        assert latest.timestamp.tzinfo is UTC
        start = created.timestamp - timedelta(seconds=1)
        assert [cp.id for cp in manager.get_between(start, created.timestamp)] == ["s:1"]
        (info,) = store.sessions()
        assert info.created_at == created.timestamp and info.created_at.tzinfo is UTC
    with _connect(url) as client:
        viewed = client.execute("SELECT created_at FROM checkpoint_view").fetchall()
    assert viewed == [(_utc_text(created.timestamp),)]


@BOTH_WAYS
def test_no_setting_of_the_store_outlives_its_transaction(postgres_url: str) -> None:
    """lock_timeout holds in the store's writes only: a pooled server connection goes on clean."""
    with CheckpointStore(postgres_url, busy_timeout=7) as store:
        store.manager("s").create("first", {})
        raw = store.context().db.checkout()
        try:
            cursor = raw.cursor()
            cursor.execute("SHOW lock_timeout")
            after = cursor.fetchone()
            raw.rollback()
        finally:
            store.context().db.checkin(raw)
        with store.context().db.transaction(write=True) as write:
            write.execute("SHOW lock_timeout")
            during = write.fetchone()
    assert during == ("7s",)
    assert after == ("0",)
