"""Schema revision 2: pinning, storage accounting, age-based retention, vacuum."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from checkpointdb import CheckpointStore, InvalidDataError


def _size(value: dict[str, Any]) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def _assert_accounting(store: CheckpointStore) -> None:
    """Every row's size is its JSON's, and each session's totals are its rows' sums."""
    with store._db.connect() as conn:
        rows = conn.execute(
            text("SELECT session_id, data, metadata, payload_bytes FROM checkpoints")
        ).all()
        sessions = conn.execute(
            text("SELECT id, checkpoint_count, payload_bytes FROM sessions")
        ).all()
    totals: dict[str, list[int]] = {}
    for session_id, data, meta, size in rows:
        data = json.loads(data) if isinstance(data, str) else data
        meta = json.loads(meta) if isinstance(meta, str) else meta
        assert size == _size(data) + _size(meta)
        totals.setdefault(session_id, [0, 0])
        totals[session_id][0] += 1
        totals[session_id][1] += size
    for session_id, count, size in sessions:
        assert [count, size] == totals.get(session_id, [0, 0]), session_id


def test_pinned_checkpoints_survive_compaction_and_the_cap(store: CheckpointStore) -> None:
    mgr = store.manager("s", max_checkpoints=6, compress_after=4, keep_recent=2)
    kept = mgr.create("step", {"i": 0})
    pinned = [mgr.create("step", {"i": i}, pin=i in (2, 3)) for i in range(1, 5)]
    for i in range(5, 20):
        mgr.create("step", {"i": i})
    ids = [cp.id for cp in mgr]
    assert kept.id in ids
    assert pinned[1].id in ids and pinned[2].id in ids
    assert all(cp.pinned for cp in mgr if cp.id in (pinned[1].id, pinned[2].id))
    assert mgr.get(pinned[1].id) is not None and mgr.get(pinned[1].id).pinned  # type: ignore[union-attr]
    _assert_accounting(store)


def test_pins_do_not_count_toward_the_cap(store: CheckpointStore) -> None:
    mgr = store.manager("s", max_checkpoints=3, compress_after=None)
    first = mgr.create("a", {})
    pins = [mgr.create("p", {"n": n}, pin=True) for n in range(4)]
    for n in range(6):
        mgr.create("b", {"n": n})
    unpinned = [cp for cp in mgr if not cp.pinned]
    # three unpinned rows stay (the first among them), plus every pin
    assert [cp.id for cp in unpinned] == [first.id, "s:10", "s:11"]
    assert {cp.id for cp in mgr if cp.pinned} == {cp.id for cp in pins}


def test_pin_and_unpin_by_id(store: CheckpointStore) -> None:
    mgr = store.manager("s", compress_after=None)
    made = [mgr.create("step", {"i": i}) for i in range(6)]
    assert mgr.pin(made[2].id) is True
    assert mgr.pin("s:99") is False and mgr.pin("other:1") is False and mgr.pin("junk") is False
    report = mgr.compact(keep_recent=1)
    assert made[2].id not in report.removed and report.kept["pinned"] == 1
    assert mgr.unpin(made[2].id) is True
    report = mgr.compact(keep_recent=1)
    assert report.removed == [made[2].id]


def test_compact_report_counts_rows_bytes_and_reasons(store: CheckpointStore) -> None:
    mgr = store.manager("s", compress_after=None)
    made = [mgr.create("a" if i % 2 else "b", {"i": i, "pad": "é" * i}) for i in range(10)]
    mgr.pin(made[3].id)
    preview = mgr.compact(keep_recent=2, dry_run=True)
    # first=0, recent=8,9, pinned=3, newest a/b in the middle: 7, 6
    gone = [made[i] for i in (1, 2, 4, 5)]
    assert preview.removed == [cp.id for cp in gone]
    assert preview.bytes_removed == sum(_size(cp.data) + _size(cp.metadata) for cp in gone)
    assert preview.kept == {"first": 1, "pinned": 1, "recent": 2, "newest_of_name": 2}
    assert preview.remaining == 6 and preview.rows_removed == 4
    assert len(mgr) == 10
    done = mgr.compact(keep_recent=2)
    assert (done.removed, done.bytes_removed, done.kept) == (
        preview.removed,
        preview.bytes_removed,
        preview.kept,
    )
    info = store.session("s")
    assert info is not None and info.checkpoint_count == 6
    _assert_accounting(store)


def _backdate(store: CheckpointStore, session: str, seqs: list[int], age: timedelta) -> None:
    """Make some checkpoints look old (as if written ``age`` ago)."""
    when = datetime.now(UTC) - age
    value: Any = when.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if store.dialect == "sqlite" else when
    with store._db.connect() as conn, conn.begin():
        for seq in seqs:
            conn.execute(
                text("UPDATE checkpoints SET created_at = :t WHERE session_id = :s AND seq = :q"),
                {"t": value, "s": session, "q": seq},
            )


def test_compact_older_than_only_touches_old_checkpoints(store: CheckpointStore) -> None:
    mgr = store.manager("s", compress_after=None)
    for i in range(8):
        mgr.create("step", {"i": i})
    _backdate(store, "s", [1, 2, 3, 4], timedelta(days=10))
    report = mgr.compact(keep_recent=0, older_than=timedelta(days=7))
    # 1 is the first; the newest "step" is 8 (young anyway), so old 2, 3, 4 all go
    assert report.removed == ["s:2", "s:3", "s:4"]
    assert report.kept == {"first": 1, "too_recent": 4}
    with pytest.raises(InvalidDataError, match="older_than"):
        mgr.compact(older_than=timedelta(days=-1))


def test_expire_applies_age_retention_across_sessions(store: CheckpointStore) -> None:
    for session in ("a", "b", "c"):
        mgr = store.manager(session, compress_after=None)
        for i in range(5):
            mgr.create("step", {"i": i}, pin=(session == "b" and i == 1))
    _backdate(store, "a", [1, 2, 3], timedelta(days=40))
    _backdate(store, "b", [1, 2, 3, 4, 5], timedelta(days=40))
    preview = store.expire(timedelta(days=30), dry_run=True)
    assert preview.removed == {"a": ["a:1", "a:2", "a:3"], "b": ["b:1", "b:3", "b:4"]}
    assert preview.rows_removed == 6 and preview.bytes_removed == 6 * (_size({"i": 0}) + _size({}))
    assert sum(info.checkpoint_count for info in store.sessions()) == 15
    report = store.expire(timedelta(days=30))
    assert report.removed == preview.removed
    # pinned b:2 and each session's newest checkpoint stay
    assert [cp.id for cp in store.manager("b")] == ["b:2", "b:5"]
    assert len(store.manager("c")) == 5
    _assert_accounting(store)
    assert store.expire(timedelta(days=30)).rows_removed == 0


def test_accounting_holds_through_every_write(store: CheckpointStore) -> None:
    mgr = store.manager("s", max_checkpoints=8, compress_after=5, keep_recent=2)
    for i in range(30):
        mgr.create(f"n{i % 3}", {"i": i, "text": "ü" * (i % 7)}, {"m": [i]}, pin=i == 4)
    _assert_accounting(store)
    other = store.manager("t", compress_after=None)
    other.import_checkpoints(mgr.export())
    _assert_accounting(store)
    summary = other.get_summary()
    info = store.session("t")
    assert info is not None and summary["payload_bytes"] == info.payload_bytes > 0
    other.clear()
    _assert_accounting(store)
    info = store.session("t")
    assert info is not None and info.payload_bytes == 0


def test_pins_survive_export_and_import(store: CheckpointStore) -> None:
    mgr = store.manager("s")
    mgr.create("a", {})
    mgr.create("b", {}, pin=True)
    exported = json.loads(mgr.export())
    assert "pinned" not in exported[0] and exported[1]["pinned"] is True
    target = store.manager("t")
    target.import_checkpoints(json.dumps(exported))
    assert [cp.pinned for cp in target] == [False, True]


def test_vacuum_gives_space_back_on_sqlite(sqlite_path: Path) -> None:
    with CheckpointStore(sqlite_path) as store:
        mgr = store.manager("s", compress_after=None, max_checkpoints=None)
        for i in range(300):
            mgr.create("step", {"i": i, "pad": "x" * 4000})
        mgr.clear()
        report = store.vacuum()
        assert report.bytes_after < report.bytes_before / 10
        assert mgr.create("after", {}).id == "s:301"
    assert sqlite_path.stat().st_size == report.bytes_after


def test_vacuum_runs_on_postgres(postgres_url: str) -> None:
    with CheckpointStore(postgres_url) as store:
        store.manager("s").create("a", {"x": 1})
        report = store.vacuum()
        assert report.bytes_before > 0 and report.bytes_after > 0
        assert store.manager("s").create("b", {}).id == "s:2"
