"""CheckpointDBSession: the OpenAI Agents SDK's Session protocol on checkpointdb.

The SDK's own SQLiteSession is the reference on every edge (limits, popping
an empty session, clearing twice); conversations run through the SDK's real
``Runner`` with the offline model of examples/openai_agents_chat.py, which
answers with the user messages it was handed. Every test runs on both backends.
"""

from __future__ import annotations

import asyncio
import importlib.util
import math
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import pytest

pytest.importorskip("agents", reason="the openai-agents extra is not installed")

from agents import Runner, SQLiteSession, set_tracing_disabled
from agents.memory import Session, SessionSettings
from agents.run_internal.session_persistence import rewind_session_items

from checkpointdb import (
    AsyncCheckpointStore,
    CheckpointDBError,
    CheckpointStore,
    InvalidDataError,
    StoreClosedError,
)
from checkpointdb.openai_agents import CheckpointDBSession
from checkpointdb.readonly import run_read_only

T = TypeVar("T")
REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = REPO_ROOT / "examples" / "openai_agents_chat.py"

set_tracing_disabled(True)


def _load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("openai_agents_chat", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


chat_example = _load_example()


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(main())


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def reply(text: str, n: int) -> dict[str, Any]:
    return {
        "id": f"msg_{n}",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def call(n: int) -> dict[str, Any]:
    return {"type": "function_call", "call_id": f"c{n}", "name": "lookup", "arguments": "{}"}


# A transcript with every kind of item the tests need: role-only, typed, tool call.
ITEMS = [user("hi"), reply("hello", 1), call(2), user("more"), reply("sure", 3), user("bye")]


async def with_session(
    url: str, body: Callable[[CheckpointDBSession], Awaitable[T]], **options: Any
) -> T:
    async with CheckpointDBSession("chat", url, **options) as session:
        return await body(session)


def texts(items: list[Any]) -> list[str]:
    """Each item's text (a user's content, an assistant's first part, a call's name)."""
    out = []
    for item in items:
        content = item.get("content")
        if isinstance(content, list):
            out.append(content[0]["text"])
        else:
            out.append(content if content is not None else item["name"])
    return out


# -- the protocol, edge by edge, against the SDK's own SQLiteSession -------------


def test_it_is_a_session_of_the_sdk(backend_url: str) -> None:
    async def main(session: CheckpointDBSession) -> None:
        assert isinstance(session, Session)
        assert session.session_id == "chat"
        assert isinstance(session.session_settings, SessionSettings)
        assert session.session_settings.limit is None

    run(lambda: with_session(backend_url, main))


@pytest.mark.parametrize("limit", [None, 0, 1, 2, 5, 6, 7, 100, -1, -3])
def test_get_items_with_a_limit_answers_as_sqlite_session(backend_url: str, limit: Any) -> None:
    async def main(session: CheckpointDBSession) -> None:
        reference = SQLiteSession("chat")
        try:
            for batch in (ITEMS[:2], ITEMS[2:5], ITEMS[5:]):
                await session.add_items(batch)
                await reference.add_items(batch)
            expected = await reference.get_items(limit)
            assert await session.get_items(limit) == expected
            assert await session.get_items(limit=limit) == expected
        finally:
            reference.close()
        if limit is None or limit < 0:
            assert expected == ITEMS
        elif limit == 0:
            assert expected == []
        else:
            assert expected == ITEMS[max(len(ITEMS) - limit, 0) :]

    run(lambda: with_session(backend_url, main))


@pytest.mark.parametrize("setting", [0, 2, -1, 100])
def test_the_session_settings_limit_applies_when_get_items_gets_none(
    backend_url: str, setting: int
) -> None:
    async def main(session: CheckpointDBSession) -> None:
        reference = SQLiteSession("chat", session_settings=SessionSettings(limit=setting))
        try:
            await session.clear_session()  # the second run uses the same database
            await session.add_items(ITEMS)
            await reference.add_items(ITEMS)
            assert await session.get_items() == await reference.get_items()
            # An explicit limit wins over the setting.
            assert await session.get_items(1) == await reference.get_items(1) == ITEMS[-1:]
        finally:
            reference.close()

    run(lambda: with_session(backend_url, main, session_settings=SessionSettings(limit=setting)))
    run(lambda: with_session(backend_url, main, session_settings={"limit": setting}))


def test_the_runner_reads_only_the_newest_items_of_a_session_settings_limit(
    backend_url: str,
) -> None:
    async def main(session: CheckpointDBSession) -> list[str]:
        agent = chat_example.offline_agent()
        for message in ("one", "two", "three"):
            result = await Runner.run(agent, message, session=session)
        return [str(result.final_output)]

    # Two items per turn: the third turn sees the second turn's pair and its own input.
    answers = run(lambda: with_session(backend_url, main, session_settings={"limit": 2}))
    assert answers == ["seen 2 user messages; first: 'two'; last: 'three'"]


def test_pop_item_removes_and_returns_the_newest_then_none_as_sqlite_session(
    backend_url: str,
) -> None:
    async def main(session: CheckpointDBSession) -> None:
        reference = SQLiteSession("chat")
        try:
            assert await session.pop_item() is None
            assert await reference.pop_item() is None
            await session.add_items(ITEMS[:3])
            await reference.add_items(ITEMS[:3])
            for expected in reversed(ITEMS[:3]):
                assert await session.pop_item() == await reference.pop_item() == expected
            assert await session.pop_item() is None
            assert await session.get_items() == []
            await session.add_items(ITEMS[3:4])
            assert await session.get_items() == ITEMS[3:4]
        finally:
            reference.close()

    run(lambda: with_session(backend_url, main))


def test_clearing_a_new_session_and_clearing_twice_do_nothing_more(backend_url: str) -> None:
    async def main(session: CheckpointDBSession) -> None:
        await session.clear_session()
        await session.add_items(ITEMS)
        other = CheckpointDBSession("other", session.store)
        await other.add_items(ITEMS[:1])
        await session.clear_session()
        await session.clear_session()
        assert await session.get_items() == []
        assert await session.pop_item() is None
        assert await other.get_items() == ITEMS[:1]
        await session.add_items(ITEMS[:2])
        assert await session.get_items() == ITEMS[:2]

    run(lambda: with_session(backend_url, main))


def test_add_items_of_nothing_writes_nothing(backend_url: str) -> None:
    run(lambda: with_session(backend_url, lambda session: session.add_items([])))
    with CheckpointStore(backend_url) as store:
        assert store.session("chat") is None


# -- what is stored, and where ------------------------------------------------------


def test_each_item_is_one_checkpoint_named_for_its_type_with_the_item_as_data(
    backend_url: str,
) -> None:
    run(lambda: with_session(backend_url, lambda session: session.add_items(ITEMS)))
    with CheckpointStore(backend_url) as store:
        stored = store.manager("chat").get_all()
        assert [cp.name for cp in stored] == [
            "message",
            "message",
            "function_call",
            "message",
            "message",
            "message",
        ]
        assert [cp.data for cp in stored] == ITEMS
        assert [cp.seq for cp in stored] == [1, 2, 3, 4, 5, 6]
        columns, rows = run_read_only(
            store,
            "SELECT seq, name, data ->> 'role' AS role FROM checkpoint_view "
            "WHERE session_id = 'chat' ORDER BY seq",
        )
        assert columns == ["seq", "name", "role"]
        assert [tuple(row) for row in rows] == [
            (1, "message", "user"),
            (2, "message", "assistant"),
            (3, "function_call", None),
            (4, "message", "user"),
            (5, "message", "assistant"),
            (6, "message", "user"),
        ]


def test_a_transcript_never_loses_its_middle(backend_url: str) -> None:
    # Far past the store's default policy (compact after 50, cap at 100).
    many = [user(f"m{i}") for i in range(160)]

    async def main(session: CheckpointDBSession) -> list[Any]:
        for start in range(0, len(many), 40):
            await session.add_items(many[start : start + 40])
        return await session.get_items()

    assert run(lambda: with_session(backend_url, main)) == many
    with CheckpointStore(backend_url) as store:
        info = store.session("chat")
        assert info is not None
        assert (info.policy.max_checkpoints, info.policy.compress_after) == (None, None)
        assert info.checkpoint_count == 160


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ({"role": "user", "content": math.nan}, "nan"),
        ({"role": "user", "content": [{"type": "input_text", 1: "x"}]}, "key 1"),
        ({"role": "user", "content": {"a", "b"}}, "set"),
        ({"role": "user", "content": float("inf")}, "inf"),
        ("just text", "items\\[1\\] must be a dict"),
        ({"type": 3, "content": "x"}, "items\\[1\\]\\['type'\\]"),
    ],
)
def test_an_item_that_cannot_be_stored_exactly_is_refused_and_nothing_is_written(
    backend_url: str, bad: Any, named: str
) -> None:
    async def main(session: CheckpointDBSession) -> None:
        await session.add_items(ITEMS[:2])
        with pytest.raises(InvalidDataError, match=named):
            await session.add_items([user("fine"), bad, user("also fine")])
        assert await session.get_items() == ITEMS[:2]

    run(lambda: with_session(backend_url, main))
    with CheckpointStore(backend_url) as store:
        info = store.session("chat")
        assert info is not None
        assert (info.checkpoint_count, info.last_seq) == (2, 2)


