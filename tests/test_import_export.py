"""Export in the original format; import all or nothing, with ids that never collide."""

from __future__ import annotations

import io
import itertools
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from checkpointdb import Checkpoint, CheckpointManager, CheckpointStore, ImportFormatError


def _fill(store: CheckpointStore, session: str, count: int) -> list[Checkpoint]:
    mgr = store.manager(session, compress_after=None)
    return [mgr.create(f"n{i % 2}", {"i": i, "ü": "✓"}, {"m": i}) for i in range(count)]


def test_export_is_the_original_format(store: CheckpointStore) -> None:
    made = _fill(store, "s", 3)
    exported = json.loads(store.manager("s").export())
    assert exported == [cp.to_dict() for cp in made]
    assert [Checkpoint.from_dict(entry) for entry in exported] == made


def test_round_trip_between_two_databases_keeps_ids_order_and_times(
    new_url: Callable[[], str],
) -> None:
    with CheckpointStore(new_url()) as source, CheckpointStore(new_url()) as target:
        made = _fill(source, "agent", 6)
        source.manager("agent").compact(keep_recent=2)
        exported = source.manager("agent").export()
        mgr = target.manager("agent")
        assert mgr.import_checkpoints(exported) == len(json.loads(exported))
        assert mgr.export() == exported
        assert mgr.get(made[-1].id) == made[-1]
        assert mgr.create("next", {}).id == "agent:7"


def test_import_into_a_used_session_gives_fresh_ids_and_keeps_order(
    store: CheckpointStore,
) -> None:
    _fill(store, "s", 3)
    entries = [
        {"id": "s:2", "name": "dup", "timestamp": "2020-01-01T00:00:00+00:00", "data": {"a": 1}},
        {
            "id": "elsewhere:9",
            "name": "foreign",
            "timestamp": "2020-01-02T00:00:00+02:00",
            "data": {"b": 2},
        },
        {"id": "s:10", "name": "ahead", "timestamp": "2020-01-03T00:00:00Z", "data": {}},
        {"id": "s:5", "name": "behind", "timestamp": "2020-01-04T00:00:00+00:00", "data": {}},
    ]
    mgr = store.manager("s")
    assert mgr.import_checkpoints(json.dumps(entries)) == 4
    assert [(cp.id, cp.name) for cp in mgr][3:] == [
        ("s:4", "dup"),
        ("s:5", "foreign"),
        ("s:10", "ahead"),
        ("s:11", "behind"),
    ]
    foreign = mgr.get("s:5")
    assert foreign is not None and foreign.timestamp.isoformat() == "2020-01-01T22:00:00+00:00"
    assert mgr.create("new", {}).id == "s:12"


def _entry(**overrides: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": "s:1",
        "name": "ok",
        "timestamp": "2026-01-01T00:00:00+00:00",
        "data": {"k": 1},
        "metadata": {},
    }
    entry.update(overrides)
    return {k: v for k, v in entry.items() if v is not _MISSING}


_MISSING = object()
_GOOD = _entry()

MALFORMED: list[tuple[str, str, str]] = [
    ("truncated", json.dumps([_GOOD, _entry(id="s:2")])[:-15], "not valid JSON"),
    ("bom", "\ufeff" + json.dumps([_GOOD]), "not valid JSON"),
    ("not a list", json.dumps({"id": "s:1"}), "JSON list"),
    ("entry not object", json.dumps([_GOOD, 3]), "entry 1"),
    ("missing data", json.dumps([_GOOD, _entry(id="s:2", data=_MISSING)]), "entry 1: missing"),
    ("missing timestamp", json.dumps([_entry(timestamp=_MISSING)]), "timestamp"),
    ("data not dict", json.dumps([_GOOD, _entry(id="s:2", data=[1])]), "entry 1: data"),
    ("name not string", json.dumps([_entry(name=5)]), "entry 0: name"),
    ("naive timestamp", json.dumps([_entry(timestamp="2026-01-01T00:00:00")]), "no timezone"),
    ("bad timestamp", json.dumps([_entry(timestamp="yesterday")]), "ISO-8601"),
    ("id not string", json.dumps([_entry(id=7)]), "'id'"),
    ("duplicate ids", json.dumps([_GOOD, _entry(name="again")]), "entry 1: id 's:1'"),
    (
        "nan in data",
        '[{"id": "s:1", "name": "n", "timestamp": "2026-01-01T00:00:00Z", "data": {"x": NaN}}]',
        "NaN",
    ),
]


@pytest.mark.parametrize(("label", "text", "fragment"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_import_changes_nothing(
    store: CheckpointStore, label: str, text: str, fragment: str
) -> None:
    _fill(store, "s", 2)
    mgr = store.manager("s")
    before = (mgr.export(), store.session("s"))
    with pytest.raises(ImportFormatError) as excinfo:
        mgr.import_checkpoints(text)
    assert fragment in str(excinfo.value)
    assert (mgr.export(), store.session("s")) == before


def test_import_failing_in_the_database_writes_nothing(
    store: CheckpointStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fill(store, "s", 2)
    mgr = store.manager("s")
    before = (mgr.export(), store.session("s"))
    calls = 0
    original = store._repo.insert

    def failing_insert(*args: Any, **kwargs: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("disk went away")
        original(*args, **kwargs)

    monkeypatch.setattr(store._repo, "insert", failing_insert)
    entries = [_entry(id=f"s:{i}", name=f"e{i}") for i in range(10, 15)]
    with pytest.raises(RuntimeError):
        mgr.import_checkpoints(json.dumps(entries))
    assert calls == 3
    assert (mgr.export(), store.session("s")) == before


# -- an export is one moment -------------------------------------------------------

GENERATION_SIZE = 1500


def _refill(mgr: CheckpointManager, generation: int) -> None:
    """Clear the session, then create a whole generation in one transaction."""
    mgr.clear()
    mgr.create_many([("step", {"generation": generation, "i": i}) for i in range(GENERATION_SIZE)])


def _states_seen(exports: list[list[dict[str, Any]]]) -> list[tuple[int, int]]:
    """(entries, generations among them) of each export."""
    return [(len(doc), len({entry["data"]["generation"] for entry in doc})) for doc in exports]


def test_exports_during_a_clear_and_refill_show_a_state_that_existed(backend_url: str) -> None:
    """Writers clear and refill the session while it is exported again and again.

    Every state the session ever has is empty or one whole generation; an
    export read a page per transaction mixed generations.
    """
    with CheckpointStore(backend_url) as reader, CheckpointStore(backend_url) as writer:
        mgr = reader.manager("s", max_checkpoints=None, compress_after=None)
        _refill(writer.manager("s", max_checkpoints=None, compress_after=None), 0)
        stop = threading.Event()
        generations = itertools.count(1)

        def churn() -> None:
            wmgr = writer.manager("s", max_checkpoints=None, compress_after=None)
            while not stop.is_set():
                _refill(wmgr, next(generations))

        churner = threading.Thread(target=churn)
        churner.start()
        exports: list[list[dict[str, Any]]] = []
        try:
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline or len(exports) < 6:
                exports.append(json.loads(mgr.export()))
                buffer = io.StringIO()
                mgr.export_to(buffer, progress=lambda _n: time.sleep(0.0001))
                exports.append(json.loads(buffer.getvalue()))
        finally:
            stop.set()
            churner.join()
        assert next(generations) > 3, "the writer never got to refill during the exports"
        assert {state for state in _states_seen(exports)} <= {(0, 0), (GENERATION_SIZE, 1)}
