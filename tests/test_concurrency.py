"""Many writers, one file: no duplicate or missing seq, no lock left behind, no hang.

Processes are started with "spawn" (a clean interpreter each, as agent
workers are); their code is in ``workers.py``. Each trap of concurrent SQLite
use is a test here: duplicate ids under concurrent appends, a failed COMMIT
left open on a pooled connection, a pool inherited by fork().
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import pytest
import workers
from sqlalchemy import create_engine, event

from checkpointdb import CheckpointDBError, CheckpointStore, StoreBusyError
from checkpointdb.engine import resolve_url

SPAWN = multiprocessing.get_context("spawn")
PROCESSES = 8
PER_PROCESS = 250
NO_RETENTION: dict[str, Any] = {"max_checkpoints": None, "compress_after": None}
DEFAULT_RETENTION: dict[str, Any] = {
    "max_checkpoints": 100,
    "compress_after": 50,
    "keep_recent": 20,
}


def run_processes(target: Callable[..., None], arguments: list[tuple[Any, ...]]) -> list[Any]:
    """Run ``target(*args, results)`` in one spawned process per args; return what they put."""
    results = SPAWN.Queue()
    processes = [SPAWN.Process(target=target, args=(*args, results)) for args in arguments]
    for process in processes:
        process.start()
    try:
        collected = [results.get(timeout=240) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
    assert [process.exitcode for process in processes] == [0] * len(processes)
    return collected


def counters(store: CheckpointStore, session_id: str) -> tuple[int, int] | None:
    """(checkpoint_count, last_seq) of a session, None if it does not exist."""
    info = store.session(session_id)
    return None if info is None else (info.checkpoint_count, info.last_seq)


# -- many writers -------------------------------------------------------------


@pytest.mark.slow
def test_eight_processes_appending_to_one_session_get_seqs_1_to_2000(sqlite_path: Path) -> None:
    CheckpointStore(sqlite_path).close()
    barrier = SPAWN.Barrier(PROCESSES)
    results = run_processes(
        workers.create_checkpoints,
        [
            (str(sqlite_path), "shared", PER_PROCESS, worker, NO_RETENTION, barrier)
            for worker in range(PROCESSES)
        ],
    )

    assert [error for _, _, errors in results for error in errors] == []
    total = PROCESSES * PER_PROCESS
    issued = sorted(seq for _, created, _ in results for seq, _ in created)
    assert issued == list(range(1, total + 1))
    with CheckpointStore(sqlite_path) as store:
        assert counters(store, "shared") == (total, total)
        stored = {checkpoint.seq: checkpoint for checkpoint in store.manager("shared")}
        assert sorted(stored) == list(range(1, total + 1))
        for worker, created, _ in results:
            seqs = [seq for seq, _ in created]
            assert seqs == sorted(seqs)
            for index, seq in enumerate(seqs):
                assert stored[seq].data == {"worker": worker, "index": index}


@pytest.mark.slow
def test_eight_processes_on_their_own_sessions_follow_the_retention_policy(
    sqlite_path: Path,
) -> None:
    CheckpointStore(sqlite_path).close()
    barrier = SPAWN.Barrier(PROCESSES)
    results = run_processes(
        workers.create_checkpoints,
        [
            (str(sqlite_path), f"agent-{worker}", PER_PROCESS, worker, DEFAULT_RETENTION, barrier)
            for worker in range(PROCESSES)
        ],
    )

    assert [error for _, _, errors in results for error in errors] == []
    with CheckpointStore(sqlite_path) as store:
        for worker, created, _ in results:
            session_id = f"agent-{worker}"
            assert [seq for seq, _ in created] == list(range(1, PER_PROCESS + 1))
            expected = workers.surviving_seqs([name for _, name in created], **DEFAULT_RETENTION)
            live = [checkpoint.seq for checkpoint in store.manager(session_id)]
            assert live == expected
            assert counters(store, session_id) == (len(expected), PER_PROCESS)


# Seconds the writers and the maintainer run against each other (per backend).
CONTENTION_SECONDS = 20.0


@pytest.mark.slow
def test_writers_and_maintenance_at_once_never_deadlock_and_keep_counters_exact(
    backend_url: str,
) -> None:
    """4 processes create in one session while a fifth runs every maintenance write.

    Every write locks the session row before touching checkpoints, and a
    deadlock the server still reports is retried: no call fails, ids stay
    unique and increasing, and each session row's counters match its live rows.
    """
    CheckpointStore(backend_url).close()  # migrate once, before the race
    gate = SPAWN.Barrier(5)
    results = SPAWN.Queue()
    targets = [workers.contended_writer] * 4 + [workers.maintainer]
    processes = [
        SPAWN.Process(target=target, args=(backend_url, CONTENTION_SECONDS, gate, results))
        for target in targets
    ]
    for process in processes:
        process.start()
    try:
        reports = [results.get(timeout=240) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
    assert [error for report in reports for error in report["errors"]] == []
    writers = [report for report in reports if report["role"] == "writer"]
    all_seqs = [seq for report in writers for seq in report["seqs"]]
    assert len(all_seqs) == len(set(all_seqs)) > 100
    for report in writers:
        assert report["seqs"] == sorted(report["seqs"])
    (maintainer,) = [report for report in reports if report["role"] == "maintainer"]
    assert maintainer["rounds"] > 5
    engine = create_engine(resolve_url(backend_url))
    try:
        with engine.connect() as connection:
            mismatched = connection.exec_driver_sql(
                "SELECT s.id, s.checkpoint_count, s.payload_bytes, "
                "(SELECT count(*) FROM checkpoints c WHERE c.session_id = s.id), "
                "(SELECT coalesce(sum(c.payload_bytes), 0) FROM checkpoints c "
                "WHERE c.session_id = s.id) FROM sessions s"
            ).all()
    finally:
        engine.dispose()
    assert len(mismatched) >= 2
    assert [row for row in mismatched if (row[1], row[2]) != (row[3], row[4])] == []


def test_eight_threads_sharing_one_store_get_contiguous_seqs(store: CheckpointStore) -> None:
    manager = store.manager("threads", **NO_RETENTION)
    barrier = threading.Barrier(PROCESSES)

    def work(worker: int) -> tuple[list[int], list[str]]:
        barrier.wait(30)
        seqs, errors = [], []
        for index in range(PER_PROCESS):
            try:
                seqs.append(manager.create("t", {"worker": worker, "index": index}).seq)
            except Exception as exc:
                errors.append(repr(exc))
        return seqs, errors

    with ThreadPoolExecutor(PROCESSES) as pool:
        results = list(pool.map(work, range(PROCESSES)))

    assert [error for _, errors in results for error in errors] == []
    total = PROCESSES * PER_PROCESS
    assert sorted(seq for seqs, _ in results for seq in seqs) == list(range(1, total + 1))
    assert counters(store, "threads") == (total, total)
    stored = {checkpoint.seq: checkpoint.data for checkpoint in manager}
    for worker, (seqs, _) in enumerate(results):
        assert [stored[seq] for seq in seqs] == [
            {"worker": worker, "index": index} for index in range(PER_PROCESS)
        ]


def test_four_processes_opening_a_new_file_at_once_all_succeed(sqlite_path: Path) -> None:
    barrier = SPAWN.Barrier(4)
    outcomes = run_processes(workers.open_store, [(str(sqlite_path), "s", barrier)] * 4)

    assert outcomes == [("ok", 0)] * 4
    with CheckpointStore(sqlite_path) as store:
        assert store.manager("s").create("after", {}).seq == 1


# -- a writer that holds the lock ---------------------------------------------


@contextmanager
def lock_held_by_other_process(path: Path) -> Iterator[None]:
    """Another process holds SQLite's write lock on ``path`` inside this block."""
    locked, release = SPAWN.Event(), SPAWN.Event()
    holder = SPAWN.Process(target=workers.hold_write_lock, args=(str(path), locked, release))
    holder.start()
    try:
        assert locked.wait(60), "the lock holder never took the lock"
        yield
    finally:
        release.set()
        holder.join(60)
    assert holder.exitcode == 0


