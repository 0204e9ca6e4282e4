"""``list`` (or ``--tree``), ``show``, ``latest``, ``pin``, ``unpin``: a session's checkpoints."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from ..errors import NotFoundError
from . import output
from .common import (
    Env,
    checkpoint_argument,
    examples,
    identifier,
    instant,
    json_option,
    missing_checkpoint,
    require_checkpoint,
    require_session,
    session_argument,
)

if TYPE_CHECKING:
    from ..checkpoint import Checkpoint
    from ..store import CheckpointStore

# Stored times have microsecond precision: "after t minus 1 µs" is "at or after t".
_RESOLUTION = timedelta(microseconds=1)


def checkpoint_json(checkpoint: Checkpoint) -> dict[str, Any]:
    """A checkpoint for scripts: the export format's fields, "pinned" always present.

    ``import`` reads a list of these back (it takes "pinned" as true or false).
    """
    return {**checkpoint.to_dict(), "timestamp": checkpoint.timestamp, "pinned": checkpoint.pinned}


def _just_before(moment: datetime) -> datetime:
    """The instant before ``moment`` at the store's precision, for find()'s strict ``since``."""
    try:
        return moment - _RESOLUTION
    except OverflowError:  # the year 1: nothing can be stored before it
        return moment


# -- the tree ------------------------------------------------------------------------------


def tree_lines(checkpoints: Sequence[Checkpoint]) -> Iterator[str]:
    """Lines drawing checkpoints by their parent links, oldest first.

    A chain of single children stays in one column; a checkpoint with
    several children opens one branch per child, drawn as ``├─`` and
    ``└─``. A checkpoint whose parent is not among ``checkpoints`` (deleted,
    or left out by a filter) starts a tree of its own and says whose child it is.
    """
    ordered = sorted(checkpoints, key=lambda cp: cp.seq)
    shown = {cp.id for cp in ordered}
    children: dict[str, list[Checkpoint]] = {}
    roots: list[Checkpoint] = []
    for checkpoint in ordered:
        if checkpoint.parent_id is not None and checkpoint.parent_id in shown:
            children.setdefault(checkpoint.parent_id, []).append(checkpoint)
        else:
            roots.append(checkpoint)
    root_ids = {root.id for root in roots}
    # (checkpoint, prefix of its own line, prefix of the lines below it); a
    # stack rather than recursion, so a deep tree cannot exhaust Python's stack.
    stack = [(root, "", "") for root in reversed(roots)]
    while stack:
        checkpoint, first, rest = stack.pop()
        yield first + _tree_label(checkpoint, checkpoint.id in root_ids)
        kids = children.get(checkpoint.id, [])
        if len(kids) == 1:
            stack.append((kids[0], rest, rest))
            continue
        for index in reversed(range(len(kids))):
            last = index == len(kids) - 1
            stack.append(
                (kids[index], rest + ("└─ " if last else "├─ "), rest + ("   " if last else "│  "))
            )


def _tree_label(checkpoint: Checkpoint, root: bool) -> str:
    parts = [checkpoint.id, checkpoint.name, output.format_time(checkpoint.timestamp)]
    if checkpoint.pinned:
        parts.append("pinned")
    if root and checkpoint.parent_id is not None:
        parts.append(f"(child of {checkpoint.parent_id})")
    return "  ".join(parts)


@click.command("list")
@session_argument
@click.option("--name", "-n", callback=identifier, help="Only checkpoints with this name.")
@click.option(
    "--since",
    metavar="TIME",
    callback=instant,
    help="Created at or after TIME (ISO 8601 or 10m, 2h, 7d).",
)
@click.option("--until", metavar="TIME", callback=instant, help="Created at or before TIME.")
@click.option(
    "--limit",
    "-l",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="At most this many (0: all).",
)
@click.option(
    "--tree",
    is_flag=True,
    help="Draw the checkpoints as a tree by their parent links, oldest first.",
)
@json_option
@click.pass_obj
@examples(
    "checkpointdb list demo",
    "checkpointdb list demo --tree --limit 0",
    "checkpointdb list demo --name plan --since 2h --limit 5",
    "checkpointdb list agent-7 --since 2026-11-26T09:00:00+01:00 --json",
)
def list_command(
    env: Env,
    session_id: str,
    name: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    tree: bool,
    as_json: bool,
) -> None:
    """List a session's checkpoints, newest first; PINNED marks those retention keeps.

    Times are ISO 8601 with an offset (2026-11-26T18:00:00Z, ...+02:00) or
    relative to now (30s, 10m, 2h, 7d, 1w). --json prints a list of {id,
    name, timestamp, data, metadata, parent_id, pinned}, which `import`
    reads back. --tree draws the same checkpoints by their parent links,
    oldest first: a straight chain stays in one column and each branch
    opens with ├─ or └─ (a checkpoint whose parent is deleted or not
    listed starts a tree of its own, "child of" that parent).
    """
    if since is not None and until is not None and since > until:
        raise click.UsageError(f"--since {since.isoformat()} is after --until {until.isoformat()}")
    store = env.open_store()
    info = require_session(store, session_id)
    wanted = None if limit == 0 else limit + 1  # one more tells whether there are more
    after = None if since is None else _just_before(since)
    checkpoints = list(
        store.manager(session_id).find(name=name, since=after, until=until, limit=wanted)
    )
    more = wanted is not None and len(checkpoints) == wanted
    checkpoints = checkpoints[:limit] if more else checkpoints
    if as_json:
        output.emit_json([checkpoint_json(cp) for cp in checkpoints])
    elif not checkpoints:
        output.line(f"no matching checkpoints in session {session_id!r}")
    elif tree:
        for text in tree_lines(checkpoints):
            output.line(text)
    else:
        output.print_table(
            ["ID", "NAME", "CREATED (UTC)", "PINNED", "DATA"],
            (
                [
                    cp.id,
                    cp.name,
                    output.format_time(cp.timestamp),
                    output.yes_no(cp.pinned),
                    output.cell(cp.data),
                ]
                for cp in checkpoints
            ),
            give_way=(4, 1, 0),
        )
    if more:
        filtered = name is not None or since is not None or until is not None
        total = "" if filtered else f" {info.checkpoint_count}"
        output.note(f"(showing the {limit} newest; --limit 0 lists all{total})")


def _print_checkpoint(store: CheckpointStore, checkpoint: Checkpoint, as_json: bool) -> None:
    if as_json:
        output.emit_json(checkpoint_json(checkpoint))
        return
    parent = checkpoint.parent_id or "- (the first of its lineage)"
    if (
        checkpoint.parent_id is not None
        and store.manager(checkpoint.session_id).get(checkpoint.parent_id) is None
    ):
        parent += " (deleted)"
    output.line(f"id        {checkpoint.id}")
    output.line(f"name      {checkpoint.name}")
    output.line(f"created   {output.format_time(checkpoint.timestamp)}")
    output.line(f"pinned    {output.yes_no(checkpoint.pinned)}")
    output.line(f"parent    {parent}")
    output.line(f"metadata  {json.dumps(checkpoint.metadata, ensure_ascii=False)}")
    output.line("data")
    output.line(textwrap.indent(json.dumps(checkpoint.data, indent=2, ensure_ascii=False), "  "))


@click.command("show")
@checkpoint_argument
@json_option
@click.pass_obj
@examples(
    "checkpointdb show demo:3",
    "checkpointdb show demo:3 --json | jq .data",
)
def show_command(env: Env, checkpoint_id: str, as_json: bool) -> None:
    """Show one checkpoint: name, time, pin, parent, metadata and data.

    ID is SESSION:SEQ, as `list` prints it. The parent is the checkpoint
    this one was created from ("(deleted)" if it is gone; `list --tree`
    draws them all).
    """
    store = env.open_store()
    _print_checkpoint(store, require_checkpoint(store, checkpoint_id), as_json)


@click.command("latest")
@session_argument
@click.option("--name", "-n", callback=identifier, help="The newest checkpoint with this name.")
@json_option
@click.pass_obj
@examples(
    "checkpointdb latest demo",
    "checkpointdb latest demo --name plan --json",
)
def latest_command(env: Env, session_id: str, name: str | None, as_json: bool) -> None:
    """Show a session's newest checkpoint (or the newest with --name).

    This is the state an agent resumes from.
    """
    store = env.open_store()
    require_session(store, session_id)
    checkpoint = store.manager(session_id).get_latest(name)
    if checkpoint is None:
        named = f" named {name!r}" if name else ""
        raise NotFoundError(f"session {session_id!r} has no checkpoint{named}")
    _print_checkpoint(store, checkpoint, as_json)


def _set_pinned(env: Env, checkpoint_id: str, pinned: bool, as_json: bool) -> None:
    store = env.open_store(write=True)
    before = require_checkpoint(store, checkpoint_id)
    mgr = store.manager(before.session_id)
    changed = mgr.pin(checkpoint_id) if pinned else mgr.unpin(checkpoint_id)
    if not changed:  # deleted between the read and the write
        raise missing_checkpoint(store, checkpoint_id)
    if as_json:
        output.emit_json(
            {"id": checkpoint_id, "pinned": pinned, "changed": before.pinned != pinned}
        )
    elif before.pinned == pinned:
        output.line(f"{checkpoint_id} was already {'pinned' if pinned else 'not pinned'}")
    elif pinned:
        output.line(f"pinned {checkpoint_id}: compaction, max_checkpoints and expire keep it")
    else:
        output.line(f"unpinned {checkpoint_id}: retention may remove it again")


@click.command("pin")
@checkpoint_argument
@json_option
@click.pass_obj
@examples(
    "checkpointdb pin demo:3",
    "checkpointdb pin agent-7:120 --json",
)
def pin_command(env: Env, checkpoint_id: str, as_json: bool) -> None:
    """Pin a checkpoint: compaction, the max_checkpoints cap and expire never remove it.

    Pinned checkpoints do not count toward the cap. Pinning a pinned
    checkpoint changes nothing. An unknown id exits 1.
    """
    _set_pinned(env, checkpoint_id, True, as_json)


@click.command("unpin")
@checkpoint_argument
@json_option
@click.pass_obj
@examples(
    "checkpointdb unpin demo:3",
)
def unpin_command(env: Env, checkpoint_id: str, as_json: bool) -> None:
    """Unpin a checkpoint, so retention may remove it again like any other.

    Unpinning a checkpoint that is not pinned changes nothing. An unknown id exits 1.
    """
    _set_pinned(env, checkpoint_id, False, as_json)


COMMANDS = (list_command, show_command, latest_command, pin_command, unpin_command)