def test_max_items_drops_the_oldest_items_the_first_too(backend_url: str) -> None:
    async def main(session: CheckpointDBSession) -> None:
        await session.add_items(ITEMS[:2])
        assert await session.get_items() == ITEMS[:2]
        await session.add_items(ITEMS[2:4])
        assert await session.get_items() == ITEMS[1:4]
        await session.add_items(ITEMS[4:])
        assert await session.get_items() == ITEMS[3:]
        assert await session.pop_item() == ITEMS[-1]
        assert await session.get_items() == ITEMS[3:5]

    run(lambda: with_session(backend_url, main, max_items=3))
    with CheckpointStore(backend_url) as store:
        assert [cp.seq for cp in store.manager("chat").get_all()] == [4, 5]


@pytest.mark.parametrize("bad", [0, -2, 1.5, "3", True])
def test_a_bad_max_items_is_refused(backend_url: str, bad: Any) -> None:
    with pytest.raises(InvalidDataError, match="max_items must be an int >= 1"):
        CheckpointDBSession("chat", backend_url, max_items=bad)


@pytest.mark.parametrize("bad", ["2", 1.0, True])
def test_a_bad_limit_is_refused(backend_url: str, bad: Any) -> None:
    async def main(session: CheckpointDBSession) -> None:
        with pytest.raises(InvalidDataError, match="limit must be an int or None"):
            await session.get_items(bad)

    run(lambda: with_session(backend_url, main))


