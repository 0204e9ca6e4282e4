"""create_many(keep_newest=N): the oldest checkpoints beyond N go, in the insert's transaction.

Every test runs on both backends and through the sync and the asyncio API.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from async_facade import STORE_FLAVOURS

from checkpointdb import InvalidDataError


@pytest.fixture(params=list(STORE_FLAVOURS))
def any_store(request: pytest.FixtureRequest, backend_url: str) -> Iterator[Any]:
    store = STORE_FLAVOURS[request.param](backend_url)
    try:
        yield store
    finally:
        store.close()


def _unbounded(store: Any, session: str = "s") -> Any:
    return store.manager(session, max_checkpoints=None, compress_after=None)


def _seqs(mgr: Any) -> list[int]:
    return [cp.seq for cp in mgr.get_all()]


def test_keep_newest_deletes_the_oldest_the_first_included(any_store: Any) -> None:
    mgr = _unbounded(any_store)
    mgr.create_many([("a", {"i": i}) for i in range(4)], keep_newest=3)
    assert _seqs(mgr) == [2, 3, 4]
    mgr.create_many([("b", {"i": 4}), ("b", {"i": 5})], keep_newest=3)
    assert _seqs(mgr) == [4, 5, 6]
    assert [cp.data["i"] for cp in mgr.get_all()] == [3, 4, 5]
    info = any_store.session("s")
    assert (info.checkpoint_count, info.last_seq) == (3, 6)
    assert info.payload_bytes == sum(len(f'{{"i":{i}}}') + 2 for i in (3, 4, 5))


def test_keep_newest_deletes_pinned_checkpoints_too(any_store: Any) -> None:
    mgr = _unbounded(any_store)
    first = mgr.create("keep-me", {"i": 0}, pin=True)
    mgr.create_many([("a", {"i": i}) for i in range(1, 4)], keep_newest=2)
    assert mgr.get(first.id) is None
    assert _seqs(mgr) == [3, 4]


def test_keep_newest_above_the_count_deletes_nothing(any_store: Any) -> None:
    mgr = _unbounded(any_store)
    mgr.create_many([("a", {"i": i}) for i in range(3)], keep_newest=10)
    assert _seqs(mgr) == [1, 2, 3]
    assert mgr.create_many([], keep_newest=1) == []
    assert _seqs(mgr) == [1, 2, 3]


def test_keep_newest_leaves_other_sessions_alone(any_store: Any) -> None:
    other = _unbounded(any_store, "other")
    other.create_many([("a", {"i": i}) for i in range(3)])
    _unbounded(any_store).create_many([("a", {"i": i}) for i in range(5)], keep_newest=1)
    assert _seqs(other) == [1, 2, 3]
    assert any_store.session("other").checkpoint_count == 3


@pytest.mark.parametrize("bad", [0, -1, 2.0, "3", True])
def test_a_bad_keep_newest_is_refused_before_anything_is_written(
    any_store: Any, bad: object
) -> None:
    mgr = _unbounded(any_store)
    mgr.create("a", {"i": 0})
    with pytest.raises(InvalidDataError, match="keep_newest must be an int from 1"):
        mgr.create_many([("b", {"i": 1})], keep_newest=bad)
    assert _seqs(mgr) == [1]


def test_a_bad_entry_with_keep_newest_deletes_nothing(any_store: Any) -> None:
    mgr = _unbounded(any_store)
    mgr.create_many([("a", {"i": i}) for i in range(3)])
    with pytest.raises(InvalidDataError, match="entry 1"):
        mgr.create_many([("b", {"i": 3}), ("b", {"x": float("nan")})], keep_newest=1)
    assert _seqs(mgr) == [1, 2, 3]
