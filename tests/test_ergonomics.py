"""What a newcomer meets first: the defaults' deletions, keep="all", resume, strict, mappings."""

from __future__ import annotations

import asyncio
import logging
from types import MappingProxyType

import pytest

from checkpointdb import (
    AsyncCheckpointStore,
    CheckpointStore,
    InvalidDataError,
    NotFoundError,
    RetentionPolicy,
)


def test_the_defaults_delete_older_steps_of_a_200_step_agent(store: CheckpointStore) -> None:
    mgr = store.manager("agent")
    ids = [mgr.create("step", {"step": step}).id for step in range(200)]
    assert len(mgr) < 100
    assert mgr.rollback_to(ids[57]) is None


def test_keep_all_keeps_200_of_200_and_rolls_back_to_step_57(store: CheckpointStore) -> None:
    mgr = store.manager("agent", keep="all")
    ids = [mgr.create("step", {"step": step}).id for step in range(200)]
    assert len(mgr) == 200
    assert mgr.rollback_to(ids[57]) == {"step": 57}
    assert [cp.data["step"] for cp in mgr] == list(range(200))


def test_keep_all_is_stored_for_every_manager_of_the_session(store: CheckpointStore) -> None:
    store.manager("agent", keep="all").create("step", {"step": 0})
    info = store.session("agent")
    assert info is not None
    assert info.policy == RetentionPolicy(max_checkpoints=None, compress_after=None)
    later = store.manager("agent")  # another process, no policy arguments
    for step in range(1, 150):
        later.create("step", {"step": step})
    assert len(later) == 150


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"keep": "everything"}, "keep must be 'all' or None, got 'everything'"),
        ({"keep": "all", "max_checkpoints": 10}, "pass either, not both"),
        ({"keep": "all", "compress_after": None}, "pass either, not both"),
        ({"strict": 1}, "strict must be True or False, got 1"),
    ],
)
def test_bad_keep_or_strict_is_refused(
    store: CheckpointStore, arguments: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidDataError, match=message):
        store.manager("agent", **arguments)  # type: ignore[call-overload]
    assert store.sessions() == []


def test_first_deletion_is_logged_once_per_session(
    store: CheckpointStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="checkpointdb.manager")
    for session in ("first", "second"):
        mgr = store.manager(session, max_checkpoints=5, compress_after=None)
        for step in range(12):
            mgr.create("step", {"step": step})
        mgr = store.manager(session)  # a new manager of the same session
        mgr.create("step", {"step": 12})
    notes = [r.getMessage() for r in caplog.records if "retention deleted" in r.getMessage()]
    assert len(notes) == 2, notes
    assert notes[0].startswith("session first: retention deleted 1 checkpoint(s)")
    assert "max_checkpoints=5" in notes[0] and "keep='all'" in notes[0]
    assert notes[1].startswith("session second:")


def test_keep_all_never_logs_a_deletion(
    store: CheckpointStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="checkpointdb.manager")
    mgr = store.manager("agent", keep="all")
    mgr.create_many([("step", {"step": step}) for step in range(120)])
    assert not [r for r in caplog.records if "retention deleted" in r.getMessage()]


def test_resume_gives_the_newest_data_or_the_default(store: CheckpointStore) -> None:
    mgr = store.manager("agent")
    start = {"done": []}
    assert mgr.resume(start) is start
    mgr.create("plan", {"done": ["plan"]})
    mgr.create("search", {"done": ["plan", "search"]})
    assert mgr.resume(start) == {"done": ["plan", "search"]}
    assert store.manager("other").resume({"fresh": True}) == {"fresh": True}


def test_resume_after_the_newest_was_popped(store: CheckpointStore) -> None:
    mgr = store.manager("agent")
    mgr.create("a", {"n": 1})
    mgr.create("b", {"n": 2})
    mgr.pop()
    assert mgr.resume({}) == {"n": 1}


