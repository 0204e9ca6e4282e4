"""The SQLite file: private modes, damaged files refused untouched, a full disk, backups."""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import sqlite3
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import workers
from sqlalchemy import event

from checkpointdb import (
    CheckpointDBError,
    CheckpointStore,
    CorruptDatabaseError,
    StoreFullError,
)

SPAWN = multiprocessing.get_context("spawn")
SUFFIXES = ("", "-wal", "-shm")


@contextmanager
def umask(mask: int) -> Iterator[None]:
    """Run the block under ``mask`` (0: files get exactly the mode they are created with)."""
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path | str) -> int:
    """Permission bits of a file."""
    return stat.S_IMODE(os.stat(path).st_mode)


def integrity(path: Path) -> list[tuple[Any, ...]]:
    """PRAGMA integrity_check of an SQLite file."""
    connection = sqlite3.connect(path)
    try:
        return connection.execute("PRAGMA integrity_check").fetchall()
    finally:
        connection.close()


def fingerprint(path: Path) -> tuple[str, int, int]:
    """Content hash, inode and modification time: what "left untouched" means."""
    info = path.stat()
    return hashlib.sha256(path.read_bytes()).hexdigest(), info.st_ino, info.st_mtime_ns


# -- file modes ----------------------------------------------------------------------


def test_new_database_and_its_wal_and_shm_are_private_whatever_the_umask(
    sqlite_path: Path,
) -> None:
    with umask(0), CheckpointStore(sqlite_path) as store:
        store.manager("s").create("secret", {"api_key": "sk-not-for-others"})
        modes = {suffix: mode(f"{sqlite_path}{suffix}") for suffix in SUFFIXES}
    assert modes == dict.fromkeys(SUFFIXES, 0o600)


@pytest.mark.parametrize("loose", [0o644, 0o640, 0o604, 0o660])
def test_opening_a_database_others_can_read_logs_a_warning(
    sqlite_path: Path, caplog: pytest.LogCaptureFixture, loose: int
) -> None:
    CheckpointStore(sqlite_path).close()
    sqlite_path.chmod(loose)
    with caplog.at_level(logging.WARNING, logger="checkpointdb"):
        CheckpointStore(sqlite_path).close()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert str(sqlite_path) in message
    assert f"{loose:o}" in message
    assert "chmod 600" in message


