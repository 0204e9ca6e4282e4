"""``demo``: a simulated agent that crashes on purpose and resumes from its checkpoints."""

from __future__ import annotations

import shlex
import textwrap
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .. import demo
from . import output
from .common import Env, examples, identifier, runnable_command

if TYPE_CHECKING:
    from ..store import CheckpointStore


def _where(store: CheckpointStore) -> str:
    """The database as the user named it: a path relative to here if it is below here."""
    if store.dialect != "sqlite":
        return store.where
    path = Path(str(store.url.database))
    with suppress(ValueError):
        path = path.relative_to(Path.cwd())
    return str(path)


@click.command("demo")
@click.option(
    "--db", "db_option", metavar="PATH|URL", help="The database (overrides the global --db)."
)
@click.option(
    "--crash-at",
    type=click.IntRange(1, len(demo.STEPS)),
    metavar="N",
    help=f"Kill this process (SIGKILL) in the middle of step N (1-{len(demo.STEPS)}).",
)
@click.option(
    "--session",
    "session_id",
    default=demo.DEMO_SESSION,
    show_default=True,
    callback=identifier,
    help="The agent's session id.",
)
@click.option("--restart", is_flag=True, help="Delete the session first and start from step 1.")
@click.option(
    "--pace",
    type=click.FloatRange(min=0),
    default=demo.DEFAULT_PACE,
    show_default=True,
    metavar="SECONDS",
    help="How long each step takes.",
)
@click.pass_obj
@examples(
    "checkpointdb demo --crash-at 4    # killed during step 4",
    "checkpointdb demo                 # resumes at step 4 and finishes",
)
def demo_command(
    env: Env,
    db_option: str | None,
    crash_at: int | None,
    session_id: str,
    restart: bool,
    pace: float,
) -> None:
    """Watch a simulated agent crash and resume from its checkpoints.

    The agent writes a short briefing in 7 steps (plan, a search, three page
    fetches, an outline, the text), saving its whole state as a checkpoint
    after each step, in ./checkpoints.db unless --db (or $CHECKPOINTDB_URL)
    says otherwise. No network, no configuration; a run takes a few seconds.

    --crash-at N kills the process in the middle of step N. Running the demo
    again resumes from the latest checkpoint, skips the steps already done,
    finishes, and shows the session's checkpoints with the SQL to see them in
    sqlite3. A finished session is not redone: the demo says it is complete
    and shows its checkpoints again; --restart starts it over, --session NAME
    runs another one.
    """
    if db_option is not None:
        env = Env(db_option)
    store = env.open_store(create=True)
    prefix = env.command()
    command = f"{runnable_command()} demo{env.db_flag()}"
    if session_id != demo.DEMO_SESSION:
        command += f" --session {shlex.quote(session_id)}"
    mgr = demo.run(
        store,
        session_id=session_id,
        crash_at=crash_at,
        restart=restart,
        pace=pace,
        command=command,
        where=_where(store),
    )
    checkpoints = mgr.get_all()
    headers, rows = demo.table(checkpoints, store.dialect)
    output.line(f'\nThe checkpoints of session "{session_id}", oldest first:\n')
    output.print_table(headers, rows, right=(0, 3, 4), indent="  ")
    if store.dialect == "sqlite":
        output.line(
            f"\nThe same rows with SQL: run `sqlite3 {shlex.quote(_where(store))}` and paste\n"
        )
    else:
        output.line(f"\nThe same rows with SQL: connect with `psql` to {store.where} and paste\n")
    output.line(textwrap.indent(demo.query(session_id, store.dialect), "  "))
    newest = checkpoints[-1].id if checkpoints else f"{session_id}:1"
    output.line(
        f"\nMore: `{prefix} sessions`, `{prefix} show {newest}`, `{prefix} stats {session_id}`"
    )


COMMANDS = (demo_command,)
