"""The asyncio API: the sync API's semantics, concurrency, cancellation, and a free event loop."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import random
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import aclosing
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import test_import_export
import test_manager
import test_retention
from async_facade import open_facade_store
from conftest import _driver_url

from checkpointdb import (
    AsyncCheckpointManager,
    AsyncCheckpointStore,
    Checkpoint,
    CheckpointDBError,
    CheckpointStore,
    CorruptDatabaseError,
    NotFoundError,
    StoreBusyError,
    StoreClosedError,
)
from checkpointdb.operations import Operation, perform_together, read
from checkpointdb.repository import PAGE_SIZE

T = TypeVar("T")
NO_RETENTION: dict[str, Any] = {"max_checkpoints": None, "compress_after": None}

# Tests written for the sync API that run unchanged on the asyncio API through
# the test-only facade (those that reach into the sync store's engine do not).
SEMANTIC_TESTS = [
    (test_manager, "test_ids_are_session_and_seq_and_session_ids_may_hold_colons"),
    (test_manager, "test_checkpoint_round_trips_exactly_with_aware_utc_timestamp"),
    (test_manager, "test_returned_checkpoint_is_not_the_callers_dict"),
    (test_manager, "test_lookup_methods_follow_the_original_api"),
    (test_manager, "test_empty_session_answers_like_the_original_api"),
    (test_manager, "test_time_ranges_are_strict_since_and_inclusive_between"),
    (test_manager, "test_ordering_is_by_seq_even_when_the_clock_jumps_back"),
    (test_manager, "test_summary_has_the_original_keys_and_values"),
    (test_manager, "test_ids_never_repeat_after_clear_or_compaction"),
    (test_manager, "test_max_checkpoints_is_enforced_keeping_the_first"),
    (test_manager, "test_compaction_with_tiny_compress_after_keeps_the_first_once"),
    (test_manager, "test_explicit_compaction_dry_run_changes_nothing"),
    (test_manager, "test_iteration_streams_a_large_session_in_pages"),
    (test_manager, "test_sessions_lists_counts_and_delete_session_forgets_it"),
    (test_retention, "test_pins_do_not_count_toward_the_cap"),
    (test_retention, "test_pin_and_unpin_by_id"),
    (test_retention, "test_pins_survive_export_and_import"),
    (test_import_export, "test_export_is_the_original_format"),
    (test_import_export, "test_import_into_a_used_session_gives_fresh_ids_and_keeps_order"),
]


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(main())


async def opened(url: str, **options: Any) -> AsyncCheckpointStore:
    return await AsyncCheckpointStore.open(url, **options)


def checked_out(store: AsyncCheckpointStore) -> int:
    return store.context().db.in_use()


def payload_size(checkpoint: Checkpoint) -> int:
    return sum(
        len(json.dumps(part, ensure_ascii=False, separators=(",", ":")).encode())
        for part in (checkpoint.data, checkpoint.metadata)
    )


# -- the sync API's semantics -------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "name"), SEMANTIC_TESTS, ids=[name for _module, name in SEMANTIC_TESTS]
)
def test_manager_semantics_hold_on_the_async_api(
    module: Any, name: str, backend_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    semantic_test = getattr(module, name)
    fixtures = {"store": None, "monkeypatch": monkeypatch}
    with open_facade_store(backend_url) as store:
        fixtures["store"] = store
        wanted = inspect.signature(semantic_test).parameters
        semantic_test(**{key: fixtures[key] for key in wanted})


def test_len_cannot_await_so_count_is_the_live_count(backend_url: str) -> None:
    async def main() -> None:
        async with AsyncCheckpointStore(backend_url) as store:
            mgr = store.manager("s")
            for i in range(3):
                await mgr.create("step", {"i": i})
            assert await mgr.count() == 3
            with pytest.raises(TypeError):
                len(mgr)  # type: ignore[arg-type]
            assert [cp.seq async for cp in mgr] == [1, 2, 3]
            assert [cp.seq async for cp in mgr.iter_newest_first()] == [3, 2, 1]

    run(main)


def test_sync_and_async_apis_share_one_database(backend_url: str) -> None:
    async def main() -> None:
        async with AsyncCheckpointStore(backend_url) as store:
            mgr = store.manager("s")
            await mgr.create("a", {"from": "async"})
            with CheckpointStore(backend_url) as sync_store:
                assert sync_store.manager("s").create("b", {"from": "sync"}).id == "s:2"
            latest = await mgr.get_latest()
            assert latest is not None and latest.data == {"from": "sync"}

    run(main)


def test_callbacks_run_after_commit_and_coroutines_are_awaited(
    backend_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        async with AsyncCheckpointStore(backend_url) as store:
            mgr = store.manager("s")
            seen: list[tuple[str, int]] = []

            async def record(cp: Checkpoint) -> None:
                # Committed: another manager (another connection) counts it.
                seen.append((cp.id, await store.manager("s").count()))

            mgr.on_checkpoint(record)
            await mgr.create("a", {})
            assert seen == [("s:1", 1)]
            mgr.on_checkpoint(lambda cp: seen.append((cp.id, -1)))
            await mgr.create("b", {})
            assert seen[-1] == ("s:2", -1)

            async def explode(cp: Checkpoint) -> None:
                raise RuntimeError("async callback bug")

            mgr.on_checkpoint(explode)
            with caplog.at_level(logging.ERROR, logger="checkpointdb"):
                created = await mgr.create("c", {})
            assert await mgr.get(created.id) == created
            assert "async callback bug" in caplog.text and "Traceback" in caplog.text

    run(main)


def test_store_maintenance_and_sessions(backend_url: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with AsyncCheckpointStore(backend_url) as store:
            assert await store.schema_revision() is not None
            for session in ("a", "b"):
                mgr = store.manager(session, **NO_RETENTION)
                for i in range(4):
                    await mgr.create("step", {"i": i}, pin=i == 1)
            assert [info.id for info in await store.sessions()] == ["a", "b"]
            assert (await store.expire(timedelta(days=1))).rows_removed == 0
            report = await store.expire(timedelta(0))
            # pinned :2 and each session's newest stay
            assert report.removed == {"a": ["a:1", "a:3"], "b": ["b:1", "b:3"]}
            assert [cp.id async for cp in store.manager("a")] == ["a:2", "a:4"]
            vacuumed = await store.vacuum()
            assert vacuumed.bytes_after > 0
            assert await store.delete_session("a") == 2
            assert await store.session("a") is None
            with pytest.raises(NotFoundError, match="'a'"):
                await store.delete_session("a")
            if store.dialect == "sqlite":
                copy = await store.backup(tmp_path / "copy.db")
                with CheckpointStore(copy) as backup:
                    assert [cp.id for cp in backup.manager("b")] == ["b:2", "b:4"]
            else:
                with pytest.raises(CheckpointDBError, match="pg_dump"):
                    await store.backup(tmp_path / "copy.db")

    run(main)


def test_find_streams_pages_and_an_abandoned_find_gives_its_connection_back(
    backend_url: str,
) -> None:
    total = PAGE_SIZE + 20

    async def main() -> None:
        async with AsyncCheckpointStore(backend_url) as store:
            mgr = store.manager("s", **NO_RETENTION)
            entries = [
                {"id": f"x:{i}", "name": "n", "timestamp": "2026-01-01T00:00:00+00:00",
                 "data": {"i": i}, "metadata": {"even": i % 2 == 0}}
                for i in range(total)
            ]  # fmt: skip
            await mgr.import_checkpoints(json.dumps(entries))
            found = [cp.seq async for cp in mgr.find(metadata={"even": True}, newest_first=False)]
            assert found == list(range(1, total + 1, 2))
            assert [cp.seq async for cp in store.find(session_id="s", limit=3)] == [
                total,
                total - 1,
                total - 2,
            ]
            async with aclosing(mgr.find()) as stream:
                async for _checkpoint in stream:
                    break
            assert checked_out(store) == 0
            with pytest.raises(ValueError, match="limit"):
                mgr.find(limit=-1)  # checked when called, before any row is read
            assert await mgr.create("after", {}) is not None

    run(main)


# -- opening and closing ------------------------------------------------------------


def test_a_store_is_usable_only_while_open(backend_url: str) -> None:
    async def main() -> None:
        store = AsyncCheckpointStore(backend_url)
        mgr = store.manager("s")
        with pytest.raises(StoreClosedError, match="not open yet"):
            await mgr.create("a", {})
        async with store:
            assert (await mgr.create("a", {})).id == "s:1"
        with pytest.raises(StoreClosedError, match="closed"):
            await mgr.create("b", {})
        reopened = await AsyncCheckpointStore.open(backend_url)
        try:
            assert await reopened.manager("s").count() == 1
        finally:
            await reopened.close()

    run(main)


def test_opening_refuses_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"not a database, just notes" * 10)
    with pytest.raises(CorruptDatabaseError, match="not an SQLite database"):
        run(lambda: opened(str(path)))
    assert path.read_bytes() == b"not a database, just notes" * 10


def test_postgresql_needs_psycopg_for_asyncio(postgres_url: str) -> None:
    async def main() -> None:
        await opened(postgres_url.replace("postgresql+psycopg://", "postgresql+asyncpg://", 1))

    with pytest.raises(CheckpointDBError, match=r"postgresql\+psycopg"):
        run(main)


# -- concurrency and cancellation -----------------------------------------------------


def test_fifty_concurrent_tasks_get_contiguous_ids(backend_url: str) -> None:
    async def main() -> None:
        async with AsyncCheckpointStore(backend_url) as store:
            mgr = store.manager("s", **NO_RETENTION)
            results = await asyncio.gather(
                *(mgr.create("step", {"task": n}) for n in range(50)), return_exceptions=True
            )
            errors = [r for r in results if isinstance(r, BaseException)]
            assert errors == []
            made = [r for r in results if isinstance(r, Checkpoint)]
            assert sorted(cp.seq for cp in made) == list(range(1, 51))
            info = await store.session("s")
            assert info is not None and (info.last_seq, info.checkpoint_count) == (50, 50)
            assert {cp.data["task"] for cp in await mgr.get_all()} == set(range(50))

    run(main)


def _commits(statements: list[str]) -> int:
    return sum(1 for text in statements if text.strip().upper().startswith("COMMIT"))


def test_sqlite_writes_waiting_together_share_one_commit(sqlite_path: Path) -> None:
    async def main() -> None:
        statements: list[str] = []
        async with AsyncCheckpointStore(sqlite_path, trace=statements.append) as store:
            mgr = store.manager("s", **NO_RETENTION)
            await mgr.create("first", {})
            statements.clear()
            made = await asyncio.gather(*(mgr.create("step", {"task": n}) for n in range(50)))
            # Fifty tasks queued at once: far fewer COMMITs than creates.
            assert 1 <= _commits(statements) <= 10
            assert [cp.seq for cp in made] == list(range(2, 52))
            stored = {cp.id: cp for cp in await mgr.get_all()}
            assert all(stored[cp.id] == cp for cp in made)
            info = await store.session("s")
            assert info is not None and info.checkpoint_count == 51
            assert info.payload_bytes == sum(payload_size(cp) for cp in stored.values())

    run(main)


def test_a_write_that_fails_among_queued_writes_fails_alone(backend_url: str) -> None:
    async def main() -> None:
        async with AsyncCheckpointStore(backend_url) as store:
            mgr = store.manager("s", **NO_RETENTION)
            await mgr.create("root", {})
            creates = [
                mgr.create("bad", {"n": n}, parent="s:999")
                if n % 5 == 0
                else mgr.create("good", {"n": n}, parent="s:1")
                for n in range(30)
            ]
            results = await asyncio.gather(*creates, return_exceptions=True)
            failed = [n for n, r in enumerate(results) if isinstance(r, NotFoundError)]
            assert failed == list(range(0, 30, 5))
            made = [r for r in results if isinstance(r, Checkpoint)]
            assert len(made) == 24 and all(cp.parent_id == "s:1" for cp in made)
            stored = await mgr.get_all()
            # Exactly the acknowledged creates are stored, each once.
            assert sorted(cp.id for cp in stored) == sorted(["s:1", *(cp.id for cp in made)])
            assert [cp.seq for cp in stored] == list(range(1, 26))

    run(main)


def test_writes_run_together_land_all_or_none(sqlite_path: Path) -> None:
    store = CheckpointStore(sqlite_path)
    try:
        mgr = store.manager("s", **NO_RETENTION)
        db = store.context().db
        first = mgr._create("one", {"n": 1}, None, False, None)
        failing = mgr._create("two", {"n": 2}, None, False, "s:404")
        assert isinstance(first, Operation) and isinstance(failing, Operation)
        assert perform_together([first, failing], db) is None
        assert mgr.get_all() == [] and store.session("s") is None
        second = mgr._create("two", {"n": 2}, None, False, None)
        assert isinstance(second, Operation)
        results = perform_together([first, second], db)
        assert results is not None
        made = [plan.finish(result) for plan, result in zip([first, second], results, strict=True)]
        assert [(cp.seq, cp.name) for cp in made] == [(1, "one"), (2, "two")]
        assert mgr.get_all() == made
    finally:
        store.close()


async def _cancel_creates_at_random_points(
    mgr: AsyncCheckpointManager, rounds: int, rng: random.Random
) -> tuple[list[Checkpoint], int]:
    """Start creates and cancel some of them at random moments; returns what completed."""
    started = time.perf_counter()
    for _ in range(5):
        await mgr.create("warmup", {"i": -1}, {"round": -1})
    one_create = (time.perf_counter() - started) / 5
    returned: list[Checkpoint] = []
    cancelled = 0
    for round_number in range(rounds):
        tasks = [
            asyncio.create_task(mgr.create("step", {"i": round_number}, {"round": round_number}))
            for _ in range(rng.randint(1, 3))
        ]
        if rng.random() < 0.5:
            await asyncio.sleep(rng.uniform(0, 2 * one_create))
        else:
            for _ in range(rng.randrange(30)):
                await asyncio.sleep(0)
        for task in tasks:
            if rng.random() < 0.8:
                task.cancel()
        for task in tasks:
            try:
                returned.append(await task)
            except asyncio.CancelledError:
                cancelled += 1
    return returned, cancelled


@pytest.mark.parametrize("retention", ["none", "compacting"])
def test_a_cancelled_create_leaves_the_whole_checkpoint_or_none(
    backend_url: str, retention: str
) -> None:
    rng = random.Random(f"cancel-{retention}")
    settings: dict[str, Any] = (
        NO_RETENTION if retention == "none" else {"compress_after": 6, "keep_recent": 2}
    )

    async def main() -> None:
        async with AsyncCheckpointStore(backend_url) as store:
            mgr = store.manager("s", **settings)
            returned, cancelled = await _cancel_creates_at_random_points(mgr, 150, rng)
            # Both outcomes happened: cancels before and after the commit.
            assert cancelled > 20 and len(returned) > 20
            stored = await mgr.get_all()
            info = await store.session("s")
            assert info is not None
            assert info.checkpoint_count == len(stored) == await mgr.count()
            assert info.payload_bytes == sum(payload_size(cp) for cp in stored)
            assert all(cp.data == {"i": cp.metadata["round"]} for cp in stored)
            if retention == "none":
                # Every create that took a seq and was cancelled gave it back.
                assert [cp.seq for cp in stored] == list(range(1, info.last_seq + 1))
                assert {cp.id for cp in returned} <= {cp.id for cp in stored}
            assert max(cp.seq for cp in returned) <= info.last_seq
            assert checked_out(store) == 0
            following = await mgr.create("after", {})
            assert following.seq == info.last_seq + 1

    run(main)
    if not backend_url.startswith("postgresql"):
        with sqlite3.connect(backend_url) as check:
            assert check.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            assert check.execute("PRAGMA foreign_key_check").fetchall() == []


# -- the event loop never waits on the database -----------------------------------------


async def _max_loop_lag_during(work: Awaitable[T], tick: float = 0.005) -> tuple[T, float]:
    """Run ``work`` while a heartbeat measures the longest the loop failed to wake it."""
    worst = 0.0
    done = False

    async def heartbeat() -> None:
        nonlocal worst
        while not done:
            before = time.perf_counter()
            await asyncio.sleep(tick)
            worst = max(worst, time.perf_counter() - before - tick)

    beat = asyncio.create_task(heartbeat())
    await asyncio.sleep(2 * tick)  # the heartbeat is ticking before the work starts
    try:
        result = await work
    finally:
        done = True
        await beat
    return result, worst


def _hold_write_lock(url: str, session: str, seconds: float, held: threading.Event) -> None:
    """Hold the lock a create needs (SQLite: the write lock; PostgreSQL: the session row)."""
    if url.startswith("postgresql"):
        import psycopg

        with psycopg.connect(_driver_url(url)) as conn:
            conn.execute("SELECT 1 FROM sessions WHERE id = %s FOR UPDATE", (session,))
            held.set()
            time.sleep(seconds)
        return
    conn = sqlite3.connect(url, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        held.set()
        time.sleep(seconds)
        conn.execute("COMMIT")
    finally:
        conn.close()


def test_waiting_for_another_writers_lock_does_not_block_the_loop(backend_url: str) -> None:
    hold = 1.0

    async def main() -> None:
        async with AsyncCheckpointStore(backend_url) as store:
            mgr = store.manager("s")
            await mgr.create("first", {})
            held = threading.Event()
            holder = threading.Thread(target=_hold_write_lock, args=(backend_url, "s", hold, held))
            holder.start()
            await asyncio.to_thread(held.wait)
            started = time.perf_counter()
            created, lag = await _max_loop_lag_during(mgr.create("second", {}))
            waited = time.perf_counter() - started
            await asyncio.to_thread(holder.join)
            assert created.seq == 2
            assert waited > hold * 0.5  # it did wait for the lock ...
            assert lag < 0.2  # ... and the loop kept running meanwhile

    run(main)


def test_sqlite_is_never_called_from_the_event_loop_thread(
    sqlite_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[int] = []
    real_connect = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        threads.append(threading.get_ident())
        conn = real_connect(*args, **kwargs)
        conn.set_trace_callback(lambda _statement: threads.append(threading.get_ident()))
        return conn

    # Both names, whichever the driver calls; SQLAlchemy's pysqlite (the schema check
    # at open) calls sqlite3.dbapi2.connect.
    monkeypatch.setattr(sqlite3, "connect", connect)
    monkeypatch.setattr(sqlite3.dbapi2, "connect", connect)

    async def main() -> int:
        loop_thread = threading.get_ident()
        store = await opened(str(sqlite_path))  # creates and migrates the database
        try:
            mgr = store.manager("s", compress_after=5, keep_recent=2)
            await asyncio.gather(*(mgr.create("step", {"i": i}) for i in range(30)))
            await mgr.get_summary()
            assert len([cp async for cp in mgr.find(limit=3)]) == 3
            await mgr.compact(keep_recent=1)
            await store.vacuum()
        finally:
            await store.close()
        return loop_thread

    loop_thread = run(main)
    assert len(threads) > 100
    assert loop_thread not in threads


# -- fork -------------------------------------------------------------------------------


def _in_child(work: Callable[[], None]) -> int:
    """Run ``work`` in a forked child; its exit status (0: it returned)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            work()
            code = 0
        except CheckpointDBError as exc:
            code = 3 if "forked" in str(exc) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_writes_on_threads_and_connections_of_its_own(backend_url: str) -> None:
    runner = asyncio.Runner()
    try:
        store = runner.run(opened(backend_url))

        def child_creates() -> None:
            asyncio.run(store.manager("s").create("child", {}))

        assert _in_child(child_creates) == 0
        assert runner.run(store.manager("s").create("parent", {})).seq == 2
        # Now the parent has worker threads and a connection: the child has
        # neither (SQLite's idle connections are closed before the fork, as
        # for the sync store), so it starts its own.
        assert _in_child(child_creates) == 0
        names = [cp.name for cp in runner.run(store.manager("s").get_all())]
        assert names == ["child", "parent", "child"]
        assert runner.run(store.manager("s").create("parent again", {})).seq == 4
        runner.run(store.close())
    finally:
        runner.close()


