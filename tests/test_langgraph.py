"""What the LangGraph savers store where, and the rules they keep."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from langgraph.checkpoint.base import BaseCheckpointSaver, empty_checkpoint
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer
from langgraph.checkpoint.serde.types import ERROR, INTERRUPT

import checkpointdb.langgraph as lg
from checkpointdb import CheckpointDBError, CheckpointStore, NotFoundError
from checkpointdb.aio import AsyncCheckpointStore
from checkpointdb.langgraph import AsyncCheckpointDBSaver, CheckpointDBSaver


def _put(
    saver: BaseCheckpointSaver[Any],
    thread: str,
    values: dict[str, Any],
    versions: dict[str, Any],
    new: dict[str, Any],
    parent: dict[str, Any] | None = None,
    ns: str = "",
    **metadata: Any,
) -> dict[str, Any]:
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = values
    checkpoint["channel_versions"] = versions
    config: dict[str, Any] = {"configurable": {"thread_id": thread, "checkpoint_ns": ns}}
    if parent is not None:
        config["configurable"]["checkpoint_id"] = parent["configurable"]["checkpoint_id"]
    meta = {"source": "loop", "step": 0, **metadata}
    return saver.put(config, checkpoint, meta, new)  # type: ignore[arg-type]


def _rows(store: CheckpointStore, sql: str, *params: Any) -> list[Any]:
    placeholder = "?" if store.dialect == "sqlite" else "%s"
    with store._db.transaction() as cursor:
        cursor.execute(sql.replace("?", placeholder), params)
        return list(cursor.fetchall())


def test_a_thread_is_a_session_with_compaction_off(store: CheckpointStore) -> None:
    saver = CheckpointDBSaver(store)
    first = _put(saver, "t1", {"a": 1}, {"a": "1"}, {"a": "1"}, step=-1, source="input")
    _put(saver, "t1", {"a": 2}, {"a": "2"}, {"a": "2"}, parent=first, step=0)
    info = store.session("t1")
    assert info is not None and info.checkpoint_count == 2
    assert _rows(store, "SELECT max_checkpoints, compress_after FROM sessions") == [(-1, -1)]
    found = list(store.find(session_id="t1", metadata={"source": "input"}))
    assert [cp.name for cp in found] == ["input"]
    assert found[0].metadata["step"] == -1
    newest = store.manager("t1").get_latest()
    assert newest is not None and newest.parent_id == found[0].id
    assert "channel_values" not in newest.data
    assert newest.data["channel_versions"] == {"a": "2"}


def test_an_unchanged_channel_is_stored_once_as_binary(store: CheckpointStore) -> None:
    saver = CheckpointDBSaver(store)
    big = "x" * 10_000
    parent = _put(saver, "t", {"big": big, "n": 0}, {"big": "1", "n": "1"}, {"big": "1", "n": "1"})
    for n in range(1, 5):
        parent = _put(
            saver,
            "t",
            {"big": big, "n": n},
            {"big": "1", "n": str(n + 1)},
            {"n": str(n + 1)},
            parent=parent,
        )
    counts = dict(_rows(store, "SELECT channel, count(*) FROM langgraph_blobs GROUP BY channel"))
    assert counts == {"big": 1, "n": 5}
    tup = saver.get_tuple(parent)
    assert tup is not None and tup.checkpoint["channel_values"] == {"big": big, "n": 4}
    if store.dialect == "sqlite":
        kinds = _rows(store, "SELECT DISTINCT typeof(value) FROM langgraph_blobs")
        assert kinds == [("blob",)]
    else:
        kinds = _rows(
            store,
            "SELECT data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = 'langgraph_blobs' "
            "AND column_name = 'value'",
        )
        assert kinds == [("bytea",)]


def test_encrypted_serializer_round_trips_and_hides_values(store: CheckpointStore) -> None:
    serde = EncryptedSerializer.from_pycryptodome_aes(key=b"0123456789abcdef")
    saver = CheckpointDBSaver(store, serde=serde)
    stored = _put(saver, "t", {"secret": "hunter2"}, {"secret": "1"}, {"secret": "1"})
    saver.put_writes(stored, [("secret", "swordfish")], "task")
    tup = saver.get_tuple(stored)
    assert tup is not None
    assert tup.checkpoint["channel_values"] == {"secret": "hunter2"}
    assert tup.pending_writes == [("task", "secret", "swordfish")]
    raw = [bytes(v) for (v,) in _rows(store, "SELECT value FROM langgraph_blobs")]
    raw += [bytes(v) for (v,) in _rows(store, "SELECT value FROM langgraph_writes")]
    assert raw and not any(b"hunter2" in v or b"swordfish" in v for v in raw)
    plain = CheckpointDBSaver(store)
    with pytest.raises(Exception):  # noqa: B017 - whatever the plain serializer raises
        plain.get_tuple(stored)


def test_special_channel_writes_replace_and_others_are_kept(store: CheckpointStore) -> None:
    saver = CheckpointDBSaver(store)
    stored = _put(saver, "t", {}, {}, {})
    saver.put_writes(stored, [("ch", "first")], "task")
    saver.put_writes(stored, [("ch", "second")], "task")
    saver.put_writes(stored, [(ERROR, "boom"), (INTERRUPT, "ask")], "task")
    saver.put_writes(stored, [(ERROR, "boom again"), (INTERRUPT, "ask again")], "task")
    tup = saver.get_tuple(stored)
    assert tup is not None
    assert sorted(w[1:] for w in tup.pending_writes or []) == sorted(
        [("ch", "first"), (ERROR, "boom again"), (INTERRUPT, "ask again")]
    )


def test_writes_go_with_their_checkpoint(store: CheckpointStore) -> None:
    saver = CheckpointDBSaver(store)
    first = _put(saver, "t", {}, {}, {}, run_id="r1")
    second = _put(saver, "t", {}, {}, {}, parent=first, run_id="r2")
    saver.put_writes(first, [("ch", 1)], "task")
    saver.put_writes(second, [("ch", 2)], "task")
    saver.delete_for_runs(["r1"])
    assert _rows(store, "SELECT count(*) FROM langgraph_writes") == [(1,)]
    assert _rows(store, "SELECT count(*) FROM langgraph_checkpoints") == [(1,)]
    info = store.session("t")
    assert info is not None and info.checkpoint_count == 1
    tup = saver.get_tuple(second)
    assert tup is not None and tup.parent_config is None
    # Retention of the store itself works on threads too: expire keeps the newest.
    _put(saver, "t", {}, {}, {}, parent=second, run_id="r3")
    assert store.expire(timedelta(0)).rows_removed == 1
    assert _rows(store, "SELECT count(*) FROM langgraph_writes") == [(0,)]
    store.delete_session("t")
    assert _rows(store, "SELECT count(*) FROM langgraph_blobs") == [(0,)]


def test_prune_keep_latest_drops_values_only_old_checkpoints_used(store: CheckpointStore) -> None:
    saver = CheckpointDBSaver(store)
    first = _put(
        saver, "t", {"keep": "k", "old": "o"}, {"keep": "1", "old": "1"}, {"keep": "1", "old": "1"}
    )
    _put(
        saver, "t", {"keep": "k", "new": "n"}, {"keep": "1", "new": "1"}, {"new": "1"}, parent=first
    )
    _put(saver, "other", {"x": 1}, {"x": "1"}, {"x": "1"})
    saver.prune(["t"])
    assert sorted(_rows(store, "SELECT session_id, channel FROM langgraph_blobs")) == [
        ("other", "x"),
        ("t", "keep"),
        ("t", "new"),
    ]
    assert [
        t.checkpoint["channel_values"] for t in saver.list({"configurable": {"thread_id": "t"}})
    ] == [{"keep": "k", "new": "n"}]
    info = store.session("t")
    assert info is not None and info.checkpoint_count == 1
    with pytest.raises(CheckpointDBError, match="'newest'"):
        saver.prune(["t"], strategy="newest")


def test_list_filter_compares_as_json(store: CheckpointStore) -> None:
    saver = CheckpointDBSaver(store)
    parent = None
    for value in (1, "1", True, None, 1.5, {"k": [1, 2]}):
        parent = _put(saver, "t", {}, {}, {}, parent=parent, score=value)
    config = {"configurable": {"thread_id": "t"}}
    for value in (1, "1", True, None, 1.5, {"k": [1, 2]}):
        found = [t.metadata["score"] for t in saver.list(config, filter={"score": value})]
        assert found == [value] and type(found[0]) is type(value)
    assert list(saver.list(config, filter={"score": 2})) == []
    assert len(list(saver.list(None, filter={"source": "loop"}, limit=4))) == 4


def test_put_writes_waits_for_a_checkpoint_being_saved(
    store: CheckpointStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    saver = CheckpointDBSaver(store)
    checkpoint = empty_checkpoint()
    config = {
        "configurable": {"thread_id": "t", "checkpoint_ns": "", "checkpoint_id": checkpoint["id"]}
    }
    late = threading.Timer(
        0.2,
        lambda: saver.put(
            {"configurable": {"thread_id": "t", "checkpoint_ns": ""}},
            checkpoint,
            {"source": "loop", "step": 0},
            {},
        ),
    )
    late.start()
    saver.put_writes(config, [("ch", "v")], "task")  # type: ignore[arg-type]
    late.join()
    tup = saver.get_tuple(config)  # type: ignore[arg-type]
    assert tup is not None and tup.pending_writes == [("task", "ch", "v")]
    monkeypatch.setattr(lg, "_WRITES_WAIT_SECONDS", 0.05)
    missing = {"configurable": {"thread_id": "t", "checkpoint_ns": "", "checkpoint_id": "nope"}}
    started = time.monotonic()
    with pytest.raises(NotFoundError, match="'nope'"):
        saver.put_writes(missing, [("ch", "v")], "task")  # type: ignore[arg-type]
    assert time.monotonic() - started < 2


def test_copy_thread_refuses_an_existing_target(store: CheckpointStore) -> None:
    saver = CheckpointDBSaver(store)
    _put(saver, "a", {"x": 1}, {"x": "1"}, {"x": "1"})
    _put(saver, "b", {"x": 2}, {"x": "1"}, {"x": "1"})
    with pytest.raises(CheckpointDBError, match="'b' already exists"):
        saver.copy_thread("a", "b")
    tup = saver.get_tuple({"configurable": {"thread_id": "b"}})
    assert tup is not None and tup.checkpoint["channel_values"] == {"x": 2}


def test_async_saver_sync_methods_work_from_other_threads(backend_url: str) -> None:
    async def main() -> None:
        async with AsyncCheckpointDBSaver.from_conn_string(backend_url) as saver:
            stored = await asyncio.to_thread(_put, saver, "t", {"x": 1}, {"x": "1"}, {"x": "1"})
            tup = await saver.aget_tuple(stored)
            assert tup is not None and tup.checkpoint["channel_values"] == {"x": 1}
            listed = await asyncio.to_thread(lambda: list(saver.list(stored)))
            assert [t.config for t in listed] == [stored]
            with pytest.raises(asyncio.InvalidStateError):
                saver.get_tuple(stored)

    asyncio.run(main())


def test_versions_grow_and_differ_between_branches(store: CheckpointStore) -> None:
    saver = CheckpointDBSaver(store)
    one = saver.get_next_version(None, None)
    two = saver.get_next_version(one, None)
    assert one < two and two.startswith(f"{2:032}.")
    assert saver.get_next_version(one, None) != two
    assert saver.get_next_version(7, None).startswith(f"{8:032}.")


def test_async_store_opened_elsewhere_is_usable(backend_url: str) -> None:
    async def main() -> list[str]:
        store = await AsyncCheckpointStore.open(backend_url)
        try:
            saver = AsyncCheckpointDBSaver(store)
            checkpoint = empty_checkpoint()
            await saver.aput(
                {"configurable": {"thread_id": "t", "checkpoint_ns": ""}},
                checkpoint,
                {"source": "input", "step": -1},
                {},
            )
            return [t.checkpoint["id"] async for t in saver.alist(None)]
        finally:
            await store.close()

    assert len(asyncio.run(main())) == 1


def test_a_read_is_one_statement_however_many_checkpoints_it_returns(backend_url: str) -> None:
    traced: list[str] = []
    with CheckpointStore(backend_url, trace=traced.append) as store:
        saver = CheckpointDBSaver(store)
        parent = None
        for step in range(5):
            new = {"a": str(step + 1), **({"b": "1"} if step == 0 else {})}
            versions = {"a": str(step + 1), "b": "1"}
            parent = _put(saver, "t", {"a": step, "b": "same"}, versions, new, parent=parent)
            saver.put_writes(parent, [("a", step * 10), ("b", "w")], f"task-{step}")  # type: ignore[arg-type]
        assert parent is not None
        config: Any = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
        older = list(saver.list(config, limit=10))[2]
        reads = {
            "latest": lambda: [saver.get_tuple(config)],
            "by id": lambda: [saver.get_tuple(older.config)],
            "list": lambda: list(saver.list(config, limit=10)),
        }
        for name, read in reads.items():
            traced.clear()
            tuples = [t for t in read() if t is not None]
            statements = [text for text in traced if text not in ("BEGIN", "COMMIT", "ROLLBACK")]
            assert len(statements) == 1, (name, statements)
            for found in tuples:
                assert found.checkpoint["channel_values"]["b"] == "same"
                step = found.checkpoint["channel_values"]["a"]
                assert [(w[1], w[2]) for w in found.pending_writes] == [
                    ("a", step * 10),
                    ("b", "w"),
                ]
        assert [t.checkpoint["channel_values"]["a"] for t in tuples] == [4, 3, 2, 1, 0]
        assert [t.parent_config is None for t in tuples] == [False] * 4 + [True]


def test_put_finds_its_checkpoint_and_parent_through_the_index(tmp_path: Any) -> None:
    # A plan that walks the thread's primary key reads every checkpoint of the
    # thread on each put; the (thread, namespace, id) index reads two entries.
    with CheckpointStore(tmp_path / "plan.db") as store:
        saver = CheckpointDBSaver(store)
        params = {"thread": "t", "ns": "", "id": "b", "parent": "a"}
        with store._db.transaction() as cursor:
            cursor.execute("EXPLAIN QUERY PLAN " + saver._sql.find_ids, params)
            plan = [str(row[3]) for row in cursor.fetchall()]
        searches = [step for step in plan if "langgraph_checkpoints" in step]
        assert len(searches) == 2, plan
        assert all("checkpoint_id=?" in step for step in searches), plan