def test_opening_a_private_database_logs_no_warning(
    sqlite_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    CheckpointStore(sqlite_path).close()
    with caplog.at_level(logging.WARNING, logger="checkpointdb"):
        CheckpointStore(sqlite_path).close()
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


# -- damaged files ---------------------------------------------------------------------


def _page_size(raw: bytes) -> int:
    size = int.from_bytes(raw[16:18], "big")
    return 65536 if size == 1 else size


DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "random-bytes": lambda raw: hashlib.sha512(raw).digest() * 128,
    "text-file": lambda raw: b"agent notes: not a database\n" * 300,
    "magic-overwritten": lambda raw: b"SQLite format 2\x00" + raw[16:],
    "header-zeroed": lambda raw: bytes(100) + raw[100:],
    "page-size-invalid": lambda raw: raw[:16] + b"\x00\x03" + raw[18:],
    "cut-inside-header": lambda raw: raw[:50],
    "cut-after-header": lambda raw: raw[:100],
    "cut-to-one-page": lambda raw: raw[: _page_size(raw)],
    "cut-by-one-page": lambda raw: raw[: -_page_size(raw)],
    "cut-to-half": lambda raw: raw[: len(raw) // 2 // _page_size(raw) * _page_size(raw)],
    "cut-inside-last-page": lambda raw: raw[:-100],
}


@pytest.fixture(scope="module")
def healthy_database(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of a closed database holding a few hundred checkpoints."""
    path = tmp_path_factory.mktemp("healthy") / "healthy.db"
    with CheckpointStore(path) as store:
        manager = store.manager("s", max_checkpoints=None, compress_after=None)
        for index in range(300):
            manager.create("step", {"index": index, "text": "lorem ipsum " * 40})
    assert not Path(f"{path}-wal").exists()  # checkpointed into the file on close
    return path.read_bytes()


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_file_is_refused_naming_it_and_left_untouched(
    sqlite_path: Path, healthy_database: bytes, damage: str
) -> None:
    sqlite_path.write_bytes(DAMAGE[damage](healthy_database))
    sqlite_path.chmod(0o600)
    before = fingerprint(sqlite_path)

    for _ in range(2):  # refused again: nothing was "repaired" or recreated the first time
        # Some damage only shows when the damaged pages are read.
        with pytest.raises(CorruptDatabaseError) as caught, CheckpointStore(sqlite_path) as store:
            store.manager("s").get_all()
        assert str(sqlite_path) in str(caught.value)
        assert fingerprint(sqlite_path) == before


def test_a_directory_in_place_of_the_database_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "agent.db"
    target.mkdir()
    with pytest.raises(CorruptDatabaseError, match=str(target)):
        CheckpointStore(target)
    assert target.is_dir() and list(target.iterdir()) == []


@pytest.mark.parametrize("parent", ["missing", "missing/deeper", "a-file"])
def test_a_path_in_a_directory_that_does_not_exist_gets_a_clear_error(
    tmp_path: Path, parent: str
) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    target = tmp_path / parent / "agent.db"
    with pytest.raises(CheckpointDBError) as caught:
        CheckpointStore(target)
    message = str(caught.value)
    assert str(target) in message
    assert f"directory {target.parent} does not exist" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


# -- a full disk ----------------------------------------------------------------------


def test_full_database_raises_store_full_writes_nothing_and_resumes(sqlite_path: Path) -> None:
    with CheckpointStore(sqlite_path) as store:
        manager = store.manager("s", max_checkpoints=None, compress_after=None)
        ballast = store.manager("ballast", max_checkpoints=None, compress_after=None)
        for index in range(20):
            ballast.create("ballast", {"pad": "b" * 3000, "index": index})
        manager.create("first", {"index": 0})
        cap = {"pages": 0}

        # max_page_count holds per connection: set it on every new pooled one.
        @event.listens_for(store._db.engine, "connect")
        def _limit_pages(dbapi_connection: Any, record: Any) -> None:
            if cap["pages"]:
                dbapi_connection.execute(f"PRAGMA max_page_count = {cap['pages']}")

        def reconnect_with(pages: int) -> None:
            cap["pages"] = pages
            store._db.close_idle()

        with store._db.transaction() as cursor:
            cursor.execute("PRAGMA page_count")
            pages_now = cursor.fetchone()[0]
        reconnect_with(pages_now + 4)

        with pytest.raises(StoreFullError) as caught:
            for index in range(1, 200):
                manager.create("fill", {"pad": "x" * 3000, "index": index})
        message = str(caught.value)
        assert str(sqlite_path) in message
        assert "full" in message
        info = store.session("s")
        assert info is not None
        stored = list(manager)
        assert [cp.seq for cp in stored] == list(range(1, info.last_seq + 1))
        assert info.checkpoint_count == len(stored)
        assert [cp.data["index"] for cp in stored] == list(range(len(stored)))
        assert integrity(sqlite_path) == [("ok",)]

        with pytest.raises(StoreFullError):  # still full: refused again, cleanly
            manager.create("fill", {"pad": "x" * 3000})
        assert store.session("s") == info

        # Room made inside the same cap: freed pages are reused.
        assert store.delete_session("ballast") == 20
        assert manager.create("after-delete", {"pad": "x" * 3000}).seq == info.last_seq + 1
        # Room made by lifting the cap.
        reconnect_with(0)
        for _ in range(30):
            manager.create("after-lift", {"pad": "x" * 3000})
        assert len(manager) == info.checkpoint_count + 31
        assert integrity(sqlite_path) == [("ok",)]


def test_hitting_the_file_size_limit_raises_store_full_and_writes_resume(
    sqlite_path: Path,
) -> None:
    CheckpointStore(sqlite_path).close()
    results = SPAWN.Queue()
    child = SPAWN.Process(
        target=workers.fill_under_file_size_limit, args=(str(sqlite_path), 300_000, results)
    )
    child.start()
    report = results.get(timeout=120)
    child.join(60)

    assert child.exitcode == 0
    kind, message = report["error"]
    assert kind == "StoreFullError", message
    assert str(sqlite_path) in message
    assert "300000" in message
    assert report["after"] == report["before"]
    count, last_seq = report["after"]
    assert report["resumed"] == last_seq + 1
    assert integrity(sqlite_path) == [("ok",)]
    with CheckpointStore(sqlite_path) as store:
        stored = list(store.manager("full"))
        assert [cp.seq for cp in stored] == list(range(1, last_seq + 2))
        assert stored[-1].name == "after-limit"
        assert store.session("full").checkpoint_count == count + 1  # type: ignore[union-attr]


# -- backups --------------------------------------------------------------------------


def everything(store: CheckpointStore) -> list[Any]:
    """Every session's counters and every row, for comparing two databases."""
    return [
        (
            info.id,
            info.checkpoint_count,
            info.last_seq,
            [(cp.id, cp.name, cp.timestamp, cp.data, cp.metadata) for cp in store.manager(info.id)],
        )
        for info in store.sessions()
    ]


def wait_for_seq(store: CheckpointStore, session_id: str, seq: int) -> None:
    """Wait until another process has written checkpoint ``seq`` of a session."""
    deadline = time.monotonic() + 60
    while (info := store.session(session_id)) is None or info.last_seq < seq:
        assert time.monotonic() < deadline, f"{session_id} never reached seq {seq}"
        time.sleep(0.005)


def last_seq_in(path: Path, session_id: str) -> int:
    """A session's last_seq, read straight from an SQLite file."""
    connection = sqlite3.connect(path)
    try:
        row = connection.execute("SELECT last_seq FROM sessions WHERE id = ?", (session_id,))
        return int(row.fetchone()[0])
    finally:
        connection.close()


def test_backup_while_a_writer_appends_is_a_consistent_private_copy(
    sqlite_path: Path, tmp_path: Path
) -> None:
    with CheckpointStore(sqlite_path) as store:
        store.manager("other").create("kept", {"k": 1}, {"m": "x"})
        results, stop, started = SPAWN.Queue(), SPAWN.Event(), SPAWN.Event()
        writer = SPAWN.Process(
            target=workers.append_until_stopped,
            args=(str(sqlite_path), "live", 0, started, stop, results),
        )
        writer.start()
        backups: list[Path] = []
        try:
            assert started.wait(60)
            copied = 0
            for number in range(3):
                wait_for_seq(store, "live", copied + 20)
                target = tmp_path / f"backup-{number}.db"
                with umask(0):
                    assert store.backup(target) == target
                backups.append(target)
                copied = last_seq_in(target, "live")
        finally:
            stop.set()
            _, created, errors = results.get(timeout=60)
            writer.join(60)
        assert errors == []

        sizes = []
        for target in backups:
            assert mode(target) == 0o600
            assert integrity(target) == [("ok",)]
            with CheckpointStore(target) as copy:
                info = copy.session("live")
                assert info is not None
                live = list(copy.manager("live"))
                assert [cp.seq for cp in live] == list(range(1, info.last_seq + 1))
                assert info.checkpoint_count == info.last_seq
                assert [cp.data for cp in live] == [
                    {"worker": 0, "index": index} for index in range(info.last_seq)
                ]
                assert everything(copy)[1] == everything(store)[1]  # "other" came along
                sizes.append(info.last_seq)
        assert sizes == sorted(set(sizes))  # taken while the writer was adding rows
        assert sizes[-1] < created

        final = tmp_path / "final.db"
        store.backup(final)
        with CheckpointStore(final) as copy:
            assert everything(copy) == everything(store)
            assert copy.schema_revision() == store.schema_revision()
            assert {mode(f"{final}{suffix}") for suffix in SUFFIXES} == {0o600}


def test_backup_never_overwrites_an_existing_file(sqlite_path: Path, tmp_path: Path) -> None:
    target = tmp_path / "precious.db"
    target.write_bytes(b"someone else's file")
    with CheckpointStore(sqlite_path) as store:
        store.manager("s").create("x", {})
        with pytest.raises(CheckpointDBError, match="already exists") as caught:
            store.backup(target)
        assert str(target) in str(caught.value)
        with pytest.raises(CheckpointDBError, match="already exists"):
            store.backup(sqlite_path)
    assert target.read_bytes() == b"someone else's file"


def test_backup_into_a_missing_directory_fails_cleanly(sqlite_path: Path, tmp_path: Path) -> None:
    target = tmp_path / "missing" / "backup.db"
    with CheckpointStore(sqlite_path) as store, pytest.raises(CheckpointDBError) as caught:
        store.backup(target)
    assert str(target) in str(caught.value)
    assert not target.parent.exists()


def test_backup_of_a_postgresql_store_points_to_pg_dump(postgres_url: str, tmp_path: Path) -> None:
    with CheckpointStore(postgres_url) as store, pytest.raises(CheckpointDBError, match="pg_dump"):
        store.backup(tmp_path / "backup.db")
    assert list(tmp_path.iterdir()) == []


def test_json_text_written_by_hand_reads_back_and_text_after_it_is_corruption(
    sqlite_path: Path,
) -> None:
    with CheckpointStore(sqlite_path) as store:
        created = store.manager("s").create("x", {"a": 1})
    connection = sqlite3.connect(sqlite_path)
    with connection:
        connection.execute("UPDATE checkpoints SET data = ' {\"a\": [1, 2]}\n', metadata = '{ }'")
    with CheckpointStore(sqlite_path) as store:
        found = store.manager("s").get(created.id)
        assert found is not None and (found.data, found.metadata) == ({"a": [1, 2]}, {})
    with connection:
        connection.execute("UPDATE checkpoints SET data = '{\"a\": 1} and more'")
    connection.close()
    with CheckpointStore(sqlite_path) as store, pytest.raises(CorruptDatabaseError) as caught:
        list(store.manager("s").find(limit=1))
    assert "Extra data" in str(caught.value)


def test_a_damaged_payload_is_reported_as_corruption_naming_the_file(sqlite_path: Path) -> None:
    with CheckpointStore(sqlite_path) as store:
        created = store.manager("s").create("x", {"marker": "unmistakable-marker"})
    raw = sqlite_path.read_bytes()
    assert raw.count(b'"unmistakable-marker"') == 1
    # Same length, so the page stays well-formed and only the JSON is broken.
    sqlite_path.write_bytes(raw.replace(b'"unmistakable-marker"', b'{unmistakable-marker"'))
    assert integrity(sqlite_path) == [("ok",)]

    with CheckpointStore(sqlite_path) as store, pytest.raises(CorruptDatabaseError) as caught:
        store.manager("s").get(created.id)
    assert str(sqlite_path) in str(caught.value)
