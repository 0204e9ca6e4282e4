"""find(): filters by name, time and JSON key paths agree with plain Python on both backends."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import Select, select
from sqlalchemy.dialects import postgresql, sqlite

from checkpointdb import (
    Checkpoint,
    CheckpointManager,
    CheckpointStore,
    InvalidDataError,
    NaiveDatetimeError,
)
from checkpointdb.models import checkpoints_table
from checkpointdb.query import MAX_PATH_KEYS, FindQuery, KeyPath, find_clauses
from checkpointdb.repository import PAGE_SIZE

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)

# Keys that break naive JSON-path building or SQL quoting.
HOSTILE_KEYS = [
    "",
    ".",
    "a.b",
    '"',
    'a"b',
    '"."',
    "'",
    "$",
    "$.a",
    "[0]",
    "a[0]",
    "\\",
    '\\"',
    "\n",
    "0",
    "null",
    "*",
    "é",
    "💥",
    "') OR 1=1; --",
    "\\u0022",
]
PLAIN_KEYS = ["run", "agent", "role", "x"]
# Scalars that differ as JSON but look alike somewhere (1 / 1.0 / "1" / true).
SCALARS: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    1.0,
    -1,
    0.5,
    2**53 + 1,
    float(2**53),
    2**63 - 1,
    "1",
    "",
    "true",
    "null",
    '"',
    "'; DROP TABLE checkpoints; --",
    "\\",
    "é",
    "\n",
    # Strings spelled as a stored empty list or object reads back in SQL.
    "[]",
    "{}",
]


def iso(moment: datetime) -> str:
    return moment.isoformat()


def load(
    mgr: CheckpointManager, rows: list[tuple[str, datetime, dict[str, Any], dict[str, Any]]]
) -> None:
    """Checkpoints with chosen timestamps, through the import path."""
    entries = [
        {"id": f"x:{i}", "name": name, "timestamp": iso(ts), "data": data, "metadata": meta}
        for i, (name, ts, data, meta) in enumerate(rows)
    ]
    mgr.import_checkpoints(json.dumps(entries))


def ids(found: Iterator[Checkpoint]) -> list[str]:
    return [cp.id for cp in found]


# -- the reference: plain Python over get_all() --------------------------------

_MISSING = object()


def lookup(document: Any, path: tuple[str, ...]) -> Any:
    """Walk nested objects only; a list or a missing key ends the walk."""
    node = document
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return _MISSING
        node = node[key]
    return node


def json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def json_equal(stored: Any, wanted: Any) -> bool:
    if stored is _MISSING or json_kind(stored) != json_kind(wanted):
        return False
    return bool(stored == wanted)


def as_path(path: KeyPath) -> tuple[str, ...]:
    return tuple(path.split(".")) if isinstance(path, str) else path


def python_find(
    checkpoints: list[Checkpoint],
    *,
    name: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    metadata: dict[KeyPath, Any] | None = None,
    data: dict[KeyPath, Any] | None = None,
) -> list[Checkpoint]:
    def keep(cp: Checkpoint) -> bool:
        if name is not None and cp.name != name:
            return False
        if since is not None and not cp.timestamp > since:
            return False
        if until is not None and not cp.timestamp <= until:
            return False
        for document, spec in ((cp.metadata, metadata or {}), (cp.data, data or {})):
            for path, value in spec.items():
                if not json_equal(lookup(document, as_path(path)), value):
                    return False
        return True

    return [cp for cp in checkpoints if keep(cp)]


# -- behaviour, one rule at a time ---------------------------------------------


@pytest.fixture
def sample(store: CheckpointStore) -> CheckpointManager:
    mgr = store.manager("s", max_checkpoints=None, compress_after=None)
    load(
        mgr,
        [
            ("plan", T0, {"n": 1, "tags": ["a"]}, {"run": "r1", "agent": {"role": "planner"}}),
            ("tool", T0 + timedelta(minutes=1), {"n": 1.0, "arr": [5]}, {"run": "r1", "x": None}),
            ("tool", T0 + timedelta(minutes=2), {"n": "1"}, {"run": "r2", "agent.role": "coder"}),
            ("plan", T0 + timedelta(minutes=3), {"n": True, "a": {"b": {"c": 0}}}, {"run": "r2"}),
        ],
    )
    return mgr


def test_find_without_filters_is_every_checkpoint_newest_first(sample: CheckpointManager) -> None:
    assert ids(sample.find()) == ["s:4", "s:3", "s:2", "s:1"]
    assert ids(sample.find(newest_first=False)) == ["s:1", "s:2", "s:3", "s:4"]
    assert ids(sample.find(limit=2)) == ["s:4", "s:3"]
    assert ids(sample.find(limit=0)) == []


def test_find_returns_the_same_checkpoints_as_get(sample: CheckpointManager) -> None:
    assert list(sample.find(newest_first=False)) == sample.get_all()


def test_name_and_time_bounds_follow_get_since_and_get_between(sample: CheckpointManager) -> None:
    assert ids(sample.find(name="tool")) == ["s:3", "s:2"]
    # since is strictly after (like get_since), until inclusive (like get_between).
    since = T0 + timedelta(minutes=1)
    assert ids(sample.find(since=since, newest_first=False)) == ["s:3", "s:4"]
    assert ids(sample.find(until=since, newest_first=False)) == ["s:1", "s:2"]
    assert ids(sample.find(since=T0, until=since)) == ["s:2"]
    other_zone = timezone(timedelta(hours=-5))
    assert ids(sample.find(since=since.astimezone(other_zone), name="plan")) == ["s:4"]


def test_numbers_strings_and_booleans_are_different_json(sample: CheckpointManager) -> None:
    assert ids(sample.find(data={"n": 1}, newest_first=False)) == ["s:1", "s:2"]
    assert ids(sample.find(data={"n": 1.0}, newest_first=False)) == ["s:1", "s:2"]
    assert ids(sample.find(data={"n": "1"})) == ["s:3"]
    assert ids(sample.find(data={"n": True})) == ["s:4"]
    assert ids(sample.find(data={"n": False})) == []


def test_none_matches_a_stored_null_never_a_missing_key(sample: CheckpointManager) -> None:
    assert ids(sample.find(metadata={"x": None})) == ["s:2"]
    assert ids(sample.find(metadata={"nope": None})) == []


def test_dotted_paths_walk_objects_and_tuples_take_keys_literally(
    sample: CheckpointManager,
) -> None:
    assert ids(sample.find(metadata={"agent.role": "planner"})) == ["s:1"]
    assert ids(sample.find(metadata={("agent", "role"): "planner"})) == ["s:1"]
    assert ids(sample.find(metadata={("agent.role",): "coder"})) == ["s:3"]
    assert ids(sample.find(metadata={"agent.role": "coder"})) == []
    assert ids(sample.find(data={"a.b.c": 0})) == ["s:4"]
    assert ids(sample.find(data={"a.b": 0})) == []


def test_paths_never_walk_into_lists(sample: CheckpointManager) -> None:
    # PostgreSQL's #> would read "0" as a list index; containment does not.
    assert ids(sample.find(data={"arr.0": 5})) == []
    assert ids(sample.find(data={("tags", "0"): "a"})) == []


def test_all_filters_must_hold(sample: CheckpointManager) -> None:
    assert ids(sample.find(name="tool", metadata={"run": "r1"}, data={"n": 1})) == ["s:2"]
    assert ids(sample.find(metadata={"run": "r1", "agent.role": "planner"})) == ["s:1"]
    assert ids(sample.find(metadata={"run": "r2", "agent.role": "planner"})) == []


def test_store_find_spans_sessions_in_time_order(store: CheckpointStore) -> None:
    alpha = store.manager("alpha")
    beta = store.manager("beta:1")
    load(alpha, [("a", T0, {}, {"run": "r1"}), ("a", T0 + timedelta(seconds=2), {}, {"run": "r1"})])
    load(beta, [("a", T0 + timedelta(seconds=1), {}, {"run": "r1"}), ("b", T0, {}, {"run": "r2"})])
    assert ids(store.find(metadata={"run": "r1"})) == ["alpha:2", "beta:1:1", "alpha:1"]
    assert ids(store.find(newest_first=False)) == ["alpha:1", "beta:1:2", "beta:1:1", "alpha:2"]
    assert ids(store.find(metadata={"run": "r1"}, session_id="beta:1")) == ["beta:1:1"]
    assert ids(store.find(name="a", limit=1)) == ["alpha:2"]


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_hostile_keys_match_literally_as_tuples(store: CheckpointStore, key: str) -> None:
    mgr = store.manager("s")
    mgr.create("n", {key: {key: "hit"}, "other": 1}, {key: 1})
    mgr.create("n", {"other": {key: "miss"}}, {"other": key})
    assert ids(mgr.find(data={(key, key): "hit"})) == ["s:1"]
    assert ids(mgr.find(metadata={(key,): 1})) == ["s:1"]
    assert ids(mgr.find(metadata={("other",): key})) == ["s:2"]
    assert len(mgr) == 2


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("", "empty key"),
        ("a..b", "empty key"),
        (".a", "empty key"),
        ("a.", "empty key"),
        ("$.a", "'$'"),
        ("a[0]", "'['"),
        ("a]", "']'"),
        ('"a.b".c', "'\"'"),
        ((), "is empty"),
        (("a", 1), "keys must be strings"),
        (5, "dotted string or a tuple"),
        (("a\x00",), "NUL"),
        (("\ud800",), "not valid Unicode"),
        (("k",) * (MAX_PATH_KEYS + 1), f"at most {MAX_PATH_KEYS}"),
    ],
)
def test_ambiguous_or_impossible_paths_are_refused(
    sample: CheckpointManager, path: Any, fragment: str
) -> None:
    with pytest.raises(InvalidDataError, match="metadata filter path") as caught:
        sample.find(metadata={path: 1})
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ([1], "JSON scalars"),
        ({"a": 1}, "JSON scalars"),
        (math.nan, "not a JSON number"),
        (math.inf, "not a JSON number"),
        (2**63, "64 bits"),
        (b"x", "JSON scalars"),
        ("a\x00", "NUL"),
        ("\udc80", "not valid Unicode"),
    ],
)
def test_values_that_cannot_compare_exactly_are_refused(
    sample: CheckpointManager, value: Any, fragment: str
) -> None:
    with pytest.raises(InvalidDataError, match=r"data filter 'k'") as caught:
        sample.find(data={"k": value})
    assert fragment in str(caught.value)


def test_bad_arguments_are_refused_when_find_is_called(sample: CheckpointManager) -> None:
    with pytest.raises(NaiveDatetimeError, match="since"):
        sample.find(since=datetime(2026, 1, 1))
    with pytest.raises(NaiveDatetimeError, match="until"):
        sample.find(until=datetime(2026, 1, 1))
    with pytest.raises(InvalidDataError, match="limit"):
        sample.find(limit=-1)
    with pytest.raises(InvalidDataError, match="limit"):
        sample.find(limit=True)
    with pytest.raises(InvalidDataError, match="newest_first"):
        sample.find(newest_first=None)  # type: ignore[arg-type]
    with pytest.raises(InvalidDataError, match="metadata filter must be a dict"):
        sample.find(metadata=[("run", "r1")])  # type: ignore[arg-type]
    with pytest.raises(InvalidDataError, match="name"):
        sample.find(name="")
    with pytest.raises(InvalidDataError, match="session_id"):
        sample.store.find(session_id="")


@pytest.mark.parametrize("dialect", [sqlite.dialect(paramstyle="named"), postgresql.dialect()])
def test_keys_and_values_never_reach_the_sql_text(dialect: Any) -> None:
    key, value = "zq'\"].$[k", "zv'); DROP TABLE checkpoints; --"
    query = FindQuery.build(
        name="zname", metadata={(key, key): value}, data={(key,): value}, session_id="zsid"
    )
    shape, params = query.bind(str, dialect.name)
    where, _ = find_clauses(shape, dialect.name)
    sql = str(select(checkpoints_table.c.seq).where(*where).compile(dialect=dialect))
    assert "zq" not in sql and "zv" not in sql and "zname" not in sql and "zsid" not in sql
    bound = " ".join(str(v) for v in params.values())
    assert "zq" in bound and "zv" in bound and "zname" in bound and "zsid" in bound


def test_a_second_find_of_the_same_shape_compiles_nothing(
    store: CheckpointStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    mgr = store.manager("s", max_checkpoints=None, compress_after=None)
    for run in ("r1", "r2", "r1", "r2"):
        mgr.create("step", {}, {"run": run, "agent": {"role": "planner"}})
    built: list[object] = []
    compile_statement = Select.compile

    def counting_compile(stmt: Select[Any], *args: Any, **kwargs: Any) -> Any:
        built.append(stmt)
        return compile_statement(stmt, *args, **kwargs)

    monkeypatch.setattr(Select, "compile", counting_compile)
    assert ids(mgr.find(metadata={"run": "r1"}, limit=5)) == ["s:3", "s:1"]
    assert len(built) == 1
    # Other values of the same shape: the cached statement, with the new values bound.
    assert ids(mgr.find(metadata={"run": "r2"}, limit=1)) == ["s:4"]
    assert ids(mgr.find(metadata={"agent": "x"}, limit=9)) == []
    assert len(built) == 1
    # Another shape (a second filter, a deeper path, no limit) compiles once each.
    assert ids(mgr.find(metadata={"run": "r2", "agent.role": "planner"})) == ["s:4", "s:2"]
    assert ids(mgr.find(metadata={"run": "r1", "agent.role": "planner"})) == ["s:3", "s:1"]
    assert len(built) == 2


# -- streaming -----------------------------------------------------------------


def test_an_abandoned_find_gives_its_connection_back(store: CheckpointStore) -> None:
    mgr = store.manager("s")
    for i in range(3):
        mgr.create("n", {"i": i})
    found = mgr.find()
    assert next(found).id == "s:3"
    assert store._db.in_use() == 1
    found.close()  # type: ignore[attr-defined]
    assert store._db.in_use() == 0
    assert ids(mgr.find(limit=1)) == ["s:3"]


def test_a_find_whose_limit_fits_one_page_reads_at_the_first_item_and_keeps_no_connection(
    store: CheckpointStore,
) -> None:
    mgr = store.manager("s")
    for i in range(3):
        mgr.create("n", {"i": i})
    found = mgr.find(limit=2)
    everywhere = store.find(limit=PAGE_SIZE)
    # Still nothing runs before the first item: a checkpoint created now is found.
    mgr.create("n", {"i": 3})
    assert store._db.in_use() == 0
    assert next(found).id == "s:4"
    assert store._db.in_use() == 0
    assert ids(found) == ["s:3"]
    assert next(everywhere).id == "s:4"
    assert store._db.in_use() == 0
    assert len(ids(everywhere)) == 3
    # A limit beyond one page streams, holding its connection until closed.
    beyond = mgr.find(limit=PAGE_SIZE + 1)
    assert next(beyond).id == "s:4"
    assert store._db.in_use() == 1
    beyond.close()  # type: ignore[attr-defined]
    assert store._db.in_use() == 0


def test_a_filter_path_is_checked_on_every_find(store: CheckpointStore) -> None:
    mgr = store.manager("s")
    mgr.create("n", {"a": {"b": 1}}, {"a": {"b": 1}})
    for _ in range(2):
        assert ids(mgr.find(metadata={"a.b": 1}, limit=1)) == ["s:1"]
        assert ids(mgr.find(data={"a.b": 1}, limit=1)) == ["s:1"]
        assert ids(mgr.find(metadata={"a.b": True}, limit=1)) == []
        with pytest.raises(InvalidDataError, match="empty key"):
            mgr.find(metadata={"a..b": 1}, limit=1)
        with pytest.raises(InvalidDataError, match=r"metadata filter 'a\.b'.*64 bits"):
            mgr.find(metadata={"a.b": 2**63}, limit=1)


def test_postgresql_streams_through_a_server_side_cursor(postgres_url: str) -> None:
    import psycopg

    with CheckpointStore(postgres_url) as store:
        mgr = store.manager("s", max_checkpoints=None, compress_after=None)
        load(mgr, [("n", T0, {"i": i}, {}) for i in range(1200)])
        found = mgr.find(newest_first=False)
        assert next(found).id == "s:1"
        admin = postgres_url.replace("postgresql+psycopg://", "postgresql://").split("?")[0]
        with psycopg.connect(admin) as conn:
            queries = [
                row[0]
                for row in conn.execute(
                    "SELECT query FROM pg_stat_activity WHERE application_name = 'checkpointdb'"
                    " AND state = 'idle in transaction'"
                )
            ]
        assert any(q.startswith("FETCH FORWARD 500") for q in queries), queries
        assert len(list(found)) == 1199


# -- the property: find == a Python filter over get_all() ------------------------

scalars = st.sampled_from(SCALARS)
times = st.sampled_from([T0 + timedelta(seconds=s) for s in (0, 1, 1, 2, 3)])
Row = tuple[str, str, datetime, dict[str, Any], dict[str, Any]]
Spec = dict[tuple[str, ...], Any]


@st.composite
def cases(draw: st.DrawFn) -> tuple[list[Row], Spec, Spec]:
    """Rows over a few keys (often hostile), and filters that often hit something."""
    pool = draw(st.lists(st.sampled_from(HOSTILE_KEYS + PLAIN_KEYS), min_size=1, max_size=3))
    keys = st.sampled_from(pool)
    documents = scalars | st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=2) | st.dictionaries(keys, inner, max_size=3),
        max_leaves=6,
    )
    objects = st.dictionaries(keys, documents, min_size=1, max_size=3)
    sessions, names = st.sampled_from(["alpha", "beta"]), st.sampled_from(["plan", "tool"])
    rows = draw(
        st.lists(st.tuples(sessions, names, times, objects, objects), min_size=1, max_size=8)
    )

    target = draw(st.sampled_from(rows))

    def spec(column: int) -> Spec:
        entries: Spec = {}
        for _ in range(draw(st.integers(0, 2))):
            if draw(st.integers(0, 5)):
                # A path that exists in the target row, mostly down to a scalar.
                node: Any = target[column]
                path: list[str] = []
                while isinstance(node, dict) and node and (not path or draw(st.integers(0, 5))):
                    path.append(draw(st.sampled_from(sorted(node))))
                    node = node[path[-1]]
                scalar = node is None or isinstance(node, bool | int | float | str)
                value = node if scalar and draw(st.integers(0, 5)) else draw(scalars)
            else:
                path, value = draw(st.lists(keys, min_size=1, max_size=3)), draw(scalars)
            entries[tuple(path)] = value
        return entries

    return rows, spec(4), spec(3)


def dotted_if_possible(spec: dict[tuple[str, ...], Any], prefer: bool) -> dict[KeyPath, Any]:
    """Write a path as "a.b" when that means the same keys (the other accepted form)."""

    def plain(key: str) -> bool:
        return bool(key) and not any(symbol in key for symbol in '."$[]')

    return {
        ".".join(path) if prefer and all(plain(k) for k in path) else path: value
        for path, value in spec.items()
    }


@settings(
    max_examples=75, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    case=cases(),
    name=st.none() | st.sampled_from(["plan", "tool"]),
    since=st.none() | times,
    until=st.none() | times,
    limit=st.none() | st.integers(0, 4),
    newest_first=st.booleans(),
    dotted=st.booleans(),
)
def test_find_agrees_with_a_python_filter_over_get_all(
    store: CheckpointStore,
    case: tuple[list[Row], Spec, Spec],
    name: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int | None,
    newest_first: bool,
    dotted: bool,
) -> None:
    rows, metadata, data = case
    for info in store.sessions():
        store.delete_session(info.id)
    for session_id in ("alpha", "beta"):
        mine = [(n, ts, d, m) for s, n, ts, d, m in rows if s == session_id]
        if mine:
            load(store.manager(session_id, max_checkpoints=None, compress_after=None), mine)
    everything = [cp for sid in ("alpha", "beta") for cp in store.manager(sid).get_all()]
    filters = {
        "metadata": dotted_if_possible(metadata, dotted),
        "data": dotted_if_possible(data, dotted),
    }
    bounds = {"name": name, "since": since, "until": until}
    # With and without the other filters, so that the JSON ones decide often.
    for spec in ({**filters, **bounds}, filters):
        expected = python_find(everything, **spec)
        if (metadata or data) and spec is filters:
            event("JSON filters: some rows match" if expected else "JSON filters: no row matches")

        across = sorted(expected, key=lambda cp: (cp.timestamp, cp.session_id, cp.seq))
        if newest_first:
            across.reverse()
        found = list(store.find(**spec, limit=limit, newest_first=newest_first))
        assert found == across[:limit]

        alpha = sorted((cp for cp in expected if cp.session_id == "alpha"), key=lambda cp: cp.seq)
        if newest_first:
            alpha.reverse()
        mgr = store.manager("alpha")
        assert list(mgr.find(**spec, limit=limit, newest_first=newest_first)) == alpha[:limit]


def test_plain_keys_and_other_keys_match_by_the_same_rules(store: CheckpointStore) -> None:
    # A path of plain identifiers runs as json_type/json_extract on SQLite,
    # any other as json_each joins: both must find exactly the same rows.
    mgr = store.manager("s", max_checkpoints=None, compress_after=None)
    stored = [1, 1.0, "1", True, False, None, [1], {"x": 1}, "[1]", '{"x":1}', 0]
    for value in stored:
        mgr.create("n", {}, {"k": value, "k-k": value, "a": {"b": value}, "a a": {"b b": value}})
    mgr.create("n", {}, {"k": {}, "a": [{"b": 1}]})
    for wanted in (1, 1.0, "1", True, False, None, "[1]", '{"x":1}', 2, "x", 0, 0.0, "{}"):
        plain = ids(mgr.find(metadata={"k": wanted}, newest_first=False))
        assert plain == ids(mgr.find(metadata={("k-k",): wanted}, newest_first=False))
        nested = ids(mgr.find(metadata={"a.b": wanted}, newest_first=False))
        assert nested == ids(mgr.find(metadata={("a a", "b b"): wanted}, newest_first=False))
        assert nested == plain
    assert ids(mgr.find(metadata={"k": 1}, newest_first=False)) == ["s:1", "s:2"]
    assert ids(mgr.find(metadata={"k": 0.0})) == ["s:11"]
    assert ids(mgr.find(metadata={"k": False})) == ["s:5"]
    assert ids(mgr.find(metadata={"k": 2})) == ids(mgr.find(metadata={"k": "{}"})) == []
    assert ids(mgr.find(metadata={"k": "[1]"})) == ["s:9"]
    assert ids(mgr.find(metadata={"k": None})) == ["s:6"]
