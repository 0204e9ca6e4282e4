"""The column types: aware UTC round trips, naive refused, JSON exact or refused."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, create_engine, insert, select
from sqlalchemy.exc import StatementError

from checkpointdb import CheckpointStore, InvalidDataError, NaiveDatetimeError
from checkpointdb.sqltypes import JSONDocument, UTCDateTime
from checkpointdb.types import (
    decode_json,
    decode_time,
    encode_time_text,
    jsonb_text,
)


def _table() -> Table:
    return Table(
        "values_",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("at", UTCDateTime()),
        Column("doc", JSONDocument()),
    )


def _roundtrip(url: str, at: datetime | None = None, doc: Any = None) -> tuple[Any, Any]:
    engine = create_engine(url)
    table = _table()
    table.metadata.create_all(engine)
    try:
        with engine.begin() as conn:
            conn.execute(insert(table).values(id=1, at=at, doc=doc))
            row = conn.execute(select(table.c.at, table.c.doc)).one()
        return row[0], row[1]
    finally:
        table.metadata.drop_all(engine)
        engine.dispose()


def _sa_url(backend_url: str) -> str:
    return backend_url if "://" in backend_url else f"sqlite:///{backend_url}"


def test_aware_datetime_round_trips_as_utc_with_microseconds(backend_url: str) -> None:
    given = datetime(
        2026, 3, 29, 1, 59, 59, 987654, tzinfo=timezone(timedelta(hours=5, minutes=30))
    )
    at, _ = _roundtrip(_sa_url(backend_url), at=given)
    assert at == given
    assert at.tzinfo == timezone.utc
    assert at.microsecond == 987654


def test_naive_datetime_is_refused_by_the_column_type(backend_url: str) -> None:
    with pytest.raises(StatementError) as excinfo:
        _roundtrip(_sa_url(backend_url), at=datetime(2026, 1, 1, 12, 0))
    assert isinstance(excinfo.value.orig, NaiveDatetimeError)


def test_json_document_round_trips_nested_unicode(backend_url: str) -> None:
    doc = {"ü": ["ß", {"n": None, "t": True, "i": 2**62, "f": 0.1}], "e": {}}
    _, back = _roundtrip(_sa_url(backend_url), doc=doc)
    assert back == doc


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_json_document_refuses_nan_and_infinity(backend_url: str, bad: float) -> None:
    with pytest.raises(StatementError) as excinfo:
        _roundtrip(_sa_url(backend_url), doc={"x": [bad]})
    assert isinstance(excinfo.value.orig, InvalidDataError)


def test_sqlite_time_text_sorts_in_time_order() -> None:
    earlier = datetime(2026, 1, 1, 23, 0, tzinfo=timezone(timedelta(hours=-5)))
    later = datetime(2026, 1, 2, 4, 0, 0, 1, tzinfo=timezone.utc)
    assert encode_time_text(earlier) < encode_time_text(later)
    assert encode_time_text(later) == "2026-01-02T04:00:00.000001Z"
    assert decode_time(encode_time_text(earlier)) == earlier


def test_stored_timestamps_are_readable_utc_text_on_sqlite(sqlite_path: Any) -> None:
    import sqlite3

    with CheckpointStore(sqlite_path) as store:
        cp = store.manager("s").create("a", {"k": 1})
    with sqlite3.connect(sqlite_path) as raw:
        (text,) = raw.execute("SELECT created_at FROM checkpoints").fetchone()
        (julian,) = raw.execute("SELECT julianday(created_at) FROM checkpoints").fetchone()
    assert text == cp.timestamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert julian is not None


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({1: "int key"}, "key 1 is a int"),
        ({"a": {(1, 2): 1}}, "key (1, 2)"),
        ({"x": math.nan}, "NaN"),
        ({"x": {"y": [1, math.inf]}}, "data['x']['y'][1]"),
        ({"s": {1, 2}}, "set"),
        ({"b": b"raw"}, "bytes"),
        ({"d": datetime(2026, 1, 1, tzinfo=timezone.utc)}, "datetime"),
        ({"o": object()}, "object"),
    ],
)
def test_payloads_that_cannot_round_trip_are_refused_with_their_path(
    store: CheckpointStore, payload: dict[Any, Any], fragment: str
) -> None:
    mgr = store.manager("s")
    with pytest.raises(InvalidDataError) as excinfo:
        mgr.create("step", payload)
    assert fragment in str(excinfo.value)
    assert len(mgr) == 0
    assert store.session("s") is None


def test_naive_bound_is_refused_with_a_type_error(store: CheckpointStore) -> None:
    mgr = store.manager("s")
    mgr.create("a", {})
    with pytest.raises(TypeError):
        mgr.get_since(datetime(2026, 1, 1))
    with pytest.raises(NaiveDatetimeError, match="no timezone"):
        mgr.get_between(datetime(2026, 1, 1, tzinfo=timezone.utc), datetime(2027, 1, 1))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"x":1e+16}', '{"x":10000000000000000.0}'),
        ('{"x":-2.5E-3,"s":"1e5 stays"}', '{"x":-0.0025,"s":"1e5 stays"}'),
        ('{"s":"see the message","n":12,"e":3.5}', '{"s":"see the message","n":12,"e":3.5}'),
        ('["escaped \\"1e5\\" inside",1E2]', '["escaped \\"1e5\\" inside",100.0]'),
    ],
)
def test_jsonb_text_writes_exponent_floats_positionally_and_nothing_else(
    text: str, expected: str
) -> None:
    assert jsonb_text(text) == expected
    assert json.loads(jsonb_text(text)) == json.loads(text)


@pytest.mark.parametrize(
    "text",
    [
        '{"a":[1,2.5,"x",null,true,{"b":{}}],"é":"\\u00e9"}',
        '{"a": 1}',
        ' {"a":1}',
        '{"a":1}\n',
        '"just a string"',
        "[]",
        "NaN",
        '{"a":1}x',
        '{"a":1}{}',
        "",
        "x",
        "\ufeff{}",
        '{"a":',
    ],
)
def test_stored_json_text_decodes_exactly_as_json_loads_does(text: str) -> None:
    try:
        expected = json.loads(text)
    except ValueError as exc:
        with pytest.raises(type(exc)) as caught:
            decode_json(text)
        assert str(caught.value) == str(exc)
        return
    # repr: NaN is not equal to itself, and 1 and 1.0 or True are.
    assert repr(decode_json(text)) == repr(expected)
