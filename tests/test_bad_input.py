"""Bad input is refused by name before anything is written; hostile strings stay literal.

Every refusal test compares the whole store (sessions, counters, rows)
before and after, and checks that the message names the bad value or the
path to it. Everything runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checkpointdb import (
    CheckpointDBError,
    CheckpointManager,
    CheckpointStore,
    ImportFormatError,
    InvalidDataError,
    NaiveDatetimeError,
    PayloadTooLargeError,
)

SESSION = "victim"
MiB = 1024 * 1024


def snapshot(store: CheckpointStore) -> tuple[Any, ...]:
    """Everything a refused call must leave unchanged."""
    sessions = store.sessions()
    return (
        [(info.id, info.checkpoint_count, info.last_seq, info.updated_at) for info in sessions],
        [
            [(cp.id, cp.name, cp.timestamp, cp.data, cp.metadata) for cp in store.manager(info.id)]
            for info in sessions
        ],
    )


@contextmanager
def refused(
    store: CheckpointStore, error: type[Exception], *fragments: str
) -> Iterator[pytest.ExceptionInfo[Exception]]:
    """The block raises ``error`` naming every fragment, and the store is unchanged."""
    before = snapshot(store)
    with pytest.raises(error) as caught:
        yield caught
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message
    assert snapshot(store) == before


@pytest.fixture
def manager(store: CheckpointStore) -> CheckpointManager:
    """A session that already holds one checkpoint, so its counters exist."""
    existing = store.manager(SESSION)
    existing.create("existing", {"n": 1}, {"m": 1})
    return existing


@contextmanager
def store_like(store: CheckpointStore, **settings_: Any) -> Iterator[CheckpointStore]:
    """Another store on the same database, with other settings."""
    with CheckpointStore(store.url, **settings_) as other:
        yield other


# -- names and session ids -----------------------------------------------------

BAD_IDENTIFIERS: list[tuple[str, Any, str]] = [
    ("empty", "", "must not be empty"),
    ("none", None, "NoneType"),
    ("int", 42, "int 42"),
    ("bytes", b"bytes", "bytes b'bytes'"),
    ("list", ["list"], "list"),
    ("256-chars", "x" * 256, "256 characters"),
    ("1MB", "x" * 1_000_000, "1000000 characters"),
    ("newline", "line\nbreak", "'\\n'"),
    ("cr", "carriage\rreturn", "'\\r'"),
    ("tab", "tab\there", "'\\t'"),
    ("nul", "nul\x00byte", "'\\x00'"),
    ("ansi-escape", "escape\x1b[31m", "'\\x1b'"),
    ("del", "del\x7f", "'\\x7f'"),
    ("c1-control", "c1\x85", "'\\x85'"),
    ("paragraph-separator", "para\u2029graph", "'\\u2029'"),
    ("lone-surrogate", "lone\ud800surrogate", "'\\ud800'"),
]


def test_bad_names_are_refused_by_name_and_nothing_is_written(
    store: CheckpointStore, manager: CheckpointManager, subtests: pytest.Subtests
) -> None:
    for case, bad, fragment in BAD_IDENTIFIERS:
        with subtests.test(case), refused(store, InvalidDataError, "name", fragment):
            manager.create(bad, {"n": 2})


def test_bad_session_ids_are_refused_by_name_and_nothing_is_written(
    store: CheckpointStore, manager: CheckpointManager, subtests: pytest.Subtests
) -> None:
    calls: list[tuple[str, Callable[[Any], Any]]] = [
        ("manager", lambda bad: store.manager(bad).create("x", {})),
        ("constructor", lambda bad: CheckpointManager(bad, store=store)),
        ("session", store.session),
        ("delete_session", store.delete_session),
    ]
    for case, bad, fragment in BAD_IDENTIFIERS:
        for call_name, call in calls:
            with (
                subtests.test(f"{case} via {call_name}"),
                refused(store, InvalidDataError, "session_id", fragment),
            ):
                call(bad)


def test_names_and_session_ids_of_exactly_255_characters_are_accepted(
    store: CheckpointStore,
) -> None:
    longest = "n" * 255
    created = store.manager(longest).create(longest, {})
    assert created.id == f"{longest}:1"
    assert store.manager(longest).get_by_name(longest) == [created]


UNICODE_IDENTIFIERS = [
    "日本語のタスク",
    "タスク\u3000開始",  # ideographic space, common in Japanese text
    "a\u00a0b",  # no-break space
    "👩\u200d💻 coding",  # an emoji joined with a zero-width joiner
    "عربي",
    "\u202eright-to-left override",
    "e\u0301",  # e + combining acute: not the same name as "é"
    "é",
    "\U0010fffd",  # private use, the last plane
]


def test_printable_unicode_names_and_session_ids_are_accepted(
    store: CheckpointStore, subtests: pytest.Subtests
) -> None:
    for name in UNICODE_IDENTIFIERS:
        with subtests.test(name):
            created = store.manager(name).create(name, {"name": name})
            assert store.manager(name).get(created.id) == created
            assert store.manager(name).get_by_name(name) == [created]


# -- payloads that cannot round-trip ------------------------------------------


class Opaque:
    """An arbitrary object an agent might leave in its state."""


NOT_JSON: list[tuple[str, Any, str]] = [
    ("nan", float("nan"), "nan"),
    ("infinity", float("inf"), "inf"),
    ("minus-infinity", float("-inf"), "-inf"),
    ("int-key", {1: "one"}, "key 1 is a int"),
    ("none-key", {None: "none"}, "key None"),
    ("bool-key", {True: "yes"}, "key True is a bool"),
    ("tuple-key", {(1, 2): "tuple"}, "key (1, 2)"),
    ("nul-key", {"nul\x00key": 1}, "NUL"),
    ("set", {1, 2}, "set"),
    ("frozenset", frozenset({1}), "frozenset"),
    ("bytes", b"raw", "bytes b'raw'"),
    ("bytearray", bytearray(b"raw"), "bytearray"),
    ("datetime", datetime(2026, 1, 1, tzinfo=UTC), "datetime"),
    ("date", date(2026, 1, 1), "date"),
    ("timedelta", timedelta(seconds=1), "timedelta"),
    ("decimal", Decimal("1.10"), "Decimal"),
    ("complex", complex(1, 2), "complex"),
    ("object", Opaque(), "Opaque"),
    ("range", range(3), "range"),
    ("iterator", iter([1]), "list_iterator"),
    ("nul-string", "nul\x00in a string", "NUL"),
    ("lone-surrogate", "lone \udc00 surrogate", "surrogate"),
]


def test_values_that_cannot_round_trip_in_data_are_refused_with_their_path(
    store: CheckpointStore, manager: CheckpointManager, subtests: pytest.Subtests
) -> None:
    for case, bad, fragment in NOT_JSON:
        # A lone surrogate is found when encoding, where the path is gone.
        path = () if case == "lone-surrogate" else ("data['steps'][1]['score']",)
        with subtests.test(case), refused(store, InvalidDataError, fragment, *path):
            manager.create("bad", {"steps": [0, {"score": bad}]})


def test_values_that_cannot_round_trip_in_metadata_are_refused(
    store: CheckpointStore, manager: CheckpointManager, subtests: pytest.Subtests
) -> None:
    for case, bad, fragment in NOT_JSON:
        with subtests.test(case), refused(store, InvalidDataError, "metadata", fragment):
            manager.create("bad", {"fine": True}, {"tags": [bad]})


@pytest.mark.parametrize("bad", [[], None, "state", 7, ({"a": 1},)], ids=repr)
def test_data_that_is_not_a_dict_is_refused(
    store: CheckpointStore, manager: CheckpointManager, bad: Any
) -> None:
    with refused(store, InvalidDataError, "data must be a dict", type(bad).__name__):
        manager.create("bad", bad)


def test_metadata_that_is_not_a_dict_is_refused(
    store: CheckpointStore, manager: CheckpointManager
) -> None:
    with refused(store, InvalidDataError, "metadata must be a dict", "list"):
        manager.create("bad", {}, ["tag"])  # type: ignore[arg-type]


def test_circular_references_are_refused(
    store: CheckpointStore, manager: CheckpointManager
) -> None:
    looped: dict[str, Any] = {"name": "loop"}
    looped["self"] = looped
    with refused(store, InvalidDataError, "circular reference", "data['self']"):
        manager.create("bad", looped)
    inner: list[Any] = []
    inner.append(inner)
    with refused(store, InvalidDataError, "circular reference", "data['list'][0]"):
        manager.create("bad", {"list": inner})
    first: dict[str, Any] = {}
    second: dict[str, Any] = {"back": first}
    first["forward"] = second
    with refused(store, InvalidDataError, "circular reference", "metadata['a']['forward']"):
        manager.create("bad", {}, {"a": first})


def test_a_value_shared_twice_is_not_mistaken_for_a_cycle(manager: CheckpointManager) -> None:
    shared = {"k": [1, 2]}
    created = manager.create("shared", {"a": shared, "b": shared, "c": [shared, shared]})
    assert manager.get(created.id) is not None
    assert manager.get(created.id).data == {  # type: ignore[union-attr]
        "a": shared,
        "b": shared,
        "c": [shared, shared],
    }


def nested(levels: int, container: str = "dict") -> Any:
    """``levels`` containers, one inside the next (the outermost is a dict)."""
    value: Any = "bottom"
    for _ in range(levels - 1):
        value = {"d": value} if container == "dict" else [value]
    return {"d": value}


@pytest.mark.parametrize("container", ["dict", "list"])
def test_nesting_up_to_the_limit_round_trips_and_deeper_is_refused(
    store: CheckpointStore, manager: CheckpointManager, container: str
) -> None:
    deepest = nested(100, container)
    created = manager.create("deep", deepest)
    assert manager.get(created.id).data == deepest  # type: ignore[union-attr]
    with refused(store, InvalidDataError, "deeper than the limit of 100"):
        manager.create("too-deep", nested(101, container))
    with refused(store, InvalidDataError, "deeper than the limit of 100"):
        manager.create("far-too-deep", nested(100_000, container))


def test_nesting_limit_is_configurable(store: CheckpointStore) -> None:
    with store_like(store, max_depth=3) as shallow:
        manager = shallow.manager(SESSION)
        manager.create("ok", nested(3))
        with refused(shallow, InvalidDataError, "deeper than the limit of 3"):
            manager.create("deep", nested(4))


def test_payload_over_the_configured_maximum_is_refused_with_the_limit(
    store: CheckpointStore,
) -> None:
    with store_like(store, max_payload_bytes=1000) as small:
        manager = small.manager(SESSION)
        # The limit bounds data and metadata together; metadata {} is 2 bytes.
        manager.create("fits", {"p": "x" * 990})  # {"p":"..."} is 998 bytes
        manager.create("fits-utf8", {"p": "é" * 495})  # two bytes each
        manager.create("fits-split", {"p": "x" * 490}, {"q": "y" * 494})  # 498 + 502
        with refused(small, PayloadTooLargeError, "1001 bytes", "limit", "1000 bytes"):
            manager.create("over", {"p": "x" * 991})
        with refused(small, PayloadTooLargeError, "1002 bytes", "1000 bytes"):
            manager.create("over-utf8", {"p": "é" * 496})
        with refused(small, PayloadTooLargeError, "metadata", "1000 bytes"):
            manager.create("meta-over", {}, {"p": "x" * 993})
        with refused(small, PayloadTooLargeError, "together", "1001 bytes", "1000 bytes"):
            manager.create("split-over", {"p": "x" * 491}, {"q": "y" * 494})
        assert [cp.name for cp in manager] == ["fits", "fits-utf8", "fits-split"]


def test_default_maximum_payload_is_16_mib_and_stated(
    store: CheckpointStore, manager: CheckpointManager
) -> None:
    assert store.max_payload_bytes == 16 * MiB
    with refused(store, PayloadTooLargeError, str(16 * MiB), "max_payload_bytes"):
        manager.create("huge", {"p": "x" * (16 * MiB)})


def test_bad_limits_are_refused_when_the_store_opens(
    store: CheckpointStore, subtests: pytest.Subtests
) -> None:
    for setting in ("max_payload_bytes", "max_depth"):
        for bad in (0, -1, 1.5, "100", None, True):
            with subtests.test(f"{setting}={bad!r}"), pytest.raises(CheckpointDBError) as caught:
                CheckpointStore(store.url, **{setting: bad})
            assert setting in str(caught.value)


# -- time bounds -------------------------------------------------------------------


NAIVE = datetime(2026, 1, 1, 12, 0)
AWARE = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

BAD_BOUNDS: list[Any] = [
    pytest.param(lambda m: m.get_since(NAIVE), "2026-01-01T12:00:00", id="since-naive"),
    pytest.param(lambda m: m.get_between(NAIVE, AWARE), "start", id="between-naive-start"),
    pytest.param(lambda m: m.get_between(AWARE, NAIVE), "end", id="between-naive-end"),
    pytest.param(lambda m: m.get_since("2026-01-01"), "'2026-01-01'", id="since-string"),
    pytest.param(lambda m: m.get_between(AWARE, 1767268800), "1767268800", id="between-number"),
]


@pytest.mark.parametrize(("call", "fragment"), BAD_BOUNDS)
def test_naive_or_non_datetime_bounds_are_refused(
    manager: CheckpointManager, call: Callable[[CheckpointManager], Any], fragment: str
) -> None:
    with pytest.raises(NaiveDatetimeError) as caught:
        call(manager)
    assert isinstance(caught.value, TypeError)  # as comparing a non-datetime bound raised before
    assert fragment in str(caught.value)


# -- import files ------------------------------------------------------------------


def entry(seq: int, **changes: Any) -> dict[str, Any]:
    """One export entry, as CheckpointManager.export() writes it."""
    base = {
        "id": f"elsewhere:{seq}",
        "name": "imported",
        "timestamp": "2026-01-01T00:00:00+00:00",
        "data": {"seq": seq},
        "metadata": {},
    }
    base.update(changes)
    return base


def without(field: str) -> dict[str, Any]:
    """An entry with one required field missing."""
    broken = entry(9)
    del broken[field]
    return broken


GOOD = [entry(1), entry(2)]

BAD_IMPORTS: list[tuple[str, str, str]] = [
    ("truncated", json.dumps(GOOD)[:-7], "not valid JSON"),
    ("bom", "\ufeff" + json.dumps(GOOD), "BOM"),
    ("empty", "", "not valid JSON"),
    ("object", json.dumps({"checkpoints": GOOD}), "must be a JSON list"),
    ("string", json.dumps("text"), "must be a JSON list"),
    ("null", "null", "must be a JSON list"),
    ("list-entry", json.dumps([*GOOD, ["not", "an", "object"]]), "entry 2: must be an object"),
    ("no-id", json.dumps([*GOOD, without("id")]), "entry 2: missing field(s) id"),
    ("no-name", json.dumps([*GOOD, without("name")]), "entry 2: missing field(s) name"),
    ("no-time", json.dumps([*GOOD, without("timestamp")]), "missing field(s) timestamp"),
    ("no-data", json.dumps([*GOOD, without("data")]), "entry 2: missing field(s) data"),
    ("int-id", json.dumps([*GOOD, entry(3, id=3)]), "entry 2: field 'id'"),
    ("empty-id", json.dumps([*GOOD, entry(3, id="")]), "entry 2: field 'id'"),
    ("int-name", json.dumps([*GOOD, entry(3, name=7)]), "entry 2: name must be a string"),
    ("control-name", json.dumps([*GOOD, entry(3, name="a\nb")]), "entry 2: name"),
    ("int-time", json.dumps([*GOOD, entry(3, timestamp=1767225600)]), "1767225600"),
    ("bad-time", json.dumps([*GOOD, entry(3, timestamp="yesterday")]), "'yesterday'"),
    ("naive-time", json.dumps([*GOOD, entry(3, timestamp="2026-01-01T00:00:00")]), "no timezone"),
    ("list-data", json.dumps([*GOOD, entry(3, data=[1, 2])]), "data must be a dict"),
    ("str-meta", json.dumps([*GOOD, entry(3, metadata="m")]), "metadata must be a dict"),
    ("nan-data", json.dumps([*GOOD, entry(3, data={"x": float("nan")})]), "data['x']"),
    ("dup-id", json.dumps([*GOOD, entry(1)]), "'elsewhere:1' already appears in entry 0"),
]


def test_malformed_imports_are_refused_naming_the_problem_and_import_nothing(
    store: CheckpointStore, manager: CheckpointManager, subtests: pytest.Subtests
) -> None:
    for case, text, fragment in BAD_IMPORTS:
        with subtests.test(case):
            with refused(store, ImportFormatError, fragment):
                manager.import_checkpoints(text)
            with refused(store, ImportFormatError, fragment):
                store.manager("fresh-session").import_checkpoints(text)


def test_import_of_bytes_is_refused(store: CheckpointStore, manager: CheckpointManager) -> None:
    with refused(store, ImportFormatError, "bytes"):
        manager.import_checkpoints(json.dumps(GOOD).encode())  # type: ignore[arg-type]


def test_a_valid_import_after_refusals_still_works(manager: CheckpointManager) -> None:
    assert manager.import_checkpoints(json.dumps(GOOD)) == 2
    assert [(cp.seq, cp.data) for cp in manager] == [
        (1, {"n": 1}),
        (2, {"seq": 1}),
        (3, {"seq": 2}),
    ]


# -- unknown and malformed ids ------------------------------------------------


UNKNOWN_IDS = [
    f"{SESSION}:2",
    f"{SESSION}:999",
    f"{SESSION}:9223372036854775807",
    f"{SESSION}:0",
    f"{SESSION}:-1",
    f"{SESSION}:01",
    f"{SESSION}:+1",
    f"{SESSION}:1.0",
    f"{SESSION}: 1",
    f"{SESSION}:1 ",
    f"{SESSION}:1\n",
    f"{SESSION}:abc",
    f"{SESSION}:",
    f"{SESSION}:\u0661",  # ARABIC-INDIC DIGIT ONE: a digit, but not ours
    f"{SESSION}:\u00b9",  # SUPERSCRIPT ONE
    f"{SESSION}:\uff11",  # FULLWIDTH DIGIT ONE
    "other:1",
    f"{SESSION}x:1",
    f"x{SESSION}:1",
    f"{SESSION.upper()}:1",
    f"{SESSION}:1:1",
    ":1",
    SESSION,
    "",
    "'; DROP TABLE checkpoints;--",
    None,
    1,
    1.0,
    b"victim:1",
    ["victim:1"],
    {"id": "victim:1"},
]


def test_get_and_rollback_to_of_unknown_or_malformed_ids_return_none(
    store: CheckpointStore, manager: CheckpointManager, subtests: pytest.Subtests
) -> None:
    before = snapshot(store)
    for checkpoint_id in UNKNOWN_IDS:
        with subtests.test(repr(checkpoint_id)):
            assert manager.get(checkpoint_id) is None
            assert manager.rollback_to(checkpoint_id) is None
    assert manager.get(f"{SESSION}:1") is not None
    assert snapshot(store) == before


@pytest.mark.parametrize("seq", ["9223372036854775808", "99999999999999999999999"])
def test_get_of_an_id_beyond_the_64_bit_range_returns_none(
    manager: CheckpointManager, seq: str
) -> None:
    assert manager.get(f"{SESSION}:{seq}") is None
    assert manager.rollback_to(f"{SESSION}:{seq}") is None


# -- what is accepted comes back exactly --------------------------------------


def exact(value: Any) -> Any:
    """``value`` as it must come back: tuples become lists (the documented exception)."""
    if isinstance(value, tuple | list):
        return [exact(item) for item in value]
    if isinstance(value, dict):
        return {key: exact(item) for key, item in value.items()}
    return value


def same(left: Any, right: Any) -> bool:
    """Equal, and of the same JSON types all the way down (1 is not 1.0 is not True)."""
    if type(left) is not type(right):
        return False
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(same(left[k], right[k]) for k in left)
    if isinstance(left, list):
        return len(left) == len(right) and all(map(same, left, right))
    if isinstance(left, float):
        return left == right and math.copysign(1, left) == math.copysign(1, right)
    return bool(left == right)


text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=20)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    # -0.0 + 0.0 is 0.0: negative zero has tests of its own below.
    | st.floats(allow_nan=False, allow_infinity=False).map(lambda number: number + 0.0)
    | text
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(text, inner, max_size=4)
    ),
    max_leaves=15,
)
payloads = st.dictionaries(text, json_values, max_size=5)


@settings(
    max_examples=75, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=payloads, metadata=payloads)
def test_anything_accepted_comes_back_exactly(
    manager: CheckpointManager, data: dict[str, Any], metadata: dict[str, Any]
) -> None:
    created = manager.create("roundtrip", data, metadata)
    stored = manager.get(created.id)
    assert stored is not None
    for got in (created, stored):
        assert same(got.data, exact(data)), (got.data, data)
        assert same(got.metadata, exact(metadata)), (got.metadata, metadata)


EDGE_NUMBERS = [
    0.0,
    1e16,
    1e300,
    -1.7976931348623157e308,
    5e-324,
    0.1,
    2**53 + 1,
    10**40,
    -(2**63),
]


def test_numbers_at_the_edges_come_back_exactly(manager: CheckpointManager) -> None:
    for value in EDGE_NUMBERS:
        created = manager.create("number", {"v": value, "in": [value]})
        stored = manager.get(created.id)
        assert stored is not None
        assert same(stored.data, {"v": value, "in": [value]}), value


def _negative_zero_round_trip(url: str | Path) -> None:
    with CheckpointStore(url) as store:
        manager = store.manager(SESSION)
        created = manager.create("zero", {"v": -0.0})
        stored = manager.get(created.id)
        assert stored is not None
        assert math.copysign(1, stored.data["v"]) == -1


def test_negative_zero_keeps_its_sign_on_sqlite(sqlite_path: Path) -> None:
    _negative_zero_round_trip(sqlite_path)


@pytest.mark.xfail(
    strict=True,
    reason="JSONB stores numbers as numeric, which has no negative zero: -0.0 comes back "
    "as 0.0 (equal, but not the value given)",
)
def test_negative_zero_keeps_its_sign_on_postgresql(postgres_url: str) -> None:
    _negative_zero_round_trip(postgres_url)


# -- hostile strings ----------------------------------------------------------------


HOSTILE = [
    "'; DROP TABLE checkpoints;--",
    '"; DROP TABLE sessions; --',
    "%",
    "_",
    "a%",
    "%a",
    "a_c",
    "abc",
    '"',
    "'",
    "''",
    "\\",
    "\\%",
    "\\_",
    "*",
    "?",
    "[a]",
    "$1",
    "%(name)s",
    ":name",
    "{}",
    "-- comment",
    "/* comment */",
    "NULL",
    "null",
    "A",
    "a",
    "a ",
    " a",
    "é",
    "e\u0301",
    "🙂",
    "日本語",
]
LONG_HOSTILE = ("'; DROP TABLE checkpoints;--%_\"\\🙂" * 8)[:255]


def test_hostile_names_are_stored_and_matched_literally(store: CheckpointStore) -> None:
    manager = store.manager("hostile-names", max_checkpoints=None, compress_after=None)
    created = {name: manager.create(name, {"name": name}) for name in [*HOSTILE, LONG_HOSTILE]}

    for name, checkpoint in created.items():
        assert manager.get_by_name(name) == [checkpoint]
        assert manager.get_latest(name) == checkpoint
        assert manager.get(checkpoint.id).name == name  # type: ignore[union-attr]
    summary = manager.get_summary()
    assert summary["names"] == dict.fromkeys(created, 1)
    assert manager.get_by_name("%%") == []
    assert manager.get_by_name("ab_") == []
    assert len(manager) == len(created)


def test_hostile_session_ids_are_stored_and_matched_literally(store: CheckpointStore) -> None:
    session_ids = [*HOSTILE, LONG_HOSTILE, "a:b", ":1", "abc:1"]
    for session_id in session_ids:
        store.manager(session_id).create("only", {"session": session_id})

    assert sorted(info.id for info in store.sessions()) == sorted(session_ids)
    for session_id in session_ids:
        manager = store.manager(session_id)
        checkpoints = manager.get_all()
        assert [(cp.id, cp.data) for cp in checkpoints] == [
            (f"{session_id}:1", {"session": session_id})
        ]
        assert checkpoints[0].session_id == session_id
        assert manager.get(f"{session_id}:1") == checkpoints[0]
        info = store.session(session_id)
        assert info is not None and (info.checkpoint_count, info.last_seq) == (1, 1)
    assert store.manager("abc").get("abc:1:1") is None

    assert store.delete_session("%") == 1
    assert store.delete_session("_") == 1
    remaining = {info.id for info in store.sessions()}
    assert remaining == set(session_ids) - {"%", "_"}


def test_hostile_and_one_megabyte_values_come_back_literally(store: CheckpointStore) -> None:
    manager = store.manager("hostile-values")
    megabyte = ("'; DROP TABLE checkpoints;--%_\"\\\u00e9🙂" * 40_000)[:1_000_000]
    data = {"values": HOSTILE, "big": megabyte, **{value: value for value in HOSTILE}}
    metadata = {"note": LONG_HOSTILE, "big": megabyte, "keys": dict.fromkeys(HOSTILE, "%")}

    created = manager.create("hostile", data, metadata)

    stored = manager.get(created.id)
    assert stored is not None
    assert stored.data == data
    assert stored.metadata == metadata
    assert len(stored.data["big"]) == 1_000_000
    assert manager.rollback_to(created.id) == data


def test_refused_values_never_reach_the_table_json_functions_read(sqlite_path: Path) -> None:
    # One NaN stored as JSON text makes json_extract fail for the whole table.
    with CheckpointStore(sqlite_path) as store:
        manager = store.manager(SESSION)
        manager.create("ok", {"score": 1.5})
        for bad in (float("nan"), float("inf"), float("-inf")):
            with pytest.raises(InvalidDataError):
                manager.create("bad", {"score": bad})
            with pytest.raises(InvalidDataError):
                manager.create("bad", {}, {"score": bad})
        manager.create("ok", {"score": 2.5})
    connection = sqlite3.connect(sqlite_path)
    try:
        rows = connection.execute(
            "SELECT json_extract(data, '$.score'), json_valid(metadata) FROM checkpoints"
        ).fetchall()
    finally:
        connection.close()
    assert rows == [(1.5, 1), (2.5, 1)]


# -- one line for what cannot be read or reached ---------------------------------------


@pytest.mark.parametrize(
    "document",
    ["[" * 100_000 + "]" * 100_000, '[{"data": {"v": ' + "9" * 5000 + "}}]"],
    ids=["nested-100000-deep", "integer-of-5000-digits"],
)
def test_import_files_too_deep_or_with_huge_numbers_are_refused_and_write_nothing(
    store: CheckpointStore, tmp_path: Path, document: str
) -> None:
    mgr = store.manager(SESSION)
    mgr.create("kept", {"n": 1})
    before = snapshot(store)
    with pytest.raises(ImportFormatError, match="not valid JSON"):
        mgr.import_checkpoints(document)
    path = tmp_path / "bad.json"
    path.write_text(document)
    with path.open() as handle, pytest.raises(ImportFormatError, match="not valid JSON"):
        mgr.import_from(handle)
    assert snapshot(store) == before


@pytest.mark.parametrize("limit", [2**63, 10**23])
def test_counts_beyond_what_a_column_holds_are_refused_by_name(
    manager: CheckpointManager, limit: int
) -> None:
    manager.create("kept", {})
    with pytest.raises(InvalidDataError, match="keep_recent must be an int from 0 to"):
        manager.compact(keep_recent=limit)
    with pytest.raises(InvalidDataError, match="limit must be an int from 0 to"):
        list(manager.find(limit=limit))
    with pytest.raises(InvalidDataError, match="limit must be an int from 0 to"):
        manager.get_by_name("kept", limit=limit)
    assert [cp.name for cp in manager.find(limit=2**63 - 1)] == ["kept", "existing"]


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql+psycopg://agent:s3cret@localhost:abc/db", "invalid literal for int()"),
        ("postgresql+psycopg://agent:s3cret@[::1/db", "bad database URL"),
        ("postgresql+psycopg://agent:p@ss@w0rd@127.0.0.1:5432/db", "write it as %40"),
    ],
)
def test_unparsable_urls_are_refused_without_showing_the_password(url: str, says: str) -> None:
    with pytest.raises(CheckpointDBError) as excinfo:
        CheckpointStore(url)
    message = str(excinfo.value)
    assert says in message
    assert "\n" not in message
    for secret in ("s3cret", "p@ss", "ss@w0rd", "w0rd"):
        assert secret not in message


def test_the_command_line_gives_one_line_for_huge_counts_deep_files_and_bad_urls(
    backend_url: str, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from checkpointdb import cli

    with CheckpointStore(backend_url) as store:
        store.manager(SESSION).create("kept", {})
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    dangling = tmp_path / "dangling.db"
    dangling.symlink_to(tmp_path / "missing" / "x.db")
    loop = tmp_path / "loop.db"
    loop.symlink_to(loop)
    huge = "99999999999999999999999"
    for args in (
        ["--db", backend_url, "list", SESSION, "--limit", huge],
        ["--db", backend_url, "compact", SESSION, "--keep-recent", huge],
        ["--db", backend_url, "import", SESSION, str(deep)],
        ["--db", str(dangling), "sessions"],
        ["--db", str(loop), "sessions"],
        ["--db", "postgresql+psycopg://agent:p@ss@w0rd@127.0.0.1:5432/db", "sessions"],
    ):
        result = CliRunner().invoke(cli.cli, args)
        assert result.exit_code in (1, 2), (args, result.output)
        assert isinstance(result.exception, SystemExit), (args, result.exception)
        assert len(result.output.strip().splitlines()) == 1, (args, result.output)
        assert "ss@w0rd" not in result.output
    with CheckpointStore(backend_url) as store:
        assert [cp.name for cp in store.manager(SESSION)] == ["kept"]


def _unwritable_directory(tmp_path: Path) -> Path:
    """A directory this process cannot create files in (as root too: under /proc)."""
    if os.geteuid() == 0:
        return Path("/proc")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    return locked


@pytest.mark.skipif(sys.platform != "linux", reason="uses /proc when run as root")
@pytest.mark.parametrize("command", [["sessions"], ["demo"], ["db", "upgrade"]])
def test_a_store_in_a_directory_that_cannot_be_written_is_one_line(
    tmp_path: Path, command: list[str]
) -> None:
    from click.testing import CliRunner

    from checkpointdb import cli

    path = _unwritable_directory(tmp_path) / "agent.db"
    with pytest.raises(CheckpointDBError, match=f"cannot create database {path}"):
        CheckpointStore(path)
    result = CliRunner().invoke(cli.cli, ["--db", str(path), *command])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert not path.exists()
