"""The statement tracer: ``CheckpointStore(..., trace=callable)`` sees what the store runs."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import pytest
from async_facade import STORE_FLAVOURS

from checkpointdb import CheckpointStore
from checkpointdb.repository import Repository


def _matches(traced: str, compiled: str, dialect: str) -> bool:
    """Whether a traced statement is this compiled one (SQLite reports the values bound in)."""
    if dialect == "postgresql":
        return traced == compiled
    pattern = re.sub(r":\w+", lambda _: ".*?", re.escape(compiled))
    return re.fullmatch(pattern, traced, re.DOTALL) is not None


def _ran_statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the SQL of every statement the repository runs from now on."""
    ran: list[str] = []
    bound = Repository._bound

    def recording(stmt: Any, params: dict[str, Any]) -> Any:
        # Every statement is bound before it runs, alone or sent with others.
        ran.append(stmt.sql)
        return bound(stmt, params)

    monkeypatch.setattr(Repository, "_bound", staticmethod(recording))
    return ran


def _all_seen_in_order(ran: list[str], traced: list[str], dialect: str) -> None:
    position = 0
    for compiled in ran:
        while not _matches(traced[position], compiled, dialect):
            position += 1
            assert position < len(traced), f"not traced: {compiled}"
        position += 1


@pytest.mark.parametrize("flavour", list(STORE_FLAVOURS))
def test_the_tracer_sees_every_statement_of_a_create(
    backend_url: str, flavour: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    traced: list[str] = []
    store = STORE_FLAVOURS[flavour](backend_url, trace=traced.append)
    try:
        mgr = store.manager("s", max_checkpoints=3, compress_after=2, keep_recent=1)
        mgr.create("warm", {"i": 0})  # opening and the first write are traced too
        traced.clear()
        ran = _ran_statements(monkeypatch)
        mgr.create("step", {"i": 1, "secret": "only in the trace on SQLite"})
        mgr.create("step", {"i": 2})  # over compress_after: compaction's statements too
        assert len(ran) >= 5
        assert any(sql.startswith("DELETE FROM checkpoints") for sql in ran)
        _all_seen_in_order(ran, traced, store.dialect)
        if store.dialect == "sqlite":
            assert traced[0] == "BEGIN IMMEDIATE"
            assert traced.count("COMMIT") == 2
            assert any("only in the trace on SQLite" in text for text in traced)
    finally:
        store.close()


def test_the_tracer_sees_reads_forks_and_streamed_finds(
    backend_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    traced: list[str] = []
    with CheckpointStore(backend_url, trace=traced.append) as tracing:
        mgr = tracing.manager("s")
        ran = _ran_statements(monkeypatch)
        mgr.create_many([("a", {}), ("b", {}), ("a", {})])
        mgr.fork("s:3", "t", history="all")
        assert [cp.id for cp in mgr.lineage("s:3")] == ["s:1", "s:2", "s:3"]
        assert len(list(mgr)) == 3
        assert [cp.id for cp in mgr.find(name="a")] == ["s:3", "s:1"]  # newest first
        _all_seen_in_order(ran, traced, tracing.dialect)
        # find() compiles its query per filter and runs it (on PostgreSQL) on a
        # server-side cursor: the last statement seen, but for its COMMIT, is that one.
        statements = [text for text in traced if text not in ("BEGIN", "COMMIT", "ROLLBACK")]
        assert statements[-1].startswith("SELECT checkpoints.seq, checkpoints.name")
        assert "checkpoints.name = " in statements[-1]


def test_a_tracer_that_raises_does_not_stop_the_store(backend_url: str) -> None:
    def broken(statement: str) -> None:
        raise RuntimeError("tracer bug")

    with CheckpointStore(backend_url, trace=broken) as store:
        mgr = store.manager("s")
        mgr.create("a", {"x": 1})
        assert [cp.data for cp in mgr] == [{"x": 1}]


def test_a_logger_as_tracer_logs_each_statement_at_debug(
    backend_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    trace: Callable[[str], object] = logging.getLogger("checkpointdb.sql").debug
    with (
        CheckpointStore(backend_url, trace=trace) as store,
        caplog.at_level(logging.DEBUG, logger="checkpointdb.sql"),
    ):
        store.manager("s").create("a", {})
    logged = [record.getMessage() for record in caplog.records if record.name == "checkpointdb.sql"]
    assert any(text.startswith("INSERT INTO checkpoints") for text in logged)


def test_without_a_tracer_postgresql_cursors_are_the_drivers_own(postgres_url: str) -> None:
    import psycopg

    # The transaction hands out its own wrapper; the driver's cursor is inside it.
    with CheckpointStore(postgres_url) as store, store.context().db.transaction() as cursor:
        assert type(cursor._cursor) is psycopg.Cursor
    tracing = CheckpointStore(postgres_url, trace=lambda statement: None)
    with tracing, tracing.context().db.transaction() as cursor:
        assert type(cursor._cursor) is not psycopg.Cursor
        assert isinstance(cursor._cursor, psycopg.Cursor)
