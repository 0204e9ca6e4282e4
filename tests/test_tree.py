"""A session is a tree: parent links, lineage, fork, delete/pop/truncate, batches, diffs, policy.

Every test runs on both backends and through the sync and the asyncio API.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from async_facade import STORE_FLAVOURS

from checkpointdb import InvalidDataError, NotFoundError, RetentionPolicy
from checkpointdb.engine import Database, resolve_url


@pytest.fixture(params=list(STORE_FLAVOURS))
def any_store(request: pytest.FixtureRequest, backend_url: str) -> Iterator[Any]:
    store = STORE_FLAVOURS[request.param](backend_url)
    try:
        yield store
    finally:
        store.close()


def _unbounded(store: Any, session: str = "s") -> Any:
    return store.manager(session, max_checkpoints=None, compress_after=None)


def _rows(url: str, session: str) -> list[tuple[Any, ...]]:
    db = Database(resolve_url(url))
    try:
        with db.connect() as conn:
            return list(
                conn.execute(
                    sa.text(
                        "SELECT seq, parent_seq FROM checkpoints WHERE session_id = :s ORDER BY seq"
                    ),
                    {"s": session},
                )
            )
    finally:
        db.dispose()


def test_parent_is_the_newest_live_checkpoint_by_default(any_store: Any) -> None:
    mgr = _unbounded(any_store)
    first = mgr.create("a", {"i": 1})
    second = mgr.create("b", {"i": 2})
    assert first.parent_id is None
    assert second.parent_id == "s:1"
    mgr.delete("s:2")
    assert mgr.create("c", {"i": 3}).parent_id == "s:1"
    assert mgr.get("s:3").parent_id == "s:1"


def test_parent_argument_branches_and_lineage_follows_the_branch(any_store: Any) -> None:
    mgr = _unbounded(any_store)
    for i in range(4):
        mgr.create(f"step{i}", {"i": i})
    branch = mgr.create("branch", {"i": 99}, parent="s:2")
    assert branch.parent_id == "s:2"
    assert [cp.id for cp in mgr.lineage(branch.id)] == ["s:1", "s:2", "s:5"]
    assert [cp.id for cp in mgr.lineage("s:4")] == ["s:1", "s:2", "s:3", "s:4"]
    # The default parent is the newest, even after a branch.
    assert mgr.create("next", {}).parent_id == "s:5"


def test_lineage_stops_where_an_ancestor_was_deleted(any_store: Any) -> None:
    mgr = _unbounded(any_store)
    for i in range(4):
        mgr.create("n", {"i": i})
    assert mgr.delete("s:2") is True
    assert mgr.get("s:3").parent_id == "s:2"
    assert mgr.get("s:2") is None
    assert [cp.id for cp in mgr.lineage("s:4")] == ["s:3", "s:4"]
    assert mgr.lineage("s:2") == []
    assert mgr.lineage("other:1") == []


def test_compaction_leaves_parent_links_naming_deleted_checkpoints(any_store: Any) -> None:
    mgr = any_store.manager("s", max_checkpoints=None, compress_after=3, keep_recent=1)
    for i in range(5):
        mgr.create("same", {"i": i})
    # Kept: the first, the newest, and the newest "same" among the rest.
    assert [cp.id for cp in mgr.get_all()] == ["s:1", "s:4", "s:5"]
    assert mgr.get("s:4").parent_id == "s:3"
    assert mgr.get("s:3") is None
    assert [cp.id for cp in mgr.lineage("s:5")] == ["s:4", "s:5"]


@pytest.mark.parametrize("parent", ["s:9", "other:1", "s:x", "s:2"])
def test_unknown_or_foreign_parent_is_refused_and_nothing_written(
    any_store: Any, parent: str
) -> None:
    mgr = _unbounded(any_store)
    mgr.create("a", {})
    mgr.create("b", {})
    mgr.delete("s:2")
    with pytest.raises(NotFoundError, match="parent"):
        mgr.create("c", {}, parent=parent)
    info = any_store.session("s")
    assert (info.last_seq, info.checkpoint_count) == (2, 1)


def test_delete_pop_and_truncate_after_keep_counts_exact_and_never_reuse_ids(
    any_store: Any,
) -> None:
    mgr = _unbounded(any_store)
    for i in range(6):
        mgr.create("n", {"i": i}, pin=i == 4)
    assert mgr.delete("s:3") is True
    assert mgr.delete("s:3") is False
    assert mgr.delete("nope") is False
    popped = mgr.pop()
    assert popped is not None and popped.id == "s:6"
    assert mgr.truncate_after("s:2") == 2  # s:4 (pinned) and s:5
    assert [cp.id for cp in mgr.get_all()] == ["s:1", "s:2"]
    info = any_store.session("s")
    assert info.checkpoint_count == 2 == len(mgr)
    sizes = sum(len(json.dumps(cp.data, separators=(",", ":"))) + 2 for cp in mgr.get_all())
    assert info.payload_bytes == sizes
    assert mgr.create("n", {}).id == "s:7"
    with pytest.raises(NotFoundError, match="s:5"):
        mgr.truncate_after("s:5")
    mgr.clear()
    assert mgr.pop() is None


def test_create_many_is_one_transaction_with_chained_parents(any_store: Any) -> None:
    mgr = _unbounded(any_store)
    mgr.create("before", {})
    created = mgr.create_many([("a", {"i": 1}), ("b", {"i": 2}, {"m": True}), ["c", {"i": 3}]])
    assert [cp.id for cp in created] == ["s:2", "s:3", "s:4"]
    assert [cp.parent_id for cp in created] == ["s:1", "s:2", "s:3"]
    assert created[1].metadata == {"m": True}
    assert [cp.to_dict() for cp in mgr.get_all()[1:]] == [cp.to_dict() for cp in created]
    assert any_store.session("s").last_seq == 4
    assert mgr.create_many([]) == []


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        (("x", {"v": float("nan")}), "entry 1"),
        (("", {}), "entry 1"),
        (("x",), "entry 1"),
        ("not a tuple", "entry 1"),
        (("x", {}, "meta"), "entry 1"),
    ],
)
def test_create_many_with_one_bad_entry_writes_nothing(
    any_store: Any, bad: Any, fragment: str
) -> None:
    mgr = _unbounded(any_store)
    with pytest.raises(InvalidDataError, match=fragment):
        mgr.create_many([("a", {}), bad, ("c", {})])
    assert any_store.session("s") is None


def test_create_many_compacts_once_at_the_end(any_store: Any) -> None:
    mgr = any_store.manager("s", max_checkpoints=None, compress_after=2, keep_recent=1)
    mgr.create_many([("same", {"i": i}) for i in range(5)])
    # Compaction ran inside the batch: the first, the newest and the newest "same" of the rest.
    assert [cp.id for cp in mgr.get_all()] == ["s:1", "s:4", "s:5"]
    assert any_store.session("s").checkpoint_count == 3


def test_get_recent_is_the_newest_n_oldest_first(any_store: Any) -> None:
    mgr = _unbounded(any_store)
    assert mgr.get_recent(3) == []
    for i in range(5):
        mgr.create("n", {"i": i})
    assert [cp.id for cp in mgr.get_recent(3)] == ["s:3", "s:4", "s:5"]
    assert [cp.id for cp in mgr.get_recent(10)] == [f"s:{i}" for i in range(1, 6)]
    assert mgr.get_recent(0) == []
    with pytest.raises(InvalidDataError, match="n must be"):
        mgr.get_recent(-1)


def _branchy(mgr: Any) -> None:
    for i in range(5):
        mgr.create("n", {"i": i}, pin=i == 1)
    mgr.create("side", {"i": 10}, parent="s:2")  # s:6
    mgr.create("side2", {"i": 11})  # s:7, parent s:6
    mgr.delete("s:3")


@pytest.mark.parametrize(
    ("history", "expected"),
    [
        # old seq -> (new id, new parent)
        ("latest", [(7, "t:1", None)]),
        ("lineage", [(1, "t:1", None), (2, "t:2", "t:1"), (6, "t:3", "t:2"), (7, "t:4", "t:3")]),
        (
            "all",
            [
                (1, "t:1", None),
                (2, "t:2", "t:1"),
                (4, "t:3", None),
                (5, "t:4", "t:3"),
                (6, "t:5", "t:2"),
                (7, "t:6", "t:5"),
            ],
        ),
    ],
)
def test_fork_copies_in_the_database_renumbered_with_links_remapped(
    any_store: Any, history: str, expected: list[tuple[int, str, str | None]]
) -> None:
    mgr = _unbounded(any_store)
    _branchy(mgr)
    mgr.set_session_metadata({"title": "source"})
    forked = mgr.fork("s:7", "t", history=history)
    copies = forked.get_all()
    assert [(cp.id, cp.parent_id) for cp in copies] == [(new, p) for _, new, p in expected]
    for (old, _, _), cp in zip(expected, copies, strict=True):
        original = mgr.get(f"s:{old}")
        assert (cp.name, cp.timestamp, cp.data, cp.metadata, cp.pinned) == (
            original.name,
            original.timestamp,
            original.data,
            original.metadata,
            original.pinned,
        )
    info = any_store.session("t")
    assert info.forked_from == "s:7"
    assert info.metadata == {"title": "source"}
    assert (info.last_seq, info.checkpoint_count) == (len(expected), len(expected))
    assert info.payload_bytes == sum(
        any_store.manager("s").get(f"s:{old}") is not None
        and len(json.dumps(forked.get(new).data, separators=(",", ":"))) + 2
        for old, new, _ in expected
    )
    assert info.policy == RetentionPolicy(None, None, 20)
    assert forked.create("next", {}).id == f"t:{len(expected) + 1}"
    assert any_store.session("s").forked_from is None


def test_fork_refusals_write_nothing(any_store: Any) -> None:
    mgr = _unbounded(any_store)
    _branchy(mgr)
    other = _unbounded(any_store, "busy")
    other.create("x", {})
    other.clear()
    with pytest.raises(InvalidDataError, match="busy"):
        mgr.fork("s:7", "busy")
    with pytest.raises(InvalidDataError, match="already has checkpoints"):
        mgr.fork("s:7", "s")
    with pytest.raises(InvalidDataError, match="history"):
        mgr.fork("s:7", "new", history="everything")
    for missing in ("s:3", "s:99", "other:1", "garbage"):
        with pytest.raises(NotFoundError):
            mgr.fork(missing, "new")
    assert any_store.session("new") is None
    assert any_store.session("busy").checkpoint_count == 0


def test_diff_is_the_json_patch_from_a_to_b(any_store: Any) -> None:
    mgr = _unbounded(any_store)
    a = mgr.create("a", {"keep": 1, "gone": True, "list": [1, 2]})
    b = mgr.create("b", {"keep": 1, "new": "ü", "list": [1, 2, 3]})
    patch = mgr.diff(a.id, b.id)
    assert sorted(patch, key=lambda op: op["path"]) == [
        {"op": "remove", "path": "/gone"},
        {"op": "add", "path": "/list/2", "value": 3},
        {"op": "add", "path": "/new", "value": "ü"},
    ]
    assert mgr.diff(a.id, a.id) == []
    with pytest.raises(NotFoundError, match="s:9"):
        mgr.diff(a.id, "s:9")
    with pytest.raises(NotFoundError):
        mgr.diff("other:1", a.id)


def test_policy_is_stored_on_the_session_and_followed_by_other_managers(
    any_store: Any, backend_url: str
) -> None:
    writer = any_store.manager("s", max_checkpoints=3, compress_after=None, keep_recent=2)
    assert any_store.session("s") is None  # written with the first write, not before
    writer.create("a", {})
    assert any_store.session("s").policy == RetentionPolicy(3, None, 2)
    follower = any_store.manager("s")
    for i in range(6):
        follower.create("n", {"i": i})
    assert len(follower) == 3  # the stored cap, not the default 100
    assert (follower.max_checkpoints, follower.keep_recent) == (3, 2)
    fresh = any_store.manager("fresh")
    fresh.create("a", {})
    assert any_store.session("fresh").policy == RetentionPolicy()
    # Reopened, another process's view: the stored policy still applies.
    again = STORE_FLAVOURS["sync"](backend_url)
    try:
        again.manager("s").create("later", {})
        assert again.session("s").policy == RetentionPolicy(3, None, 2)
        assert len(again.manager("s")) == 3
    finally:
        again.close()


def test_an_import_stores_the_managers_policy_as_a_create_does(any_store: Any) -> None:
    source = any_store.manager("source")
    source.create("a", {})
    exported = source.export()
    importer = any_store.manager("s", max_checkpoints=7, compress_after=None, keep_recent=1)
    importer.import_checkpoints(exported)
    assert any_store.session("s").policy == RetentionPolicy(7, None, 1)
    any_store.manager("s").import_checkpoints(exported)  # no arguments: the policy stays
    assert any_store.session("s").policy == RetentionPolicy(7, None, 1)


def test_session_metadata_is_usable(any_store: Any) -> None:
    mgr = _unbounded(any_store)
    mgr.set_session_metadata({"owner": "ü", "tags": [1]})
    assert any_store.session("s").metadata == {"owner": "ü", "tags": [1]}
    mgr.create("a", {})
    mgr.set_session_metadata({"owner": "b"})
    info = any_store.session("s")
    assert info.metadata == {"owner": "b"}
    assert info.checkpoint_count == 1
    with pytest.raises(InvalidDataError, match="metadata"):
        mgr.set_session_metadata({"x": float("nan")})
    with pytest.raises(InvalidDataError, match="metadata"):
        mgr.set_session_metadata(["not", "a", "dict"])
    assert any_store.session("s").metadata == {"owner": "b"}


def test_export_import_keeps_or_remaps_parent_links(any_store: Any) -> None:
    mgr = _unbounded(any_store)
    _branchy(mgr)
    exported = mgr.export()
    entries = json.loads(exported)
    assert [e["parent_id"] for e in entries] == [None, "s:1", "s:3", "s:4", "s:2", "s:6"]
    # Into an empty session of the same id: ids and links are kept.
    any_store.delete_session("s")
    assert mgr.import_checkpoints(exported) == 6
    assert [(cp.id, cp.parent_id) for cp in mgr.get_all()] == [
        (e["id"], e["parent_id"]) for e in entries
    ]
    # Into another session: renumbered, links within the file follow.
    other = _unbounded(any_store, "o")
    other.create("first", {})
    other.import_checkpoints(exported)
    assert [(cp.id, cp.parent_id) for cp in other.get_all()] == [
        ("o:1", None),
        ("o:2", None),
        ("o:3", "o:2"),
        ("o:4", None),
        ("o:5", "o:4"),
        ("o:6", "o:3"),
        ("o:7", "o:6"),
    ]


def test_exports_without_parent_links_still_import_as_a_chain(any_store: Any) -> None:
    mgr = _unbounded(any_store)
    mgr.create("existing", {})
    old = [
        {"id": "x:1", "name": "a", "timestamp": "2026-01-01T00:00:00+00:00", "data": {}},
        {"id": "x:2", "name": "b", "timestamp": "2026-01-01T00:00:01+00:00", "data": {}},
    ]
    assert mgr.import_checkpoints(json.dumps(old)) == 2
    assert [(cp.id, cp.parent_id) for cp in mgr.get_all()] == [
        ("s:1", None),
        ("s:2", "s:1"),
        ("s:3", "s:2"),
    ]


def test_bad_parent_id_in_an_import_is_refused(any_store: Any) -> None:
    mgr = _unbounded(any_store)
    entry = {"id": "s:1", "name": "a", "timestamp": "2026-01-01T00:00:00+00:00", "data": {}}
    with pytest.raises(InvalidDataError, match="parent_id"):
        mgr.import_checkpoints(json.dumps([{**entry, "parent_id": 3}]))
    assert any_store.session("s") is None


def test_checkpoint_view_shows_parent_ids(store: Any, backend_url: str) -> None:
    mgr = _unbounded(store)
    mgr.create("a", {})
    mgr.create("b", {})
    assert _rows(backend_url, "s") == [(1, None), (2, 1)]
    db = Database(resolve_url(backend_url))
    try:
        with db.connect() as conn:
            rows = list(conn.execute(sa.text("SELECT id, parent_id FROM checkpoint_view")))
    finally:
        db.dispose()
    assert sorted(rows) == [("s:1", None), ("s:2", "s:1")]
