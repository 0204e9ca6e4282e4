"""A chat with an OpenAI Agents SDK agent whose conversation lives in checkpointdb.

Runs offline: the agent's model is a small local one that answers from the
history the SDK hands it (how many messages you sent, and what you said
first), so you can see the conversation survive a restart without an API
key or a network.

    pip install "checkpointdb[openai-agents]"
    python examples/openai_agents_chat.py "hello" "how are you?"
    python examples/openai_agents_chat.py "do you remember me?"   # a new process
    python examples/openai_agents_chat.py                          # type; an empty line ends

Each run continues the session ``--session`` (default ``chat``) in the
database ``--db`` (default ``chat.db``; a PostgreSQL URL works too), then
prints where the transcript is stored.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

from agents import Agent, Runner, set_tracing_disabled
from agents.agent_output import AgentOutputSchemaBase
from agents.handoffs import Handoff
from agents.items import ModelResponse, TResponseInputItem, TResponseStreamEvent
from agents.model_settings import ModelSettings
from agents.models.interface import Model, ModelTracing
from agents.tool import Tool
from agents.usage import Usage
from openai.types.responses import ResponseOutputMessage, ResponseOutputText

from checkpointdb.openai_agents import CheckpointDBSession


def said_by_user(items: str | list[TResponseInputItem]) -> list[str]:
    """The text of every user message in a model input, oldest first."""
    if isinstance(items, str):
        return [items]
    texts = []
    for item in items:
        if isinstance(item, dict) and item.get("role") == "user":
            content = item.get("content")
            if isinstance(content, str):
                texts.append(content)
            elif isinstance(content, list):
                texts.append(" ".join(str(part.get("text", "")) for part in content))
    return texts


class RecallModel(Model):
    """An offline model that answers from the conversation history it is given.

    Its answer names how many user messages it sees and the first and last
    of them: proof that the session handed it the whole history.
    """

    def __init__(self) -> None:
        # Every input the model was called with, oldest first.
        self.inputs: list[str | list[TResponseInputItem]] = []

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: Any | None,
    ) -> ModelResponse:
        """One assistant message about the user messages in ``input``."""
        self.inputs.append(input)
        heard = said_by_user(input)
        text = f"seen {len(heard)} user messages; first: {heard[0]!r}; last: {heard[-1]!r}"
        message = ResponseOutputMessage(
            id=f"msg_{uuid.uuid4().hex}",
            type="message",
            role="assistant",
            status="completed",
            content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
        )
        return ModelResponse(output=[message], usage=Usage(), response_id=None)

    def stream_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: Any | None,
    ) -> AsyncIterator[TResponseStreamEvent]:
        """Not offered: this model answers in one piece (use ``Runner.run``)."""
        raise NotImplementedError("RecallModel does not stream; use Runner.run")


def offline_agent() -> Agent[Any]:
    """An agent on the offline model, with the SDK's tracing (a network call) off."""
    set_tracing_disabled(True)
    # The SDK builds its default OpenAI client eagerly in some paths; no request is made.
    os.environ.setdefault("OPENAI_API_KEY", "offline")
    return Agent(name="assistant", instructions="Answer briefly.", model=RecallModel())


async def chat(db: str, session_id: str, messages: Iterable[str], echo: bool = False) -> list[str]:
    """Say each message in turn in the session, printing the agent's answers; return them."""
    agent = offline_agent()
    answers = []
    async with CheckpointDBSession(session_id, db) as session:
        for message in messages:
            if echo:
                print(f"you>   {message}")
            result = await Runner.run(agent, message, session=session)
            answers.append(str(result.final_output))
            print(f"agent> {answers[-1]}", flush=True)
    return answers


def typed_lines() -> Iterator[str]:
    """Lines typed at a ``you>`` prompt, until an empty line or end of input."""
    while True:
        try:
            line = input("you>   ").strip()
        except EOFError:
            return
        if not line:
            return
        yield line


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and chat."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("messages", nargs="*", help="messages to say (default: type them)")
    parser.add_argument("--db", default="chat.db", help="SQLite path or database URL")
    parser.add_argument("--session", default="chat", help="the conversation's session id")
    options = parser.parse_args(argv)
    messages = options.messages or typed_lines()
    asyncio.run(chat(options.db, options.session, messages, echo=bool(options.messages)))
    print(
        f"(session {options.session!r} in {options.db}: checkpointdb --db {options.db} "
        f"list {options.session})"
    )


if __name__ == "__main__":
    main()
