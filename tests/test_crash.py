"""A writer SIGKILLed at any moment loses nothing it acknowledged.

The writer (``workers.crash_writer``, run as a plain script) creates
checkpoints with compaction and the cap running, and after each ``create``
returns it appends ``seq digest`` to a side file, fsynced. After every kill
the database is compared with an independent model of the retention policy
(``workers.surviving_seqs``): seqs are contiguous (a rolled-back create
consumes none), so the rows that must be live follow from ``last_seq``
alone, and any half-done compaction or lost acknowledgement shows up as a
difference.
"""

from __future__ import annotations

import multiprocessing
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import workers

from checkpointdb import CheckpointDBError, CheckpointStore

WORKERS_SCRIPT = Path(__file__).with_name("workers.py")
SPAWN = multiprocessing.get_context("spawn")
KILLS = 50


def start_writer(database: Path, acks: Path) -> subprocess.Popen[str]:
    """Start the crash writer; return once its store is open."""
    writer = subprocess.Popen(
        [sys.executable, str(WORKERS_SCRIPT), "crash-writer", str(database), str(acks)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    if writer.stdout.readline() != "ready\n":
        writer.kill()
        _, errors = writer.communicate()
        pytest.fail(f"the writer did not start: {errors}")
    return writer


def kill(writer: subprocess.Popen[str]) -> None:
    """SIGKILL the writer; fail if it had already stopped by itself."""
    writer.send_signal(signal.SIGKILL)
    _, errors = writer.communicate(timeout=30)
    assert writer.returncode == -signal.SIGKILL, f"the writer stopped by itself: {errors}"


def acknowledged(acks: Path) -> list[tuple[int, str]]:
    """(seq, digest) of every create the writer saw return, in order."""
    if not acks.exists():
        return []
    lines = acks.read_text(encoding="utf-8").split("\n")
    # A kill between write and flush could cut the last line: it was never
    # acknowledged, and the next writer must not append to its stub.
    complete = lines[:-1]
    with acks.open("r+", encoding="utf-8") as handle:
        handle.truncate(sum(len(line) + 1 for line in complete))
    return [(int(seq), digest) for seq, digest in (line.split() for line in complete)]


def check_database(database: Path, acks: Path, kills: int, context: str) -> int:
    """Assert everything ``kills`` crashes must not break; return the session's last_seq."""
    with CheckpointStore(database) as store:
        info = store.session(workers.CRASH_SESSION)
        live = {cp.seq: cp for cp in store.manager(workers.CRASH_SESSION, **workers.CRASH_POLICY)}
    raw = sqlite3.connect(database)
    try:
        assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)], context
        assert raw.execute("PRAGMA foreign_key_check").fetchall() == [], context
        rows = raw.execute("SELECT count(*) FROM checkpoints").fetchone()[0]
    finally:
        raw.close()

    acked = acknowledged(acks)
    if info is None:  # killed before the first create committed
        assert acked == [] and live == {} and rows == 0, context
        return 0
    seqs = [seq for seq, _ in acked]
    assert seqs == sorted(set(seqs)), f"{context}: a seq was issued twice"
    assert not seqs or seqs[-1] <= info.last_seq, context
    # Each kill can leave at most one create committed but unacknowledged.
    assert info.last_seq - len(seqs) <= kills, context
    names = [workers.name_for(seq) for seq in range(1, info.last_seq + 1)]
    expected = workers.surviving_seqs(names, **workers.CRASH_POLICY)
    assert sorted(live) == expected, f"{context}: live rows differ from the policy"
    assert info.checkpoint_count == rows == len(expected), context
    for seq, fingerprint in acked:
        if seq in live:
            assert workers.digest(live[seq].data) == fingerprint, f"{context}: seq {seq}"
    for seq, checkpoint in live.items():
        assert checkpoint.name == workers.name_for(seq), context
        assert checkpoint.data["seq"] == seq, context
    # The ones the policy always keeps, spelled out: the first and the newest.
    keep_recent = workers.CRASH_POLICY["keep_recent"]
    must_survive = {1, *range(max(1, info.last_seq - keep_recent + 1), info.last_seq + 1)}
    assert must_survive <= set(live), context
    return info.last_seq


