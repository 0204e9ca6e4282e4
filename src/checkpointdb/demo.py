"""The resumable-agent demo: a simulated agent that checkpoints after every step.

The agent writes a short briefing in seven steps (plan, one search, three
page fetches, an outline, the text). Its whole state is a JSON dict; after
each step it saves that state as a checkpoint named after the step. On start
it loads the session's latest checkpoint and skips every step the state
records as done, so a run killed in the middle of a step (``--crash-at``)
loses only that step, and the next run finishes the task with every step
done exactly once.

The tools are canned (no network) and each step pauses ``pace`` seconds so
a person can watch it work.
"""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn

import click

from .checkpoint import Checkpoint
from .errors import CheckpointDBError

if TYPE_CHECKING:  # the CLI reads STEPS for its help without importing SQLAlchemy
    from .manager import CheckpointManager
    from .store import CheckpointStore

DEMO_SESSION = "demo"
# Long enough to watch each step happen, short enough that a run takes ~3 s.
DEFAULT_PACE = 0.4
# Marks a state as the demo's (and its layout's version).
STATE_FORMAT = 1
# Narration is wrapped to fit a default terminal.
_WIDTH = 78

TASK = "Write a short briefing: why should an AI agent checkpoint its state?"

_SOURCES: tuple[dict[str, str], ...] = (
    {
        "title": "Checkpointing long-running jobs",
        "url": "https://example.org/checkpointing",
        "text": "A job that saves its progress after each unit of work loses at most "
        "one unit when it crashes.",
    },
    {
        "title": "Resuming without doing work twice",
        "url": "https://example.org/resuming",
        "text": "Resuming is safe when every step is either finished and recorded, "
        "or not recorded and done again from the start.",
    },
    {
        "title": "State you can query",
        "url": "https://example.org/queryable-state",
        "text": "State kept in plain SQL tables can be inspected and repaired with ordinary tools.",
    },
)

State = dict[str, Any]


@dataclass(frozen=True)
class Step:
    """One step of the agent: its checkpoint name, what a person reads, the work."""

    name: str
    title: str
    work: Callable[[State], str]


def _plan(state: State) -> str:
    state["plan"] = ["search for sources", "read each source", "outline", "write the briefing"]
    return f"{len(state['plan'])}-part plan"


def _search(state: State) -> str:
    # The canned "search tool": titles and addresses, no network.
    state["sources"] = [{"title": s["title"], "url": s["url"]} for s in _SOURCES]
    return f"{len(state['sources'])} sources"


def _reader(index: int) -> Callable[[State], str]:
    def read(state: State) -> str:
        # The canned "fetch tool": the page's key sentence becomes a note.
        source = _SOURCES[index]
        state["notes"].append({"source": source["url"], "note": source["text"]})
        return f"note {index + 1} of {len(_SOURCES)}"

    return read


def _outline(state: State) -> str:
    state["outline"] = ["the risk: crashes lose work", "the cure: checkpoints", "a bonus: SQL"]
    return f"{len(state['outline'])} points"


def _write(state: State) -> str:
    notes = " ".join(entry["note"] for entry in state["notes"])
    state["report"] = f"Why checkpoint an agent? {notes}"
    return f"{len(state['report'].split())} words"


STEPS: tuple[Step, ...] = (
    Step("plan", "plan the work", _plan),
    Step("search", 'tool: search("agent checkpointing")', _search),
    *(
        Step(f"read_source_{n}", f"tool: fetch(source {n} of {len(_SOURCES)})", _reader(n - 1))
        for n in range(1, len(_SOURCES) + 1)
    ),
    Step("outline", "outline the briefing", _outline),
    Step("write_report", "write the briefing", _write),
)


def new_state() -> State:
    """The agent's state before its first step."""
    return {"demo": STATE_FORMAT, "task": TASK, "run": 0, "done": [], "notes": []}