def test_bad_arguments_are_refused_with_their_value(backend_url: str) -> None:
    with pytest.raises(InvalidDataError, match="session_id must not be empty"):
        CheckpointDBSession("", backend_url)
    with (
        CheckpointStore(backend_url) as sync_store,
        pytest.raises(CheckpointDBError, match="must be an AsyncCheckpointStore"),
    ):
        CheckpointDBSession("chat", sync_store)  # type: ignore[arg-type]
    with pytest.raises(InvalidDataError, match="session_settings") as refused:
        CheckpointDBSession("chat", backend_url, session_settings={"limit": "many"})
    assert "\n" not in str(refused.value) and "limit: " in str(refused.value)
    with pytest.raises(InvalidDataError, match="unknown field\\(s\\) 'limt'"):
        CheckpointDBSession("chat", backend_url, session_settings={"limt": 3})
    with pytest.raises(InvalidDataError, match="session_settings"):
        CheckpointDBSession("chat", backend_url, session_settings=5)  # type: ignore[arg-type]


def test_without_the_sdk_the_import_names_the_extra_to_install() -> None:
    probe = "import sys; sys.modules['agents'] = None; import checkpointdb.openai_agents"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert 'pip install "checkpointdb[openai-agents]"' in result.stderr.splitlines()[-1]