@contextmanager
def lock_held_by_raw_connection(path: Path) -> Iterator[None]:
    """A raw sqlite3 connection in this process holds the write lock inside this block."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        connection.execute("COMMIT")
        connection.close()


@pytest.mark.parametrize(
    "holder", [lock_held_by_other_process, lock_held_by_raw_connection], ids=["process", "raw"]
)
def test_lock_held_past_busy_timeout_raises_busy_naming_file_and_timeout(
    sqlite_path: Path, holder: Callable[[Path], Any]
) -> None:
    with CheckpointStore(sqlite_path, busy_timeout=0.5) as store:
        manager = store.manager("s")
        manager.create("before", {"n": 1})
        with holder(sqlite_path):
            started = time.monotonic()
            with pytest.raises(StoreBusyError) as caught:
                manager.create("blocked", {"n": 2})
            waited = time.monotonic() - started
            assert counters(store, "s") == (1, 1)
        message = str(caught.value)
        assert str(sqlite_path) in message
        assert "0.5s" in message
        assert 0.4 <= waited < 10
        assert [checkpoint.name for checkpoint in manager] == ["before"]
        assert manager.create("after", {"n": 3}).seq == 2
        assert counters(store, "s") == (2, 2)


@pytest.mark.parametrize(
    "write",
    [
        lambda store: store.manager("new-session").create("x", {}),
        lambda store: store.manager("s").clear(),
        lambda store: store.manager("s").compact(keep_recent=0),
        lambda store: store.delete_session("s"),
        lambda store: store.manager("s").import_checkpoints(
            '[{"id": "s:9", "name": "i", "timestamp": "2026-01-01T00:00:00+00:00", "data": {}}]'
        ),
    ],
    ids=["create-new-session", "clear", "compact", "delete-session", "import"],
)
def test_every_write_gives_up_with_busy_error_and_changes_nothing(
    sqlite_path: Path, write: Callable[[CheckpointStore], Any]
) -> None:
    with CheckpointStore(sqlite_path, busy_timeout=0.2) as store:
        for index in range(3):
            store.manager("s").create(f"c{index}", {"i": index})
        before = [(info.id, info.checkpoint_count, info.last_seq) for info in store.sessions()]
        with lock_held_by_raw_connection(sqlite_path), pytest.raises(StoreBusyError):
            write(store)
        after = [(info.id, info.checkpoint_count, info.last_seq) for info in store.sessions()]
        assert after == before
        assert [checkpoint.name for checkpoint in store.manager("s")] == ["c0", "c1", "c2"]


def test_opening_and_reading_do_not_wait_for_a_writer(sqlite_path: Path) -> None:
    with CheckpointStore(sqlite_path) as store:
        store.manager("s").create("before", {})
    with lock_held_by_other_process(sqlite_path):
        started = time.monotonic()
        # A store that waited for the lock would take the whole busy_timeout
        # (5 s); one that does not takes tens of milliseconds, or a few
        # hundred on a loaded machine.
        with CheckpointStore(sqlite_path, busy_timeout=5) as store:
            assert [cp.name for cp in store.manager("s")] == ["before"]
            assert counters(store, "s") == (1, 1)
        assert time.monotonic() - started < 2.5


def test_create_waits_out_a_lock_shorter_than_busy_timeout(sqlite_path: Path) -> None:
    with CheckpointStore(sqlite_path, busy_timeout=10) as store:
        manager = store.manager("s")
        manager.create("before", {})
        connection = sqlite3.connect(sqlite_path, isolation_level=None, check_same_thread=False)
        connection.execute("BEGIN IMMEDIATE")
        releaser = threading.Timer(0.3, lambda: connection.execute("COMMIT"))
        releaser.start()
        started = time.monotonic()
        try:
            assert manager.create("waited", {}).seq == 2
        finally:
            releaser.join()
            connection.close()
        assert time.monotonic() - started >= 0.25


def test_a_long_read_does_not_block_a_writer(sqlite_path: Path) -> None:
    with CheckpointStore(sqlite_path, busy_timeout=0.5) as store:
        manager = store.manager("s")
        manager.create("before", {})
        reader = sqlite3.connect(sqlite_path, isolation_level=None)
        try:
            reader.execute("BEGIN")
            assert reader.execute("SELECT count(*) FROM checkpoints").fetchone() == (1,)
            started = time.monotonic()
            assert manager.create("during-read", {}).seq == 2
            assert time.monotonic() - started < 0.4
            assert reader.execute("SELECT count(*) FROM checkpoints").fetchone() == (1,)
        finally:
            reader.close()


# -- a COMMIT that fails -------------------------------------------------------


def _database_is_locked_error(path: Path) -> sqlite3.OperationalError:
    """A genuine "database is locked" error from the driver, as a failed COMMIT raises."""
    holder = sqlite3.connect(path, isolation_level=None)
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    try:
        holder.execute("BEGIN IMMEDIATE")
        try:
            other.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            return exc
        raise AssertionError("the second BEGIN IMMEDIATE did not fail")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        other.close()


class FlakyConnection(sqlite3.Connection):
    """A driver connection whose next COMMIT (and, if asked, ROLLBACK) fails.

    A COMMIT that fails with SQLITE_BUSY leaves SQLite's transaction open;
    this one raises before committing, which leaves it open the same way.
    """

    instances: ClassVar[list[FlakyConnection]] = []
    failing_commits = 0
    failing_rollbacks = 0
    error: Exception = sqlite3.OperationalError("database is locked")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        FlakyConnection.instances.append(self)

    def commit(self) -> None:
        if FlakyConnection.failing_commits:
            FlakyConnection.failing_commits -= 1
            raise FlakyConnection.error
        super().commit()

    def rollback(self) -> None:
        if FlakyConnection.failing_rollbacks:
            FlakyConnection.failing_rollbacks -= 1
            raise FlakyConnection.error
        super().rollback()


@pytest.fixture
def flaky_store(sqlite_path: Path) -> Iterator[CheckpointStore]:
    """A store whose pooled connections are FlakyConnections."""
    FlakyConnection.instances = []
    FlakyConnection.failing_commits = FlakyConnection.failing_rollbacks = 0
    with CheckpointStore(sqlite_path) as store:
        FlakyConnection.error = _database_is_locked_error(sqlite_path)
        engine = store._db.engine

        @event.listens_for(engine, "do_connect")
        def _flaky(dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> None:
            cparams["factory"] = FlakyConnection

        store._db.close_idle()
        yield store


def _live_transactions() -> list[FlakyConnection]:
    """Driver connections still inside a transaction (closed ones do not count)."""
    open_ones = []
    for connection in FlakyConnection.instances:
        try:
            if connection.in_transaction:
                open_ones.append(connection)
        except sqlite3.ProgrammingError:  # closed, so nothing is open on it
            pass
    return open_ones


@pytest.mark.parametrize("rollback_fails", [False, True], ids=["rollback-ok", "rollback-fails"])
def test_failed_commit_leaves_no_open_transaction_and_never_saves_the_row(
    flaky_store: CheckpointStore, rollback_fails: bool
) -> None:
    manager = flaky_store.manager("s")
    manager.create("kept", {"n": 1})
    FlakyConnection.failing_commits = 1
    FlakyConnection.failing_rollbacks = int(rollback_fails)

    with pytest.raises(StoreBusyError) as caught:
        manager.create("doomed", {"n": 2})

    assert "database is locked" in str(caught.value)
    assert _live_transactions() == []
    for index in range(3):  # reuses the pooled connection the failure happened on
        manager.create("later", {"n": 3 + index})
    names = [checkpoint.name for checkpoint in manager]
    assert names == ["kept", "later", "later", "later"]
    assert [checkpoint.seq for checkpoint in manager] == [1, 2, 3, 4]
    assert counters(flaky_store, "s") == (4, 4)


def test_a_connection_returned_mid_transaction_is_rolled_back_on_checkin(
    sqlite_path: Path,
) -> None:
    with CheckpointStore(sqlite_path) as store:
        database = store._db
        raw = database.checkout()
        driver = raw.driver_connection
        assert driver is not None
        raw.cursor().execute("BEGIN IMMEDIATE")
        raw.cursor().execute(
            "INSERT INTO sessions (id, created_at, updated_at, last_seq, checkpoint_count, "
            "metadata) VALUES ('ghost', 'x', 'x', 7, 0, '{}')"
        )
        database.checkin(raw)  # handed back with the transaction still open

        assert not driver.in_transaction
        again = database.checkout()
        try:
            assert again.driver_connection is driver  # the same connection, reused
        finally:
            database.checkin(again)
        assert store.session("ghost") is None


# -- reading while others write ----------------------------------------------


def test_reader_iterating_a_large_session_while_writers_append(sqlite_path: Path) -> None:
    initial = 1_600  # more than three pages of iteration
    with CheckpointStore(sqlite_path) as store:
        manager = store.manager("big", **NO_RETENTION)
        manager.import_checkpoints(
            "["
            + ",".join(
                f'{{"id": "other:{n}", "name": "imported", '
                f'"timestamp": "2026-01-01T00:00:00+00:00", "data": {{"n": {n}}}}}'
                for n in range(1, initial + 1)
            )
            + "]"
        )
        results = SPAWN.Queue()
        stop = SPAWN.Event()
        started = [SPAWN.Event() for _ in range(2)]
        writers = [
            SPAWN.Process(
                target=workers.append_until_stopped,
                args=(str(sqlite_path), "big", worker, started[worker], stop, results),
            )
            for worker in range(2)
        ]
        for writer in writers:
            writer.start()
        try:
            assert all(flag.wait(60) for flag in started)
            reads = []
            for _ in range(3):
                seqs = [checkpoint.seq for checkpoint in manager]
                newest_first = [checkpoint.seq for checkpoint in manager.iter_newest_first()]
                reads.append((seqs, newest_first))
        finally:
            stop.set()
            outcomes = [results.get(timeout=60) for _ in writers]
            for writer in writers:
                writer.join(60)

        assert [writer.exitcode for writer in writers] == [0, 0]
        assert [error for _, _, errors in outcomes for error in errors] == []
        for seqs, newest_first in reads:
            assert seqs[:initial] == list(range(1, initial + 1))
            assert seqs == sorted(set(seqs))
            assert newest_first == sorted(set(newest_first), reverse=True)
            assert newest_first[-initial:] == list(range(initial, 0, -1))
        appended = sum(created for _, created, _ in outcomes)
        assert appended > 0
        assert reads[-1][0][-1] > initial  # the reader saw rows appended while it read
        total = initial + appended
        assert [checkpoint.seq for checkpoint in manager] == list(range(1, total + 1))
        assert counters(store, "big") == (total, total)


# -- fork ----------------------------------------------------------------------


def run_in_fork(child: Callable[[], str], timeout: float = 30) -> str:
    """Run ``child`` in a forked process and return what it returned.

    Fails the test if the child hangs for ``timeout`` seconds (it is killed)
    or raises (the error is in the failure message).
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        status = 0
        try:
            os.close(read_end)
            try:
                answer = child()
            except BaseException as exc:
                answer, status = f"{type(exc).__name__}: {exc}", 1
            os.write(write_end, answer.encode()[:60_000])
        finally:
            os._exit(status)
    os.close(write_end)
    deadline = time.monotonic() + timeout
    status = None
    while status is None:
        done, code = os.waitpid(pid, os.WNOHANG)
        if done:
            status = code
        elif time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(read_end)
            pytest.fail(f"the forked child hung for {timeout}s")
        else:
            time.sleep(0.01)
    with os.fdopen(read_end, "rb") as pipe:
        answer = pipe.read().decode()
    assert os.waitstatus_to_exitcode(status) == 0, answer
    return answer


