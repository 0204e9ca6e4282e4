"""``compact``, ``expire`` and ``vacuum``: remove old checkpoints and give the space back."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import click

from . import output
from .common import Env, age, examples, json_option, require_session, session_argument

# Why compaction keeps a checkpoint, as CompactionReport.kept names the reasons.
_KEEP_REASONS = {
    "first": "the first",
    "pinned": "pinned",
    "recent": "among the newest {keep_recent}",
    "too_recent": "younger than {older_than}",
    "newest_of_name": "the newest of their name",
}


def _shorten(ids: Sequence[str], keep: int = 6) -> str:
    if len(ids) <= keep:
        return ", ".join(ids)
    half = keep // 2
    return ", ".join([*ids[:half], "…", *ids[-half:]])


def _kept_text(kept: dict[str, int], keep_recent: int, older_than: str) -> str:
    """``1 the first, 3 the newest of their name, 5 among the newest 5``."""
    return ", ".join(
        f"{number} "
        + _KEEP_REASONS.get(reason, reason).format(keep_recent=keep_recent, older_than=older_than)
        for reason, number in kept.items()
    )


def _vacuum_hint(env: Env) -> str:
    return (
        "(the database reuses the freed space for new checkpoints; "
        f"`{env.command()} vacuum` gives it back to the file system)"
    )


@click.command("compact")
@session_argument
@click.option("--dry-run", is_flag=True, help="Only say what would be removed; change nothing.")
@click.option(
    "--keep-recent",
    type=click.IntRange(min=0),
    help="How many of the newest checkpoints to keep whatever their names "
    "(default: the keep_recent of store.manager()).",
)
@click.option(
    "--older-than",
    metavar="AGE",
    callback=age,
    help="Only remove checkpoints older than AGE (30s, 10m, 2h, 7d, 1w).",
)
@json_option
@click.pass_obj
@examples(
    "checkpointdb compact agent-7 --dry-run",
    "checkpointdb compact agent-7 --keep-recent 5 --older-than 7d",
)
def compact_command(
    env: Env,
    session_id: str,
    dry_run: bool,
    keep_recent: int | None,
    older_than: timedelta | None,
    as_json: bool,
) -> None:
    """Run the compaction policy on a session now, and say why the rest is kept.

    Keeps the first checkpoint, the newest --keep-recent, the newest of each
    name among the others, every pinned checkpoint and, with --older-than,
    every checkpoint younger than AGE; removes the rest in one transaction.
    Sizes are the removed checkpoints' data and metadata JSON (--json:
    bytes_removed, exact). --dry-run runs the same statements and rolls them
    back, so its report is exactly what a real run would do.
    """
    store = env.open_store(write=True)
    info = require_session(store, session_id)
    mgr = (
        store.manager(session_id)
        if keep_recent is None
        else store.manager(session_id, keep_recent=keep_recent)
    )
    keep = mgr.keep_recent
    if not dry_run and output.progress_wanted(info.checkpoint_count, output.PROGRESS_MIN_ROWS):
        output.note(f"Compacting {info.checkpoint_count} checkpoints (one transaction)…")
    report = mgr.compact(keep_recent=keep, older_than=older_than, dry_run=dry_run)
    if as_json:
        output.emit_json(
            {
                "session_id": session_id,
                "dry_run": report.dry_run,
                "keep_recent": keep,
                "older_than_seconds": None if older_than is None else older_than.total_seconds(),
                "rows_removed": report.rows_removed,
                "bytes_removed": report.bytes_removed,
                "removed": report.removed,
                "remaining": report.remaining,
                "kept": report.kept,
            }
        )
        return
    removed, size = report.rows_removed, output.size(report.bytes_removed)
    if dry_run:
        output.line(
            f"dry run: compacting session {session_id!r} would remove {removed} of "
            f"{output.count(removed + report.remaining, 'checkpoint')} ({size} of JSON) "
            f"and keep {report.remaining}"
        )
    else:
        output.line(
            f"removed {output.count(removed, 'checkpoint')} ({size} of JSON) from session "
            f"{session_id!r}; {report.remaining} remain"
        )
    if report.removed:
        output.line(f"{'would remove' if dry_run else 'removed'}: {_shorten(report.removed)}")
    older = "" if older_than is None else output.age_text(older_than)
    if report.kept:
        output.line(f"kept: {_kept_text(report.kept, keep, older)}")
    if report.removed and not dry_run:
        output.line(_vacuum_hint(env))


@click.command("expire")
@click.option(
    "--older-than",
    metavar="AGE",
    required=True,
    callback=age,
    help="Remove checkpoints older than AGE (30s, 10m, 2h, 7d, 1w).",
)
@click.option("--dry-run", is_flag=True, help="Only say what would be removed; change nothing.")
@json_option
@click.pass_obj
@examples(
    "checkpointdb expire --older-than 30d --dry-run",
    "checkpointdb expire --older-than 2w --json",
)
def expire_command(env: Env, older_than: timedelta, dry_run: bool, as_json: bool) -> None:
    """Remove checkpoints older than AGE from every session.

    Pinned checkpoints stay, and so does each session's newest checkpoint,
    so an idle agent can still resume. One transaction per session. The size
    is the removed checkpoints' data and metadata JSON (--json: bytes_removed,
    exact).
    """
    store = env.open_store(write=True)
    report = store.expire(older_than, dry_run=dry_run)
    if as_json:
        output.emit_json(
            {
                "dry_run": report.dry_run,
                "older_than_seconds": older_than.total_seconds(),
                "rows_removed": report.rows_removed,
                "bytes_removed": report.bytes_removed,
                "sessions": {
                    session_id: {
                        "rows_removed": len(ids),
                        "bytes_removed": report.bytes_by_session[session_id],
                        "removed": ids,
                    }
                    for session_id, ids in report.removed.items()
                },
            }
        )
        return
    older = output.age_text(older_than)
    if not report.removed:
        output.line(f"no checkpoint older than {older} to remove in {store.where}")
        return
    sessions = output.count(len(report.removed), "session")
    rows = (
        f"{output.count(report.rows_removed, 'checkpoint')} "
        f"({output.size(report.bytes_removed)} of JSON)"
    )
    if dry_run:
        output.line(f"dry run: expiring would remove {rows} older than {older} from {sessions}")
    else:
        output.line(f"removed {rows} older than {older} from {sessions}")
    output.print_table(
        ["SESSION", "REMOVED", "SIZE", "IDS"],
        (
            [
                session_id,
                str(len(ids)),
                output.size(report.bytes_by_session[session_id]),
                _shorten(ids, keep=4),
            ]
            for session_id, ids in report.removed.items()
        ),
        right=(1, 2),
        give_way=(3, 0),
    )
    if not dry_run:
        output.line(_vacuum_hint(env))


@click.command("vacuum")
@json_option
@click.pass_obj
@examples(
    "checkpointdb vacuum",
    "checkpointdb --db agent.db vacuum --json",
)
def vacuum_command(env: Env, as_json: bool) -> None:
    """Give the space of removed checkpoints back to the file system.

    On SQLite this rewrites the file (VACUUM): run it when agents are idle,
    it holds the write lock meanwhile and needs free disk space about the
    size of the file. On PostgreSQL it runs VACUUM ANALYZE on the store's
    tables. Prints the size before and after (SQLite: the database file;
    PostgreSQL: the tables with their indexes).
    """
    store = env.open_store(write=True)
    report = store.vacuum()
    freed = report.bytes_before - report.bytes_after
    if as_json:
        output.emit_json(
            {
                "database": store.where,
                "bytes_before": report.bytes_before,
                "bytes_after": report.bytes_after,
                "bytes_freed": freed,
            }
        )
        return
    output.line(
        f"vacuumed {store.where}: {output.size(report.bytes_before)} -> "
        f"{output.size(report.bytes_after)} "
        f"({output.size(max(freed, 0))} given back)"  # VACUUM's maps can grow PostgreSQL's
    )


COMMANDS = (compact_command, expire_command, vacuum_command)
