"""Typed state: model= returns dataclass or pydantic instances; TypedDict state type-checks."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from checkpointdb import AsyncCheckpointStore, CheckpointStore, InvalidDataError

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Tool:
    name: str
    calls: int = 0


@dataclass
class State:
    step: int
    done: list[str] = field(default_factory=list)
    tools: list[Tool] = field(default_factory=list)
    best: Tool | None = None
    scores: dict[str, float] = field(default_factory=dict)


def _state(step: int) -> State:
    return State(
        step=step,
        done=[f"s{i}" for i in range(step)],
        tools=[Tool("search", step)],
        best=Tool("fetch") if step % 2 else None,
        scores={"q": step / 2},
    )


def test_every_read_of_a_dataclass_manager_returns_instances(store: CheckpointStore) -> None:
    mgr = store.manager("agent", model=State)
    assert mgr.model is State
    created = [mgr.create("step", _state(step)) for step in range(3)]
    assert created[1].data == _state(1)
    ids = [cp.id for cp in created]
    got = mgr.get(ids[1])
    assert got is not None and got.data == _state(1)
    assert isinstance(got.data.tools[0], Tool) and isinstance(got.data.best, Tool)
    latest = mgr.get_latest()
    assert latest is not None and latest.data == _state(2)
    assert mgr.rollback_to(ids[0]) == _state(0)
    assert mgr.resume(State(step=-1)) == _state(2)
    readers = [
        list(mgr),
        mgr.get_all(),
        mgr.get_by_name("step"),
        mgr.get_recent(3),
        mgr.get_since(created[0].timestamp - created[0].timestamp.resolution),
        mgr.get_between(created[0].timestamp, created[2].timestamp),
        mgr.lineage(ids[2]),
        list(mgr.find(data={"step": 1})),
        list(mgr.iter_newest_first()),
    ]
    for read in readers:
        assert read and all(isinstance(cp.data, State) for cp in read), read
    popped = mgr.pop()
    assert popped is not None and popped.data == _state(2)


def test_a_dataclass_manager_stores_plain_json(store: CheckpointStore) -> None:
    cp = store.manager("agent", model=State).create("step", _state(1))
    plain = store.manager("agent").get(cp.id)
    assert plain is not None
    assert plain.data == {
        "step": 1,
        "done": ["s0"],
        "tools": [{"name": "search", "calls": 1}],
        "best": {"name": "fetch", "calls": 0},
        "scores": {"q": 0.5},
    }
    exported = store.manager("agent", model=State).export()
    assert '"tools": [\n' in exported and '"name": "search"' in exported


def test_a_typed_manager_accepts_mappings_and_batches(store: CheckpointStore) -> None:
    mgr = store.manager("agent", model=State)
    cp = mgr.create("step", {"step": 4})
    assert cp.data == State(step=4)
    batch = mgr.create_many([("a", _state(1)), ("b", {"step": 2, "done": ["x"]})])
    assert [c.data for c in batch] == [_state(1), State(step=2, done=["x"])]


def test_data_that_does_not_fit_the_model_names_the_checkpoint(store: CheckpointStore) -> None:
    cp = store.manager("agent").create("step", {"step": 1, "colour": "red"})
    typed = store.manager("agent", model=State)
    with pytest.raises(InvalidDataError, match=r"'agent:1'.*State has no field 'colour'"):
        typed.get(cp.id)
    with pytest.raises(InvalidDataError, match="model must be a dataclass or a pydantic"):
        store.manager("agent", model=dict)


def test_a_fork_keeps_the_model(store: CheckpointStore) -> None:
    cp = store.manager("agent", model=State).create("step", _state(1))
    forked = store.manager("agent", model=State).fork(cp.id, "copy")
    latest = forked.get_latest()
    assert latest is not None and latest.data == _state(1)


def test_callbacks_get_typed_checkpoints(store: CheckpointStore) -> None:
    mgr = store.manager("agent", model=State)
    seen: list[State] = []
    mgr.on_checkpoint(lambda cp: seen.append(cp.data))
    mgr.create("step", _state(2))
    assert seen == [_state(2)]


def test_pydantic_models_round_trip(store: CheckpointStore) -> None:
    pydantic = pytest.importorskip("pydantic")

    class Plan(pydantic.BaseModel):  # type: ignore[misc,name-defined]
        goal: str
        steps: list[str] = pydantic.Field(default_factory=list)

    mgr = store.manager("agent", model=Plan)
    cp = mgr.create("plan", Plan(goal="report", steps=["search"]))
    assert isinstance(cp.data, Plan) and cp.data.steps == ["search"]
    assert mgr.resume(Plan(goal="none")) == Plan(goal="report", steps=["search"])
    store.manager("agent").create("bad", {"goal": 3})
    with pytest.raises(InvalidDataError, match=r"'agent:2'.*does not fit Plan"):
        mgr.get_latest()


def test_async_typed_manager(backend_url: str) -> None:
    async def scenario() -> None:
        async with AsyncCheckpointStore(backend_url) as store:
            mgr = store.manager("agent", model=State)
            assert await mgr.resume(State(step=0)) == State(step=0)
            cp = await mgr.create("step", _state(3))
            assert cp.data == _state(3)
            assert await mgr.rollback_to(cp.id) == _state(3)
            assert [c.data async for c in mgr] == [_state(3)]
            assert [c.data async for c in mgr.find(name="step")] == [_state(3)]
            assert [c.data for c in await mgr.get_all()] == [_state(3)]
            plain = await store.manager("agent").get(cp.id)
            assert plain is not None and plain.data["tools"] == [{"name": "search", "calls": 3}]

    asyncio.run(scenario())


# What users write: a TypedDict state, a dataclass model. mypy --strict must
# accept the first file and catch the mistakes in the second.
TYPED_USE = """
    from dataclasses import dataclass
    from types import MappingProxyType
    from typing import TypedDict

    from checkpointdb import Checkpoint, CheckpointStore


    class AgentState(TypedDict):
        step: int
        done: list[str]


    @dataclass
    class Step:
        step: int


    def run(store: CheckpointStore) -> int:
        mgr = store.manager("agent")
        state: AgentState = {"step": 1, "done": []}
        mgr.create("step", state)
        mgr.create("frozen", MappingProxyType({"step": 2}))
        mgr.create_many([("a", state), ("b", state, {"run": "r1"})])
        resumed = mgr.resume({"step": 0})
        typed = store.manager("agent", model=Step, strict=True)
        typed.create("step", Step(3))
        latest: Checkpoint[Step] | None = typed.get_latest()
        begin: Step = typed.resume(Step(0))
        back = typed.rollback_to("agent:1")
        return int(resumed["step"]) + begin.step + (latest.data.step if latest else 0) + (
            back.step if back else 0
        )
"""

TYPED_MISTAKES = """
    from dataclasses import dataclass

    from checkpointdb import CheckpointStore


    @dataclass
    class Step:
        step: int


    def run(store: CheckpointStore) -> None:
        typed = store.manager("agent", model=Step)
        latest = typed.get_latest()
        if latest is not None:
            latest.data.missing
        typed.resume({"step": 0})
"""


def _mypy(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "use.py"
    path.write_text(textwrap.dedent(source))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--cache-dir",
            str(REPO_ROOT / ".mypy_cache"),
            str(path),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=240,
    )


def test_typed_state_passes_mypy_strict(tmp_path: Path) -> None:
    result = _mypy(tmp_path, TYPED_USE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_catches_misuse_of_a_typed_manager(tmp_path: Path) -> None:
    result = _mypy(tmp_path, TYPED_MISTAKES)
    assert result.returncode == 1, result.stdout + result.stderr
    assert '"Step" has no attribute "missing"' in result.stdout
    assert 'Argument 1 to "resume" of "CheckpointManager" has incompatible type' in result.stdout
