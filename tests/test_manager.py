"""The original API on the database: return shapes, ordering, compaction, cap, callbacks."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import pickle
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from checkpointdb import Checkpoint, CheckpointStore, NotFoundError
from checkpointdb.repository import PAGE_SIZE


def test_ids_are_session_and_seq_and_session_ids_may_hold_colons(store: CheckpointStore) -> None:
    mgr = store.manager("team:agent:7")
    ids = [mgr.create("step", {"i": i}).id for i in range(3)]
    assert ids == ["team:agent:7:1", "team:agent:7:2", "team:agent:7:3"]
    found = mgr.get("team:agent:7:2")
    assert found is not None and found.data == {"i": 1}
    assert found.session_id == "team:agent:7" and found.seq == 2
    assert mgr.get("team:agent:2") is None
    assert store.manager("team:agent").get("team:agent:7:2") is None


def test_checkpoint_round_trips_exactly_with_aware_utc_timestamp(store: CheckpointStore) -> None:
    mgr = store.manager("s")
    data = {"text": "zürich ✓", "n": [1, 2.5, None, True], "deep": {"a": {"b": {}}}, "t": (1, 2)}
    meta = {"run": "r1", "agent": {"role": "planner"}}
    created = mgr.create("task_started", data, meta)
    fetched = mgr.get(created.id)
    assert fetched == created
    assert fetched.data == {**data, "t": [1, 2]}
    assert fetched.metadata == meta
    assert fetched.timestamp.tzinfo == timezone.utc
    assert abs(fetched.timestamp - datetime.now(timezone.utc)) < timedelta(minutes=1)


def test_returned_checkpoint_is_not_the_callers_dict(store: CheckpointStore) -> None:
    mgr = store.manager("s")
    state = {"step": 1}
    created = mgr.create("a", state)
    state["step"] = 2
    assert created.data == {"step": 1}
    assert mgr.get_latest() == created


def test_a_created_checkpoint_reads_like_a_fetched_one(store: CheckpointStore) -> None:
    # create() decodes its returned data on first use: every way of reading
    # a checkpoint must see it, and see one copy.
    mgr = store.manager("s")
    created = mgr.create("a", {"t": (1, 2), "n": {"x": 1.5}}, {"m": 1})
    fetched = mgr.get(created.id)
    assert pickle.loads(pickle.dumps(created)) == fetched
    assert dataclasses.asdict(created) == dataclasses.asdict(fetched)
    assert copy.deepcopy(created) == fetched
    assert dataclasses.replace(created, name="b").data == {"t": [1, 2], "n": {"x": 1.5}}
    assert created.data is created.data
    assert created == fetched
    assert not hasattr(created, "missing")


def test_lookup_methods_follow_the_original_api(store: CheckpointStore) -> None:
    mgr = store.manager("s", compress_after=None)
    for i, name in enumerate(["plan", "tool", "tool", "report", "tool"]):
        mgr.create(name, {"i": i})
    assert [cp.data["i"] for cp in mgr.get_by_name("tool")] == [4, 2, 1]
    assert [cp.data["i"] for cp in mgr.get_by_name("tool", limit=2)] == [4, 2]
    assert mgr.get_by_name("missing") == []
    latest = mgr.get_latest()
    assert latest is not None and latest.data == {"i": 4}
    by_name = mgr.get_latest("plan")
    assert by_name is not None and by_name.data == {"i": 0}
    assert mgr.get_latest("missing") is None
    assert [cp.id for cp in mgr.get_all()] == [f"s:{i}" for i in range(1, 6)]
    assert [cp.id for cp in mgr] == [f"s:{i}" for i in range(1, 6)]
    assert len(mgr) == 5
    assert mgr.rollback_to("s:3") == {"i": 2}
    assert mgr.rollback_to("s:99") is None
    assert mgr.rollback_to("not an id") is None
    assert mgr.get(42) is None  # type: ignore[arg-type]


def test_empty_session_answers_like_the_original_api(store: CheckpointStore) -> None:
    mgr = store.manager("empty")
    assert mgr.get_latest() is None
    assert mgr.get_all() == []
    assert len(mgr) == 0
    assert mgr.clear() == 0
    assert mgr.get_summary() == {
        "total_count": 0,
        "unique_names": 0,
        "names": {},
        "first_checkpoint": None,
        "last_checkpoint": None,
        "duration_seconds": 0,
        "payload_bytes": 0,
    }


def test_time_ranges_are_strict_since_and_inclusive_between(store: CheckpointStore) -> None:
    mgr = store.manager("s")
    made = [mgr.create("step", {"i": i}) for i in range(4)]
    assert [cp.id for cp in mgr.get_since(made[1].timestamp)] == [cp.id for cp in made[2:]]
    between = mgr.get_between(made[1].timestamp, made[2].timestamp)
    assert [cp.id for cp in between] == [made[1].id, made[2].id]
    other_zone = made[0].timestamp.astimezone(timezone(timedelta(hours=-7)))
    assert len(mgr.get_since(other_zone)) == 3


def test_ordering_is_by_seq_even_when_the_clock_jumps_back(
    store: CheckpointStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import checkpointdb.manager as manager_module

    times = iter(
        [
            datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc),
            datetime(2026, 1, 1, 11, 0, tzinfo=timezone.utc),  # NTP stepped back an hour
            datetime(2026, 1, 1, 11, 30, tzinfo=timezone.utc),
        ]
    )

    class Clock(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return next(times)

    monkeypatch.setattr(manager_module, "datetime", Clock)
    mgr = store.manager("s")
    for name in ("first", "second", "third"):
        mgr.create(name, {})
    assert [cp.name for cp in mgr] == ["first", "second", "third"]
    latest = mgr.get_latest()
    assert latest is not None and latest.name == "third"
    summary = mgr.get_summary()
    assert summary["first_checkpoint"]["name"] == "first"
    assert summary["last_checkpoint"]["name"] == "third"


def test_summary_has_the_original_keys_and_values(store: CheckpointStore) -> None:
    mgr = store.manager("s")
    first = mgr.create("plan", {"i": 0})
    mgr.create("tool", {"i": 1})
    last = mgr.create("tool", {"i": 2})
    summary = mgr.get_summary()
    assert summary == {
        "total_count": 3,
        "unique_names": 2,
        "names": {"plan": 1, "tool": 2},
        "first_checkpoint": first.to_dict(),
        "last_checkpoint": last.to_dict(),
        "duration_seconds": (last.timestamp - first.timestamp).total_seconds(),
        "payload_bytes": 3 * len('{"i":0}') + 3 * len("{}"),
    }
    json.dumps(summary)


def test_ids_never_repeat_after_clear_or_compaction(store: CheckpointStore) -> None:
    mgr = store.manager("s", compress_after=5, keep_recent=2)
    for _ in range(12):
        mgr.create("step", {})
    live = len(mgr)
    assert live < 12
    assert mgr.clear() == live
    assert len(mgr) == 0
    assert mgr.create("again", {}).id == "s:13"
    info = store.session("s")
    assert info is not None and info.last_seq == 13 and info.checkpoint_count == 1


def test_max_checkpoints_is_enforced_keeping_the_first(store: CheckpointStore) -> None:
    mgr = store.manager("s", max_checkpoints=5, compress_after=None)
    for i in range(9):
        mgr.create(f"n{i}", {"i": i})
    assert [cp.seq for cp in mgr] == [1, 6, 7, 8, 9]
    assert len(mgr) == 5


def test_compaction_with_tiny_compress_after_keeps_the_first_once(store: CheckpointStore) -> None:
    mgr = store.manager("s", max_checkpoints=None, compress_after=2, keep_recent=20)
    for _ in range(30):
        mgr.create("step", {})
    seqs = [cp.seq for cp in mgr]
    assert seqs[0] == 1
    # first, the newest "step" among the middle, and the 20 most recent
    assert len(seqs) == len(set(seqs)) == 22
    assert seqs == [1, *range(10, 31)]


def test_compaction_keeps_first_recent_and_newest_of_each_name_in_one_delete(
    sqlite_path: Path,
) -> None:
    store = CheckpointStore(sqlite_path)
    statements: list[str] = []
    event.listen(
        store._db.engine,
        "connect",
        lambda dbapi, _record: dbapi.set_trace_callback(statements.append),
    )
    store._db.close_idle()
    mgr = store.manager("s", max_checkpoints=None, compress_after=10, keep_recent=3)
    names = ["plan", "tool", "tool", "search", "tool", "plan", "tool", "tool", "tool", "tool"]
    for i, name in enumerate(names):
        mgr.create(name, {"i": i})
    before = store.session("s")
    statements.clear()
    mgr.create("report", {"i": 10})  # 11 live > compress_after: compaction runs
    deletes = [s for s in statements if s.lstrip().upper().startswith("DELETE")]
    # SQLite traces a statement again for each foreign-key action it runs
    # (revision 0005's tables cascade from checkpoints): one distinct DELETE.
    assert len(set(deletes)) == 1
    # seqs 1..11: first=1; recent=9,10,11; middle 2..8 -> newest plan=6, tool=8, search=4
    assert [cp.seq for cp in mgr] == [1, 4, 6, 8, 9, 10, 11]
    after = store.session("s")
    assert before is not None and after is not None
    assert after.last_seq == 11 and after.checkpoint_count == 7
    store.close()


def test_explicit_compaction_dry_run_changes_nothing(store: CheckpointStore) -> None:
    mgr = store.manager("s", compress_after=None)
    for i in range(10):
        mgr.create("a" if i % 2 else "b", {"i": i})
    preview = mgr.compact(keep_recent=2, dry_run=True)
    # first=1, recent=9,10, newest of "a" and "b" in the middle: 8 and 7
    assert preview.dry_run and preview.removed == ["s:2", "s:3", "s:4", "s:5", "s:6"]
    assert preview.remaining == 5
    assert len(mgr) == 10
    done = mgr.compact(keep_recent=2)
    assert done.removed == preview.removed and len(mgr) == 5
    assert [cp.seq for cp in mgr] == [1, 7, 8, 9, 10]


def test_callback_runs_after_commit_and_its_failure_is_logged(
    store: CheckpointStore, caplog: pytest.LogCaptureFixture
) -> None:
    mgr = store.manager("s")
    seen: list[tuple[str, int]] = []

    def record(cp: Checkpoint) -> None:
        # The checkpoint is committed: another connection sees it.
        seen.append((cp.id, len(store.manager("s"))))

    mgr.on_checkpoint(record)
    mgr.create("a", {})
    assert seen == [("s:1", 1)]

    def explode(cp: Checkpoint) -> None:
        raise RuntimeError("callback bug")

    mgr.on_checkpoint(explode)
    with caplog.at_level(logging.ERROR, logger="checkpointdb"):
        created = mgr.create("b", {})
    assert mgr.get(created.id) == created
    assert "callback bug" in caplog.text and "Traceback" in caplog.text


def test_iteration_streams_a_large_session_in_pages(store: CheckpointStore) -> None:
    mgr = store.manager("big", compress_after=None, max_checkpoints=None)
    total = PAGE_SIZE * 2 + 7
    mgr.import_checkpoints(
        json.dumps(
            [
                {"id": f"x:{i}", "name": "n", "timestamp": "2026-01-01T00:00:00+00:00", "data": {}}
                for i in range(total)
            ]
        )
    )
    iterator = iter(mgr)
    first = next(iterator)
    assert first.seq == 1
    assert sum(1 for _ in iterator) == total - 1
    assert len(mgr) == total


def test_sessions_lists_counts_and_delete_session_forgets_it(store: CheckpointStore) -> None:
    a = store.manager("a")
    for _ in range(3):
        a.create("x", {})
    store.manager("b").create("y", {})
    infos = {info.id: info for info in store.sessions()}
    assert {k: (v.checkpoint_count, v.last_seq) for k, v in infos.items()} == {
        "a": (3, 3),
        "b": (1, 1),
    }
    assert infos["a"].created_at <= infos["a"].updated_at
    assert store.delete_session("a") == 3
    assert [info.id for info in store.sessions()] == ["b"]
    assert a.get_all() == []
    with pytest.raises(NotFoundError, match="'a'"):
        store.delete_session("a")


def test_original_style_constructor_with_store(store: CheckpointStore) -> None:
    from checkpointdb import CheckpointManager

    mgr = CheckpointManager("s", 10, 5, store=store)
    assert (mgr.max_checkpoints, mgr.compress_after, mgr.keep_recent) == (10, 5, 20)
    mgr.create("a", {"x": 1})
    assert store.manager("s").get("s:1") is not None


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"max_checkpoints": -1}, "max_checkpoints"),
        ({"max_checkpoints": "100"}, "max_checkpoints"),
        ({"max_checkpoints": 10.0}, "max_checkpoints"),
        ({"compress_after": -5}, "compress_after"),
        ({"keep_recent": -1}, "keep_recent"),
    ],
)
def test_bad_manager_settings_are_refused(
    store: CheckpointStore, kwargs: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(ValueError, match=fragment):
        store.manager("s", **kwargs)


def test_the_smallest_settings_work_and_keep_first_and_newest(
    store: CheckpointStore,
) -> None:
    for cap in (0, 1):
        mgr = store.manager(f"cap{cap}", max_checkpoints=cap, compress_after=0, keep_recent=0)
        made = [mgr.create("step", {"i": i}) for i in range(5)]
        assert [cp.id for cp in mgr] == [made[0].id, made[-1].id]
        assert mgr.get_latest() == made[-1]


def test_an_imported_id_past_the_safe_range_gets_a_fresh_one(store: CheckpointStore) -> None:
    mgr = store.manager("s")
    mgr.create("a", {})
    entries = [
        {"id": f"s:{2**63 - 1}", "name": "huge", "timestamp": "2026-01-01T00:00:00Z", "data": {}},
        {"id": f"s:{2**53}", "name": "limit", "timestamp": "2026-01-01T00:00:00Z", "data": {}},
    ]
    assert mgr.import_checkpoints(json.dumps(entries)) == 2
    assert [cp.id for cp in mgr] == ["s:1", "s:2", f"s:{2**53}"]
    assert mgr.create("after", {}).id == f"s:{2**53 + 1}"


def test_bounds_beyond_utc_range_are_refused_clearly(store: CheckpointStore) -> None:
    from checkpointdb import InvalidDataError

    mgr = store.manager("s")
    mgr.create("a", {})
    too_early = datetime.min.replace(tzinfo=timezone(timedelta(hours=5)))
    with pytest.raises(InvalidDataError, match="outside the range"):
        mgr.get_since(too_early)
    with pytest.raises(InvalidDataError, match="outside the range"):
        list(mgr.find(since=too_early))
    entry = {"id": "s:9", "name": "n", "timestamp": "0001-01-01T00:00:00+05:00", "data": {}}
    with pytest.raises(ValueError, match="entry 0: field 'timestamp'"):
        mgr.import_checkpoints(json.dumps([entry]))


def test_two_managers_of_one_session_share_state(new_url: Callable[[], str]) -> None:
    url = new_url()
    with CheckpointStore(url) as one, CheckpointStore(url) as two:
        one.manager("s").create("a", {})
        assert two.manager("s").create("b", {}).id == "s:2"
        assert [cp.name for cp in one.manager("s")] == ["a", "b"]