def test_strict_manager_raises_for_unknown_ids(store: CheckpointStore) -> None:
    mgr = store.manager("agent", strict=True)
    cp = mgr.create("a", {"n": 1})
    for missing in ("agent:99", "other:1", "nonsense"):
        for call in (mgr.get, mgr.rollback_to, mgr.pin, mgr.unpin, mgr.delete, mgr.lineage):
            with pytest.raises(NotFoundError, match=f"no checkpoint {missing!r}"):
                call(missing)
    assert mgr.get(cp.id) == cp
    assert mgr.rollback_to(cp.id) == {"n": 1}
    assert mgr.pin(cp.id) and mgr.unpin(cp.id)
    assert mgr.get_latest("never") is None  # not a lookup by id
    assert mgr.delete(cp.id)
    with pytest.raises(NotFoundError):
        mgr.get(cp.id)


def test_a_lenient_manager_keeps_none_and_false(store: CheckpointStore) -> None:
    mgr = store.manager("agent")
    assert mgr.get("agent:9") is None
    assert mgr.rollback_to("agent:9") is None
    assert mgr.pin("agent:9") is False
    assert mgr.delete("agent:9") is False
    assert mgr.lineage("agent:9") == []


def test_a_fork_of_a_strict_manager_is_strict(store: CheckpointStore) -> None:
    cp = store.manager("agent", strict=True).create("a", {"n": 1})
    forked = store.manager("agent", strict=True).fork(cp.id, "copy")
    with pytest.raises(NotFoundError):
        forked.get("copy:7")


def test_create_takes_any_mapping_and_stores_a_json_object(store: CheckpointStore) -> None:
    mgr = store.manager("agent")
    frozen = MappingProxyType({"step": 1, "inner": MappingProxyType({"tools": ["a"]})})
    cp = mgr.create("a", frozen, MappingProxyType({"run": "r1"}))
    assert cp.data == {"step": 1, "inner": {"tools": ["a"]}}
    stored = mgr.get(cp.id)
    assert stored is not None and type(stored.data) is dict
    assert type(stored.data["inner"]) is dict and stored.metadata == {"run": "r1"}
    (batch,) = mgr.create_many([("b", MappingProxyType({"step": 2}))])
    assert mgr.rollback_to(batch.id) == {"step": 2}
    assert [cp.id for cp in mgr.find(data={"inner.tools": "a"})] == []  # lists are not walked
    assert [cp.id for cp in mgr.find(data={"step": 1})] == [cp.id]


def test_a_mapping_with_a_bad_key_is_refused(store: CheckpointStore) -> None:
    mgr = store.manager("agent")
    with pytest.raises(InvalidDataError, match=r"data\['a'\]: key 1 is a int"):
        mgr.create("a", {"a": MappingProxyType({1: "x"})})  # type: ignore[dict-item]
    with pytest.raises(InvalidDataError, match="data must be a dict, got list"):
        mgr.create("a", [("k", 1)])  # type: ignore[arg-type]
    assert store.sessions() == []


def test_async_manager_keep_all_resume_strict_and_mappings(backend_url: str) -> None:
    async def scenario() -> None:
        async with AsyncCheckpointStore(backend_url) as store:
            mgr = store.manager("agent", keep="all", strict=True)
            assert await mgr.resume({"step": -1}) == {"step": -1}
            ids = [(await mgr.create("step", {"step": step})).id for step in range(120)]
            assert await mgr.count() == 120
            assert await mgr.rollback_to(ids[57]) == {"step": 57}
            assert await mgr.resume({}) == {"step": 119}
            for call in (mgr.get, mgr.rollback_to, mgr.pin, mgr.unpin, mgr.delete, mgr.lineage):
                with pytest.raises(NotFoundError):
                    await call("agent:999")
            cp = await mgr.create("m", MappingProxyType({"k": MappingProxyType({"v": 1})}))
            assert await mgr.rollback_to(cp.id) == {"k": {"v": 1}}

    asyncio.run(scenario())
