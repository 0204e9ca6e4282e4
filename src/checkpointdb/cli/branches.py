"""``fork``, ``delete``, ``pop`` and ``diff``: branch a session, remove from it, compare."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import click

from ..errors import NotFoundError
from . import output
from .checkpoints import checkpoint_json
from .common import (
    Env,
    checked_checkpoint_id,
    checkpoint_argument,
    confirm,
    examples,
    identifier,
    json_option,
    missing_checkpoint,
    require_checkpoint,
    require_session,
    session_argument,
    yes_option,
)

if TYPE_CHECKING:
    from ..checkpoint import Checkpoint

# How a patch operation is drawn: its sign and colour.
_DIFF_STYLE = {
    "add": ("+", "green"),
    "remove": ("-", "red"),
    "replace": ("~", "yellow"),
    "move": (">", "cyan"),
}
# Values in a readable diff longer than this are cut (--json gives them whole).
DIFF_VALUE_WIDTH = 120


# -- fork ----------------------------------------------------------------------------------


@click.command("fork")
@checkpoint_argument
@click.argument("new_session_id", metavar="NEW_SESSION", callback=identifier)
@click.option(
    "--history",
    type=click.Choice(["latest", "lineage", "all"]),
    default="lineage",
    show_default=True,
    help="What to copy: the checkpoint alone (latest), it and its live ancestors "
    "(lineage), or every live checkpoint up to it (all).",
)
@json_option
@click.pass_obj
@examples(
    "checkpointdb fork demo:3 demo-retry",
    "checkpointdb fork agent-7:120 agent-7-b --history all --json",
)
def fork_command(
    env: Env, checkpoint_id: str, new_session_id: str, history: str, as_json: bool
) -> None:
    """Start session NEW_SESSION from checkpoint ID, copied inside the database.

    The copies are numbered from 1 and keep their names, times, data, pins
    and parent links; the new session takes the old one's metadata and
    retention policy and records ID as where it was forked from (`sessions`
    shows it). NEW_SESSION must never have had checkpoints. An unknown ID
    exits 1; nothing is written on an error.
    """
    store = env.open_store(write=True)
    source = require_checkpoint(store, checkpoint_id)
    store.manager(source.session_id).fork(checkpoint_id, new_session_id, history=history)
    info = require_session(store, new_session_id)
    if as_json:
        output.emit_json(
            {
                "session_id": new_session_id,
                "forked_from": checkpoint_id,
                "history": history,
                "checkpoint_count": info.checkpoint_count,
                "last_seq": info.last_seq,
            }
        )
        return
    output.line(
        f"forked {checkpoint_id} into session {new_session_id!r}: "
        f"{output.count(info.checkpoint_count, 'checkpoint')} (history {history}), "
        f"the newest is {new_session_id}:{info.last_seq}"
    )


# -- delete and pop ------------------------------------------------------------------------


@click.command("delete")
@checkpoint_argument
@yes_option
@json_option
@click.pass_obj
@examples(
    "checkpointdb delete demo:4 --yes",
    "checkpointdb --db agent.db delete agent-7:120",
)
def delete_command(env: Env, checkpoint_id: str, yes: bool, as_json: bool) -> None:
    """Delete one checkpoint, pinned or not; its id is never given out again.

    Checkpoints created from it keep naming it as their parent, and a
    lineage stops there. Asks first on a terminal; without one, --yes is
    required. An unknown ID exits 1.
    """
    store = env.open_store(write=True)
    checkpoint = require_checkpoint(store, checkpoint_id)
    confirm(f"delete checkpoint {checkpoint_id} ({checkpoint.name!r})", yes)
    if not store.manager(checkpoint.session_id).delete(checkpoint_id):
        raise missing_checkpoint(store, checkpoint_id)  # deleted since it was read
    if as_json:
        output.emit_json({"id": checkpoint_id, "name": checkpoint.name, "deleted": True})
        return
    output.line(f"deleted checkpoint {checkpoint_id} ({checkpoint.name!r})")


@click.command("pop")
@session_argument
@yes_option
@json_option
@click.pass_obj
@examples(
    "checkpointdb pop demo --yes",
    "checkpointdb pop agent-7 --json --yes | jq .data",
)
def pop_command(env: Env, session_id: str, yes: bool, as_json: bool) -> None:
    """Delete a session's newest checkpoint and print it (--json: as `show --json`).

    The checkpoint removed is the one the question names, even if another
    process adds one meanwhile. Its id is never given out again. Asks first
    on a terminal; without one, --yes is required. An unknown or empty
    session exits 1.
    """
    store = env.open_store(write=True)
    require_session(store, session_id)
    mgr = store.manager(session_id)
    newest = mgr.get_latest()
    if newest is None:
        raise NotFoundError(f"session {session_id!r} has no checkpoint to pop")
    confirm(
        f"delete {newest.id} ({newest.name!r}, the newest of session {session_id!r})",
        yes,
    )
    if not mgr.delete(newest.id):
        raise missing_checkpoint(store, newest.id)  # deleted since it was read
    if as_json:
        output.emit_json(checkpoint_json(newest))
        return
    after = mgr.get_latest()
    now = f"the newest is now {after.id}" if after is not None else "the session is empty"
    output.line(f"popped {newest.id} ({newest.name!r}); {now}")


# -- diff ----------------------------------------------------------------------------------


def _value_text(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= DIFF_VALUE_WIDTH else text[: DIFF_VALUE_WIDTH - 1] + "…"


def diff_lines(before: Any, patch: list[dict[str, Any]]) -> Iterator[tuple[str, str]]:
    """``(text, colour)`` per operation of ``patch`` applied to ``before``, for people.

    The old value of a removed or replaced member is read from the document
    as the operations before it left it, so each line shows what it changed.
    """
    import jsonpatch

    document = copy.deepcopy(before)
    for operation in patch:
        op, path = operation["op"], operation["path"]
        sign, colour = _DIFF_STYLE.get(op, ("?", "white"))
        shown_path = path or "(the whole document)"
        if op == "add":
            text = f"{shown_path}: {_value_text(operation['value'])}"
        elif op == "remove":
            text = f"{shown_path}: {_value_text(jsonpatch.JsonPointer(path).resolve(document))}"
        elif op == "replace":
            old = _value_text(jsonpatch.JsonPointer(path).resolve(document))
            text = f"{shown_path}: {old} -> {_value_text(operation['value'])}"
        elif op == "move":
            text = f"{shown_path}: moved from {operation['from']}"
        else:  # "copy" and "test" never come out of a diff; shown, not hidden, if they did
            text = f"{shown_path}: {op} {json.dumps(operation, ensure_ascii=False)}"
        yield f"{sign} {text}", colour
        document = jsonpatch.apply_patch(document, [operation])


def _heading(sign: str, checkpoint: Checkpoint) -> str:
    return f"{sign} {checkpoint.id}  {checkpoint.name}  {output.format_time(checkpoint.timestamp)}"


@click.command("diff")
@click.argument("a_id", metavar="A", callback=checked_checkpoint_id)
@click.argument("b_id", metavar="B", callback=checked_checkpoint_id)
@json_option
@click.pass_obj
@examples(
    "checkpointdb diff demo:3 demo:5",
    "checkpointdb diff demo:5 demo-retry:2 --json",
)
def diff_command(env: Env, a_id: str, b_id: str, as_json: bool) -> None:
    """Show how checkpoint A's data became checkpoint B's, one change a line.

    + added, - removed, ~ replaced (old -> new), > moved; paths are JSON
    Pointers (/plan/steps/0). A and B may be in different sessions (a fork
    and its origin). Coloured on a terminal unless $NO_COLOR is set. --json
    prints the RFC 6902 JSON Patch that turns A's data into B's. An
    unknown ID exits 1.
    """
    from ..manager import json_patch

    store = env.open_store()
    a, b = require_checkpoint(store, a_id), require_checkpoint(store, b_id)
    patch = json_patch(a.data, b.data)
    if as_json:
        output.emit_json(patch)
        return
    colour = output.colour_wanted()
    output.line(_heading("---", a))
    output.line(_heading("+++", b))
    if not patch:
        output.line("(the same data)")
    for text, fg in diff_lines(a.data, patch):
        output.line(click.style(text, fg=fg) if colour else text)


COMMANDS = (fork_command, delete_command, pop_command, diff_command)