# -- who owns the store ---------------------------------------------------------------


def test_a_session_closes_the_store_it_opened_but_not_one_it_was_given(backend_url: str) -> None:
    async def main() -> None:
        owned = CheckpointDBSession("chat", backend_url)
        await owned.add_items(ITEMS[:1])  # opens the store on first use
        await owned.close()
        with pytest.raises(StoreClosedError):
            await owned.get_items()

        async with AsyncCheckpointStore(backend_url) as store:
            async with CheckpointDBSession("chat", store) as given:
                assert await given.get_items() == ITEMS[:1]
            assert await store.session("chat") is not None  # still open
            assert await CheckpointDBSession("chat", store).pop_item() == ITEMS[0]
        with pytest.raises(StoreClosedError):
            await CheckpointDBSession("chat", store).add_items([])

    run(main)


# -- with the SDK's Runner --------------------------------------------------------------


def test_a_multi_turn_conversation_hands_the_model_its_history(backend_url: str) -> None:
    async def main(session: CheckpointDBSession) -> tuple[list[str], Any, list[Any]]:
        agent = chat_example.offline_agent()
        answers = []
        for message in ("hello", "my name is Ana", "what is my name?"):
            result = await Runner.run(agent, message, session=session)
            answers.append(str(result.final_output))
        return answers, agent.model, await session.get_items()

    answers, model, items = run(lambda: with_session(backend_url, main))
    assert answers == [
        "seen 1 user messages; first: 'hello'; last: 'hello'",
        "seen 2 user messages; first: 'hello'; last: 'my name is Ana'",
        "seen 3 user messages; first: 'hello'; last: 'what is my name?'",
    ]
    # The third call got the first two turns, answers included, then the new message.
    assert texts(model.inputs[2]) == [
        "hello",
        answers[0],
        "my name is Ana",
        answers[1],
        "what is my name?",
    ]
    assert [item.get("role") for item in items] == ["user", "assistant"] * 3
    assert texts(items) == [*texts(model.inputs[2]), answers[2]]


def test_two_sessions_at_once_in_one_store_stay_apart(backend_url: str) -> None:
    async def converse(store: AsyncCheckpointStore, name: str) -> tuple[list[str], list[Any]]:
        session = CheckpointDBSession(name, store)
        agent = chat_example.offline_agent()
        answers = []
        for turn in range(4):
            result = await Runner.run(agent, f"{name}-{turn}", session=session)
            answers.append(str(result.final_output))
        return answers, await session.get_items()

    async def main() -> list[tuple[list[str], list[Any]]]:
        async with AsyncCheckpointStore(backend_url) as store:
            return await asyncio.gather(converse(store, "ana"), converse(store, "bo"))

    for name, (answers, items) in zip(("ana", "bo"), run(main), strict=True):
        assert answers[-1] == f"seen 4 user messages; first: '{name}-0'; last: '{name}-3'"
        said = [item["content"] for item in items if item.get("role") == "user"]
        assert said == [f"{name}-{turn}" for turn in range(4)]
        assert len(items) == 8


def test_the_sdks_retry_rewind_pops_exactly_the_items_last_added(backend_url: str) -> None:
    async def main(session: CheckpointDBSession) -> list[Any]:
        await Runner.run(chat_example.offline_agent(), "kept", session=session)
        before = await session.get_items()
        retried = [user("retried"), call(7), reply("partial", 8)]
        await session.add_items(retried)
        await rewind_session_items(session, retried)
        assert await session.get_items() == before
        return before

    before = run(lambda: with_session(backend_url, main))
    assert texts(before)[0] == "kept" and len(before) == 2
    with CheckpointStore(backend_url) as store:
        info = store.session("chat")
        assert info is not None
        assert (info.checkpoint_count, info.last_seq) == (2, 5)


