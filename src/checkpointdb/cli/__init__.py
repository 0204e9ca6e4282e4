"""The ``checkpointdb`` command: inspect, move and repair agent state from a terminal.

A thin layer over the public API: each command opens a
:class:`~checkpointdb.CheckpointStore`, calls one or two methods of it or of a
:class:`~checkpointdb.CheckpointManager`, and prints the result through
:mod:`checkpointdb.cli.output`, as a table for people or, with ``--json``, as
JSON for scripts. The only SQL of its own is the ``sql`` command's, run by
:mod:`checkpointdb.readonly`; the ``db`` commands drive :mod:`checkpointdb.migrate`.
One module per group of commands; none imports SQLAlchemy until a command
runs, so ``--help`` and ``--version`` start fast.

Exit status: 0 on success; 1 on an error (an unknown session, id or database
file, a refused query, a schema that is not at head for ``db check``); 2 on
bad usage (a missing or malformed argument); 130 on Ctrl-C; 141 when the
reader of stdout went away (``... | head -1``). Errors are one line on
stderr. The CLI never upgrades a schema on its own: ``db upgrade`` does.
"""

from __future__ import annotations

import click

from .. import __version__
from . import branches, checkpoints, db, demo, retention, sessions, sql, stats, transfer
from .common import Env, Group, examples


@click.group(
    name="checkpointdb",
    cls=Group,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--db",
    "target",
    metavar="PATH|URL",
    help="The database: an SQLite file path or a URL such as "
    "postgresql+psycopg://user@host/db. Default: $CHECKPOINTDB_URL, else ./checkpoints.db.",
)
@click.version_option(__version__, prog_name="checkpointdb")
@click.pass_context
@examples(
    "checkpointdb demo --crash-at 4; checkpointdb demo",
    "checkpointdb sessions",
    "checkpointdb --db postgresql+psycopg://agent@db.internal/agents sessions",
)
def cli(ctx: click.Context, target: str | None) -> None:
    """A durable SQL checkpoint store for AI agents: inspect, move and repair agent state.

    Start with the demo, which crashes an agent on purpose and resumes it.
    Every command that prints data takes --json. Times are ISO 8601 in UTC
    with microseconds (2026-11-26T18:30:00.123456Z). Exit status: 0 ok,
    1 error (unknown session, id or database), 2 bad usage, 130 Ctrl-C.
    """
    ctx.obj = Env(target)


for _module in (sessions, checkpoints, branches, transfer, retention, stats, sql, db, demo):
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def main() -> None:
    """Entry point of the ``checkpointdb`` console script (and ``python -m checkpointdb``)."""
    cli.main(prog_name="checkpointdb")


__all__ = ["cli", "main"]