def is_complete(state: State) -> bool:
    """True once every step is done."""
    return len(state["done"]) == len(STEPS)


def _load_state(checkpoint: Checkpoint) -> State:
    state = checkpoint.data
    if state.get("demo") != STATE_FORMAT or not isinstance(state.get("done"), list):
        raise CheckpointDBError(
            f"session {checkpoint.session_id!r} holds checkpoints that are not the demo's "
            f"(latest: {checkpoint.id}); run the demo with another --session"
        )
    return state


def _ranges(numbers: list[int]) -> str:
    """``[1, 2, 3, 5]`` as ``"1-3, 5"``."""
    parts: list[str] = []
    start = previous = numbers[0]
    for number in [*numbers[1:], None]:
        if number is not None and number == previous + 1:
            previous = number
            continue
        parts.append(str(start) if start == previous else f"{start}-{previous}")
        if number is not None:
            start = previous = number
    return ", ".join(parts)


def who_did_what(state: State) -> str:
    """Which run did which steps: ``"steps 1-3 in run 1, steps 4-7 in run 2"``."""
    by_run: dict[int, list[int]] = {}
    for number, entry in enumerate(state["done"], 1):
        by_run.setdefault(entry["run"], []).append(number)
    return ", ".join(
        f"step{'s' if len(numbers) > 1 else ''} {_ranges(numbers)} in run {run}"
        for run, numbers in by_run.items()
    )


def _ago(moment: datetime) -> str:
    seconds = max(0, int((datetime.now(UTC) - moment).total_seconds()))
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h ago"


def _hard_exit() -> NoReturn:
    """Die at once, like a machine losing power or the OOM killer: no clean-up runs."""
    sys.stdout.flush()
    sys.stderr.flush()
    if hasattr(signal, "SIGKILL"):
        os.kill(os.getpid(), signal.SIGKILL)
    os._exit(137)  # where there is no SIGKILL (Windows)


