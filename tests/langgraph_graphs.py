"""A LangGraph graph the LangGraph tests run in this and in other processes.

Run as a script (``python tests/langgraph_graphs.py run URL THREAD MARKER``)
it starts the graph on a thread and stops inside node ``b`` (after writing
MARKER) until it is killed, so a test can SIGKILL it mid-run. With
``chat URL THREAD TURNS`` it runs that many turns of the chat graph.
"""

from __future__ import annotations

import operator
import sys
import time
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt

from checkpointdb.langgraph import CheckpointDBSaver


class State(TypedDict):
    steps: Annotated[list[str], operator.add]


def build(saver: Any, hang_marker: Path | None = None) -> Any:
    """a -> b -> ask (interrupts for an answer) -> c."""

    def a(state: State) -> dict[str, Any]:
        return {"steps": ["a"]}

    def b(state: State) -> dict[str, Any]:
        if hang_marker is not None:
            hang_marker.write_text("in b")
            while True:
                time.sleep(1)
        return {"steps": ["b"]}

    def ask(state: State) -> dict[str, Any]:
        answer = interrupt("continue?")
        return {"steps": [f"ask:{answer}"]}

    def c(state: State) -> dict[str, Any]:
        return {"steps": ["c"]}

    builder = StateGraph(State)
    for name, node in (("a", a), ("b", b), ("ask", ask), ("c", c)):
        builder.add_node(name, node)
    builder.add_edge(START, "a")
    builder.add_edge("a", "b")
    builder.add_edge("b", "ask")
    builder.add_edge("ask", "c")
    builder.add_edge("c", END)
    return builder.compile(checkpointer=saver)


class Chat(TypedDict):
    messages: Annotated[list[str], operator.add]


def build_chat(saver: Any) -> Any:
    """One node that answers each message: the messages channel grows every turn."""

    def reply(state: Chat) -> dict[str, Any]:
        return {"messages": [f"answer {len(state['messages'])}: " + "x" * 200]}

    builder = StateGraph(Chat)
    builder.add_node("reply", reply)
    builder.add_edge(START, "reply")
    builder.add_edge("reply", END)
    return builder.compile(checkpointer=saver)


def chat_turns(graph: Any, thread: str, turns: int) -> None:
    """Run ``turns`` chat turns on ``thread``."""
    config = {"configurable": {"thread_id": thread}}
    for turn in range(turns):
        graph.invoke({"messages": [f"question {turn}: " + "y" * 200]}, config)


if __name__ == "__main__":
    command, url, thread = sys.argv[1:4]
    with CheckpointDBSaver.from_conn_string(url) as saver:
        if command == "run":
            graph = build(saver, hang_marker=Path(sys.argv[4]))
            # "sync": each step's checkpoint is committed before the next step
            # starts. LangGraph's default ("async") saves it while the next
            # step runs, so a kill inside b could come before a's was stored.
            graph.invoke(
                {"steps": []}, {"configurable": {"thread_id": thread}}, durability="sync"
            )
        elif command == "chat":
            chat_turns(build_chat(saver), thread, int(sys.argv[4]))
        else:
            raise SystemExit(f"unknown command {command!r}")