def test_store_used_after_fork_works_in_the_child_and_never_hangs(sqlite_path: Path) -> None:
    with CheckpointStore(sqlite_path) as store:
        manager = store.manager("s")
        manager.create("parent", {"who": "parent"})

        answer = run_in_fork(
            lambda: ",".join(
                str(manager.create("child", {"who": "child", "i": i}).seq) for i in range(3)
            )
        )

        assert answer == "2,3,4"
        assert manager.create("parent-again", {}).seq == 5
        assert [checkpoint.name for checkpoint in manager] == [
            "parent",
            "child",
            "child",
            "child",
            "parent-again",
        ]
        assert manager.get("s:3") is not None


def _parked_backend_pids(store: CheckpointStore) -> list[int]:
    """Server pids of the PostgreSQL connections the store keeps parked between transactions."""
    return [raw.dbapi_connection.info.backend_pid for raw in store._db._idle]  # type: ignore[union-attr]


def test_a_forked_child_never_uses_the_parents_parked_postgres_connections(
    postgres_url: str,
) -> None:
    with CheckpointStore(postgres_url) as store:
        manager = store.manager("s")
        manager.create("parent", {})
        parents = _parked_backend_pids(store)
        assert len(parents) == 1

        def child() -> str:
            seqs = [manager.create("child", {"i": i}).seq for i in range(3)]
            return f"{seqs}|{_parked_backend_pids(store)}"

        seqs, pids = run_in_fork(child).split("|")

        assert seqs == "[2, 3, 4]"
        assert pids != "[]"
        assert str(parents[0]) not in pids
        # The parent's connection was neither used nor closed by the child.
        assert manager.create("parent-again", {}).seq == 5
        assert _parked_backend_pids(store) == parents