def run(
    store: CheckpointStore,
    *,
    session_id: str = DEMO_SESSION,
    crash_at: int | None = None,
    restart: bool = False,
    pace: float = DEFAULT_PACE,
    command: str = "checkpointdb demo",
    where: str | None = None,
) -> CheckpointManager:
    """Run (or resume) the demo agent in ``session_id``, narrating on stdout.

    Args:
        store: where the checkpoints go.
        session_id: the agent's session.
        crash_at: kill this process (SIGKILL) in the middle of this step (1-based).
        restart: delete the session first and start from step 1.
        pace: seconds each step takes.
        command: how the user runs this demo again (quoted in the narration).
        where: the database as the user knows it (default: the store's path or URL).

    Returns:
        The session's manager, for showing its checkpoints.

    Raises:
        CheckpointDBError: the session holds checkpoints that are not the demo's.
    """
    echo = click.echo
    if restart and store.session(session_id) is not None:
        removed = store.delete_session(session_id)
        deleted = f"{removed} checkpoint{'' if removed == 1 else 's'}"
        echo(f'Deleted session "{session_id}" ({deleted}) to start over.\n')
    mgr = store.manager(session_id, max_checkpoints=None, compress_after=None)
    latest = mgr.get_latest()
    state = new_state() if latest is None else _load_state(latest)
    echo(
        textwrap.fill(
            f"A simulated AI agent writes a short briefing in {len(STEPS)} steps (plan, search, "
            f"read {len(_SOURCES)} sources, outline, write). After every step it saves its whole "
            f'state as a checkpoint in {where or store.where} (session "{session_id}"), so a '
            "crash loses at most the step in progress.",
            width=_WIDTH,
        )
        + "\n"
    )
    if is_complete(state):
        echo(
            f'Session "{session_id}" is already complete: all {len(STEPS)} steps were done '
            f"({who_did_what(state)}).\nNothing to do. Start it over with "
            f"`{command} --restart`, or run another with `{command} --session {session_id}-2`."
        )
        return mgr
    run_number = state["run"] + 1
    state["run"] = run_number
    if latest is None:
        echo(f'Session "{session_id}" is new: run {run_number} starts at step 1.')
    else:
        done_count = len(state["done"])
        steps = f"{done_count} step{'' if done_count == 1 else 's'}"
        skips = (
            f"and skips the {steps} it records as done"
            if done_count
            else "and starts at step 1: it records no step as done"
        )
        echo(
            f'Session "{session_id}" was interrupted. Run {run_number} resumes from its latest '
            f'checkpoint,\n{latest.id} "{latest.name}" (saved {_ago(latest.timestamp)}), '
            f"{skips}."
        )
    _save(mgr, "started" if latest is None else "resumed", state, step=len(state["done"]))
    done = {entry["step"]: entry["run"] for entry in state["done"]}
    width = max(len(step.title) for step in STEPS)
    for number, step in enumerate(STEPS, 1):
        label = f"  step {number}/{len(STEPS)}  {step.title:<{width}}  "
        if step.name in done:
            echo(f"{label}already done in run {done[step.name]}: skipped")
            if crash_at == number:
                echo(
                    f"  (--crash-at {number}: step {number} is already done; nothing to interrupt)"
                )
            continue
        echo(label, nl=False)
        sys.stdout.flush()
        if crash_at == number:
            time.sleep(pace / 2)
            echo("...")
            echo(
                f"\nCRASH (--crash-at {number}): killing this process with SIGKILL in the middle "
                f"of step {number}.\nNo clean-up code runs. Every step before it is safe in the "
                f"database; step {number} was never saved.\nRun `{command}` again to resume."
            )
            _hard_exit()
        result = step.work(state)
        time.sleep(pace)
        state["done"].append({"step": step.name, "run": run_number})
        checkpoint = _save(mgr, step.name, state, step=number)
        echo(f"done -> checkpoint {checkpoint.id}  ({result})")
    echo(
        f"\nFinished: all {len(STEPS)} steps are done, each exactly once "
        f"({who_did_what(state)}).\n\nThe briefing:\n"
        + textwrap.fill(state["report"], width=_WIDTH, initial_indent="  ", subsequent_indent="  ")
    )
    return mgr


def _save(mgr: CheckpointManager, name: str, state: State, *, step: int) -> Checkpoint:
    return mgr.create(name, state, {"run": state["run"], "step": step, "pid": os.getpid()})


def table(checkpoints: list[Checkpoint], dialect: str) -> tuple[list[str], list[list[str]]]:
    """The session's checkpoints as the rows :func:`query` returns (headers, cells)."""
    headers = ["seq", "name", "created_at", "run", "steps_done"]
    rows = [
        [
            str(cp.seq),
            cp.name,
            _stored_time(cp.timestamp, dialect),
            str(cp.metadata.get("run", "")),
            str(len(cp.data.get("done", []))),
        ]
        for cp in checkpoints
    ]
    return headers, rows


def _stored_time(moment: datetime, dialect: str) -> str:
    # As the database shows it: SQLite keeps fixed-width UTC text.
    if dialect == "sqlite":
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.astimezone(UTC).isoformat()


def query(session_id: str, dialect: str) -> str:
    """The SQL a person pastes into ``sqlite3`` (or ``psql``) to see :func:`table`'s rows."""
    literal = "'" + session_id.replace("'", "''") + "'"
    if dialect == "sqlite":
        run, steps = "json_extract(metadata, '$.run')", "json_array_length(data, '$.done')"
    else:
        run, steps = "(metadata->>'run')::int", "jsonb_array_length(data->'done')"
    return (
        f"SELECT seq, name, created_at,\n"
        f"       {run} AS run,\n"
        f"       {steps} AS steps_done\n"
        f"FROM checkpoints WHERE session_id = {literal} ORDER BY seq;"
    )