def test_the_sdks_rewind_leaves_a_tail_that_does_not_match_alone(backend_url: str) -> None:
    async def main(session: CheckpointDBSession) -> list[Any]:
        await session.add_items(ITEMS)
        await rewind_session_items(session, [user("never added")])
        return await session.get_items()

    assert run(lambda: with_session(backend_url, main)) == ITEMS


def test_concurrent_add_items_keep_every_item_once_in_order_per_call(backend_url: str) -> None:
    calls, per_call = 20, 5

    async def main(session: CheckpointDBSession) -> list[Any]:
        await asyncio.gather(
            *(session.add_items([user(f"{c}:{i}") for i in range(per_call)]) for c in range(calls))
        )
        return await session.get_items()

    items = run(lambda: with_session(backend_url, main))
    said = [item["content"] for item in items]
    assert sorted(said) == sorted(f"{c}:{i}" for c in range(calls) for i in range(per_call))
    # One transaction per call: its items sit together, in its order.
    for start in range(0, len(said), per_call):
        block = [text.split(":") for text in said[start : start + per_call]]
        assert {c for c, _ in block} == {block[0][0]}
        assert [int(i) for _, i in block] == list(range(per_call))


# -- the example, and surviving a kill ----------------------------------------------------


def test_the_example_chats_and_a_later_run_continues_the_conversation(
    backend_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    chat_example.main(["--db", backend_url, "--session", "demo", "hello", "how are you?"])
    chat_example.main(["--db", backend_url, "--session", "demo", "still there?"])
    out = capsys.readouterr().out
    assert "agent> seen 2 user messages; first: 'hello'; last: 'how are you?'" in out
    assert "agent> seen 3 user messages; first: 'hello'; last: 'still there?'" in out
    with CheckpointStore(backend_url) as store:
        assert store.manager("demo").get_summary()["total_count"] == 6


CHILD = textwrap.dedent(
    """
    import asyncio, importlib.util, sys
    from agents import Runner

    spec = importlib.util.spec_from_file_location("openai_agents_chat", sys.argv[1])
    example = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = example
    spec.loader.exec_module(example)
    from checkpointdb.openai_agents import CheckpointDBSession

    async def main():
        agent = example.offline_agent()
        async with CheckpointDBSession("chat", sys.argv[2]) as session:
            turn = 0
            while True:  # until killed, mid-turn or between turns
                await Runner.run(agent, f"m{turn}", session=session)
                print(turn, flush=True)
                turn += 1

    asyncio.run(main())
    """
)


@pytest.mark.slow
def test_a_conversation_continues_with_its_history_after_its_process_is_killed(
    backend_url: str, tmp_path: Path
) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    child = subprocess.Popen(
        [sys.executable, str(script), str(EXAMPLE), backend_url],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "OPENAI_AGENTS_DISABLE_TRACING": "1"},
    )
    try:
        assert child.stdout is not None
        finished = [child.stdout.readline() for _ in range(3)]
        assert finished == ["0\n", "1\n", "2\n"]
        time.sleep(0.05)  # let it be somewhere in a later turn
    finally:
        child.kill()  # SIGKILL: no cleanup, no close
        child.wait(timeout=30)

    async def main(session: CheckpointDBSession) -> tuple[list[Any], str]:
        items = await session.get_items()
        result = await Runner.run(chat_example.offline_agent(), "after the kill", session=session)
        return items, str(result.final_output)

    items, answer = run(lambda: with_session(backend_url, main))
    said = [item["content"] for item in items if item.get("role") == "user"]
    assert len(said) >= 3
    assert said == [f"m{turn}" for turn in range(len(said))]
    assert answer == f"seen {len(said) + 1} user messages; first: 'm0'; last: 'after the kill'"
