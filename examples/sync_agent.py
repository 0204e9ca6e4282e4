"""A synchronous agent that resumes where it stopped.

Each step saves the whole state; a run that is interrupted (here with
``--stop-after N``, in life by a crash or a deploy) resumes after the last
saved step when started again, and never runs a step twice.

    python examples/sync_agent.py --stop-after 2   # stops after two steps
    python examples/sync_agent.py                  # resumes, finishes

The store is ``$CHECKPOINTDB_URL`` if set (SQLite path or PostgreSQL URL),
else ``./checkpoints.db``.
"""

from __future__ import annotations

import argparse

from checkpointdb import CheckpointStore

STEPS = ["plan", "search", "read", "write_report"]


def do_step(step: str, state: dict[str, list[str]]) -> None:
    """The agent's real work would go here: an LLM call, a tool."""
    state["notes"].append(f"{step} done")


def main() -> None:
    """Run the agent, resuming after its last saved step."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--session", default="sync-agent")
    parser.add_argument("--stop-after", type=int, default=None, help="stop after N steps")
    args = parser.parse_args()

    with CheckpointStore() as store:
        # keep="all": this short agent keeps every step, so any step can be rolled back to.
        mgr = store.manager(args.session, keep="all")
        state = mgr.resume({"done": [], "notes": []})
        if state["done"]:
            print(f"resuming after {state['done'][-1]!r}")
        ran = 0
        for step in STEPS:
            if step in state["done"]:
                continue  # finished before the interruption: never run twice
            if args.stop_after is not None and ran == args.stop_after:
                print(f"stopping before {step!r}")
                return
            do_step(step, state)
            state["done"].append(step)
            cp = mgr.create(step, state)  # committed when this returns
            print(f"{step}: saved as {cp.id}")
            ran += 1
        print(f"finished: {len(mgr)} checkpoints in session {args.session!r}")


if __name__ == "__main__":
    main()
