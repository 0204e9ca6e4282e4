"""``sessions``, ``delete-session`` and ``clear``: the sessions of a store."""

from __future__ import annotations

import click

from . import output
from .common import (
    Env,
    confirm,
    examples,
    json_option,
    require_session,
    session_argument,
    yes_option,
)


@click.command("sessions")
@json_option
@click.pass_obj
@examples(
    "checkpointdb sessions",
    "checkpointdb --db agent.db sessions --json",
)
def sessions_command(env: Env, as_json: bool) -> None:
    """List every session: live checkpoints, last seq, payload size, first and last checkpoint.

    FIRST and LAST are the times of the session's oldest and newest live
    checkpoint (as session_view shows them), empty when it has none. SIZE is
    the UTF-8 size of the live checkpoints' data and metadata JSON (--json:
    payload_bytes, exact; created_at and updated_at are the session row's).
    FORKED FROM (the checkpoint a `fork` started the session from) and
    METADATA (the session's own) appear when a session has them; --json
    always gives them, and the stored retention policy.
    """
    store = env.open_store()
    sessions = store.sessions()
    spans = {span.session_id: span for span in store.checkpoint_spans()}
    if as_json:
        output.emit_json(
            [
                {
                    "session_id": info.id,
                    "checkpoint_count": info.checkpoint_count,
                    "last_seq": info.last_seq,
                    "payload_bytes": info.payload_bytes,
                    "first_checkpoint_at": span.first if span else None,
                    "last_checkpoint_at": span.last if span else None,
                    "created_at": info.created_at,
                    "updated_at": info.updated_at,
                    "forked_from": info.forked_from,
                    "metadata": info.metadata,
                    "policy": {
                        "max_checkpoints": info.policy.max_checkpoints,
                        "compress_after": info.policy.compress_after,
                        "keep_recent": info.policy.keep_recent,
                    },
                }
                for info in sessions
                for span in [spans.get(info.id)]
            ]
        )
        return
    if not sessions:
        output.line(f"no sessions in {store.where}")
        return
    # Columns most stores leave empty are shown only when a session fills them.
    forked = any(info.forked_from for info in sessions)
    described = any(info.metadata for info in sessions)
    headers = ["SESSION", "CHECKPOINTS", "LAST SEQ", "SIZE", "FIRST (UTC)", "LAST (UTC)"]
    headers += ["FORKED FROM"] * forked + ["METADATA"] * described
    output.print_table(
        headers,
        (
            [
                info.id,
                str(info.checkpoint_count),
                str(info.last_seq),
                output.size(info.payload_bytes),
                output.format_time(span.first) if span else "-",
                output.format_time(span.last) if span else "-",
                *[info.forked_from or "-"] * forked,
                *[output.cell(info.metadata) if info.metadata else "-"] * described,
            ]
            for info in sessions
            for span in [spans.get(info.id)]
        ),
        right=(1, 2, 3),
        give_way=(len(headers) - 1, 0) if described else (0,),
    )


@click.command("delete-session")
@session_argument
@yes_option
@json_option
@click.pass_obj
@examples(
    "checkpointdb delete-session agent-7 --yes",
    "checkpointdb --db agent.db delete-session demo",
)
def delete_session_command(env: Env, session_id: str, yes: bool, as_json: bool) -> None:
    """Delete a session: every checkpoint, pinned ones too, and its id counter.

    A later checkpoint in a session of the same id starts again at 1 (clear
    keeps the counter). Asks first on a terminal; without one, --yes is
    required. An unknown session exits 1.
    """
    store = env.open_store(write=True)
    info = require_session(store, session_id)
    confirm(
        f"delete session {session_id!r} and its "
        f"{output.count(info.checkpoint_count, 'checkpoint')}",
        yes,
    )
    removed = store.delete_session(session_id)
    if as_json:
        output.emit_json({"session_id": session_id, "deleted": True, "rows_removed": removed})
        return
    output.line(f"deleted session {session_id!r} and its {output.count(removed, 'checkpoint')}")


@click.command("clear")
@session_argument
@yes_option
@json_option
@click.pass_obj
@examples(
    "checkpointdb clear agent-7 --yes",
    "checkpointdb --db agent.db clear demo",
)
def clear_command(env: Env, session_id: str, yes: bool, as_json: bool) -> None:
    """Delete every checkpoint of a session, pinned ones too; the session stays.

    Ids continue where they were: the next checkpoint does not reuse an id
    (delete-session forgets the session entirely). Asks first on a terminal;
    without one, --yes is required. An unknown session exits 1.
    """
    store = env.open_store(write=True)
    info = require_session(store, session_id)
    confirm(
        f"delete the {output.count(info.checkpoint_count, 'checkpoint')} of session {session_id!r}",
        yes,
    )
    removed = store.manager(session_id).clear()
    if as_json:
        output.emit_json(
            {"session_id": session_id, "rows_removed": removed, "last_seq": info.last_seq}
        )
        return
    output.line(
        f"removed {output.count(removed, 'checkpoint')} from session {session_id!r}; "
        f"the next one gets id {session_id}:{info.last_seq + 1}"
    )


COMMANDS = (sessions_command, delete_session_command, clear_command)