# -- errors -------------------------------------------------------------------------------


def test_a_busy_database_is_a_store_busy_error_and_the_store_stays_usable(
    sqlite_path: Path,
) -> None:
    async def main() -> None:
        async with AsyncCheckpointStore(sqlite_path, busy_timeout=0.2) as store:
            mgr = store.manager("s")
            await mgr.create("first", {})
            held = threading.Event()
            holder = threading.Thread(
                target=_hold_write_lock, args=(str(sqlite_path), "s", 1.0, held)
            )
            holder.start()
            await asyncio.to_thread(held.wait)
            with pytest.raises(StoreBusyError, match="locked"):
                await mgr.create("blocked", {})
            await asyncio.to_thread(holder.join)
            assert (await mgr.create("second", {})).seq == 2
            assert checked_out(store) == 0

    run(main)


def test_sqlite_connections_get_the_sync_engines_pragmas(sqlite_path: Path) -> None:
    names = ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
    settings: dict[str, Any] = {"synchronous": "FULL", "busy_timeout": 12.5}

    def probe(cursor: Any) -> list[Any]:
        values = []
        for name in names:
            cursor.execute(f"PRAGMA {name}")
            values.append(cursor.fetchone()[0])
        return values

    with (
        CheckpointStore(sqlite_path, **settings) as sync_store,
        sync_store._db.transaction(snapshot=False) as cursor,
    ):
        expected = probe(cursor)

    async def main() -> list[Any]:
        async with AsyncCheckpointStore(sqlite_path, **settings) as store:
            return await store._perform(read(probe))

    assert expected == ["wal", 2, 1, 12500]
    assert run(main) == expected