@pytest.mark.slow
def test_fifty_random_kills_lose_no_acknowledged_checkpoint(tmp_path: Path) -> None:
    database, acks = tmp_path / "crash.db", tmp_path / "acks.txt"
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    last_seq = 0
    for round_number in range(1, KILLS + 1):
        context = f"kill {round_number} (seed {seed})"
        writer = start_writer(database, acks)
        time.sleep(rng.uniform(0.02, 0.2))
        kill(writer)
        last_seq = check_database(database, acks, round_number, context)

    assert last_seq > 10 * KILLS  # the kills landed among many writes
    policy = workers.CRASH_POLICY
    assert last_seq > policy["compress_after"] + policy["max_checkpoints"]
    with CheckpointStore(database) as store:
        manager = store.manager(workers.CRASH_SESSION, **policy)
        assert manager.create("after-the-kills", {}).seq == last_seq + 1


@pytest.mark.slow
def test_four_processes_open_the_store_at_once_right_after_a_kill(tmp_path: Path) -> None:
    database, acks = tmp_path / "crash.db", tmp_path / "acks.txt"
    for round_number in range(3):
        writer = start_writer(database, acks)
        time.sleep(random.uniform(0.05, 0.2))
        kill(writer)

        barrier = SPAWN.Barrier(4)
        results = SPAWN.Queue()
        openers = [
            SPAWN.Process(
                target=workers.open_store,
                args=(str(database), workers.CRASH_SESSION, barrier, results),
            )
            for _ in range(4)
        ]
        for opener in openers:
            opener.start()
        outcomes = [results.get(timeout=120) for _ in openers]
        for opener in openers:
            opener.join(60)

        assert [opener.exitcode for opener in openers] == [0] * 4
        assert [status for status, _ in outcomes] == ["ok"] * 4, outcomes
        assert len({count for _, count in outcomes}) == 1, outcomes
        check_database(database, acks, round_number + 1, f"round {round_number}")


def test_a_kill_while_creating_a_new_database_leaves_one_that_opens(tmp_path: Path) -> None:
    # A first run measures how long the writer takes to open a new store, so
    # that the kills below land inside that window: mid-import, mid-schema.
    started = time.monotonic()
    kill(start_writer(tmp_path / "timing.db", tmp_path / "timing.txt"))
    window = time.monotonic() - started
    for attempt in range(8):
        database = tmp_path / f"new-{attempt}.db"
        acks = tmp_path / f"acks-{attempt}.txt"
        writer = subprocess.Popen(
            [sys.executable, str(WORKERS_SCRIPT), "crash-writer", str(database), str(acks)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(random.uniform(0.5, 1.1) * window)
        writer.kill()
        writer.communicate(timeout=30)

        with CheckpointStore(database) as store:
            manager = store.manager("after", max_checkpoints=None, compress_after=None)
            assert manager.create("first", {}).seq == 1
        raw = sqlite3.connect(database)
        try:
            assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        finally:
            raw.close()


@pytest.mark.parametrize(
    ("setting", "expected"), [(None, 1), ("NORMAL", 1), ("FULL", 2), ("extra", 3)]
)
def test_durability_pragmas_are_set_explicitly_on_every_connection(
    sqlite_path: Path, setting: str | None, expected: int
) -> None:
    # Debian's SQLite defaults to synchronous=FULL: the store must not inherit it.
    options = {} if setting is None else {"synchronous": setting}
    with CheckpointStore(sqlite_path, busy_timeout=2.5, **options) as store:  # type: ignore[arg-type]
        engine = store._db.engine
        connections = [engine.raw_connection() for _ in range(3)]  # three distinct ones
        try:
            for connection in connections:
                cursor = connection.cursor()
                pragmas = [
                    cursor.execute(f"PRAGMA {name}").fetchone()[0]
                    for name in ("synchronous", "journal_mode", "busy_timeout", "foreign_keys")
                ]
                assert pragmas == [expected, "wal", 2500, 1]
        finally:
            for connection in connections:
                connection.close()


def test_an_unknown_synchronous_mode_is_refused(sqlite_path: Path) -> None:
    with pytest.raises(CheckpointDBError, match="'OFF'"):
        CheckpointStore(sqlite_path, synchronous="OFF")