def test_checkpoints_a_forked_child_writes_survive_the_parent_closing_the_store(
    sqlite_path: Path,
) -> None:
    store = CheckpointStore(sqlite_path)
    manager = store.manager("s")
    manager.create("parent", {})
    to_child_read, to_child_write = os.pipe()
    from_child_read, from_child_write = os.pipe()

    def child() -> str:
        manager.create("child-before", {})
        os.write(from_child_write, b"1")
        os.read(to_child_read, 1)  # the parent has used and closed its store
        return ",".join(str(manager.create("child-after", {"i": i}).seq) for i in range(5))

    seen_by_parent: list[int] = []

    def parent_side() -> None:
        if os.read(from_child_read, 1) == b"1":
            seen_by_parent.append(len(manager))
        store.close()
        os.write(to_child_write, b"1")

    closer = threading.Thread(target=parent_side)
    closer.start()
    answer = run_in_fork(child)
    closer.join(30)

    assert seen_by_parent == [2]
    assert answer == "3,4,5,6,7"
    with CheckpointStore(sqlite_path) as reopened:
        names = [checkpoint.name for checkpoint in reopened.manager("s")]
        assert names == ["parent", "child-before"] + ["child-after"] * 5
        assert counters(reopened, "s") == (7, 7)


def test_child_forked_while_another_thread_writes_gets_a_clear_error_at_once(
    sqlite_path: Path,
) -> None:
    with CheckpointStore(sqlite_path) as store:  # default busy_timeout: 30 s
        manager = store.manager("s")
        manager.create("parent", {})
        inside, release = threading.Event(), threading.Event()

        def hold_a_write_transaction() -> None:
            with store._db.transaction(write=True):
                inside.set()
                release.wait(30)

        holder = threading.Thread(target=hold_a_write_transaction)
        holder.start()
        assert inside.wait(10)
        try:
            started = time.monotonic()

            def child() -> str:
                try:
                    manager.create("child", {})
                except CheckpointDBError as exc:
                    return f"{type(exc).__name__}: {exc}"
                return "created"

            answer = run_in_fork(child, timeout=20)
        finally:
            release.set()
            holder.join(10)

        assert answer.startswith("CheckpointDBError: ")
        assert str(sqlite_path) in answer
        assert "forked" in answer
        assert time.monotonic() - started < 5
        assert manager.create("parent-again", {}).seq == 2
        assert [checkpoint.name for checkpoint in manager] == ["parent", "parent-again"]
