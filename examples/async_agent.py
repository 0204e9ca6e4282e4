"""An asyncio agent with typed state: a dataclass in, a dataclass out.

``store.manager(sid, model=State)`` returns ``State`` instances from every
read, and ``create`` takes one; the store keeps plain JSON. Several agents
run concurrently, each in its own session, on one store.

    python examples/async_agent.py

The store is ``$CHECKPOINTDB_URL`` if set (SQLite path or PostgreSQL URL),
else ``./checkpoints.db``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from checkpointdb import AsyncCheckpointStore

STEPS = ["plan", "search", "read", "write_report"]


@dataclass
class State:
    """What the agent knows; stored as JSON after every step."""

    topic: str
    done: list[str] = field(default_factory=list)


async def run_agent(store: AsyncCheckpointStore, topic: str) -> State:
    """Run one agent to the end, resuming from its session's newest checkpoint."""
    mgr = store.manager(f"research-{topic}", model=State, keep="all")
    state = await mgr.resume(State(topic=topic))
    for step in STEPS:
        if step in state.done:
            continue
        await asyncio.sleep(0.01)  # the agent's real work: an LLM call, a tool
        state.done.append(step)
        await mgr.create(step, state)
    return state


async def main() -> None:
    """Run three agents at once on one store."""
    async with AsyncCheckpointStore() as store:
        results = await asyncio.gather(*(run_agent(store, t) for t in ("tides", "bees", "ink")))
        for state in results:
            print(f"{state.topic}: {', '.join(state.done)}")
        plan = await store.manager("research-bees", model=State).get_by_name("plan")
        print(f"bees after 'plan': {plan[0].data}")


if __name__ == "__main__":
    asyncio.run(main())
