"""``db upgrade|current|history|check``: the schema's revisions; ``db create-reader``."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from . import output
from .common import CommandError, Env, Group, UsageLine, examples, json_option

if TYPE_CHECKING:
    from ..engine import Database
    from ..repository import Repository


@click.group("db", cls=Group)
@examples(
    "checkpointdb --db agent.db db check || checkpointdb --db agent.db db upgrade",
)
def db_group() -> None:
    """Manage the schema: upgrade, current, history, check; create-reader.

    The same as running alembic from a checkout, with the migrations packaged
    in checkpointdb itself, so it works from an installed wheel.
    """


def _schema_status(database: Database, repository: Repository) -> dict[str, Any]:
    from .. import migrate

    current = migrate.current_revision(database, repository)
    head = migrate.head_revision()
    return {
        "database": database.where,
        "current": current,
        "head": head,
        "at_head": current == head,
        "known": current is None or current in migrate.known_revisions(),
        "upgrade_command": migrate.upgrade_command(database),
    }


def _describe_status(status: dict[str, Any]) -> str:
    where, current, head = status["database"], status["current"], status["head"]
    upgrade = f"run `{status['upgrade_command']}`"
    if status["at_head"]:
        return f"{where} is at schema revision {current}, the newest this checkpointdb knows"
    if current is None:
        return f"no checkpointdb store at {where}; create one with: {status['upgrade_command']}"
    if not status["known"]:
        return (
            f"{where} is at schema revision {current}, which this checkpointdb does not know "
            f"(its newest is {head}): it was written by a newer checkpointdb; upgrade checkpointdb"
        )
    return f"{where} is at schema revision {current}; head is {head}: {upgrade}"


@db_group.command("upgrade")
@json_option
@click.pass_obj
@examples(
    "checkpointdb --db agent.db db upgrade",
)
def db_upgrade_command(env: Env, as_json: bool) -> None:
    """Upgrade the database's schema to the newest revision (creating it if empty).

    Safe to run while agents use the database and from many hosts at once:
    migrations run under a lock, each exactly once. A database written by a
    newer checkpointdb is refused and left unchanged.
    """
    from .. import migrate

    database, repository = env.open_database(create=True)
    before = migrate.current_revision(database, repository)
    migrate.upgrade(database, repository)
    after = migrate.current_revision(database, repository)
    if as_json:
        output.emit_json({"database": database.where, "from": before, "to": after})
    elif before == after:
        output.line(f"{database.where} is already at schema revision {after}; nothing to do")
    elif before is None:
        output.line(f"created the schema in {database.where} at revision {after}")
    else:
        output.line(f"upgraded {database.where} from schema revision {before} to {after}")


@db_group.command("current")
@json_option
@click.pass_obj
@examples(
    "checkpointdb db current",
    "checkpointdb --db agent.db db current --json",
)
def db_current_command(env: Env, as_json: bool) -> None:
    """Print the database's schema revision and whether it is the newest.

    A database without a checkpointdb schema exits 1.
    """
    status = _schema_status(*env.open_database())
    if as_json:
        output.emit_json(status)
        if status["current"] is None:
            raise click.exceptions.Exit(1)
    elif status["current"] is None:
        raise CommandError(_describe_status(status))
    else:
        output.line(_describe_status(status))


@db_group.command("history")
@json_option
@click.pass_obj
@examples(
    "checkpointdb db history",
)
def db_history_command(env: Env, as_json: bool) -> None:
    """List the schema revisions this checkpointdb ships, oldest first.

    The database's current revision is marked when the database exists.
    """
    from .. import migrate
    from ..engine import describe

    url = env.url()
    exists = url.get_backend_name() != "sqlite" or Path(str(url.database)).exists()
    current = migrate.current_revision(*env.open_database()) if exists else None
    revisions = [{**entry, "current": entry["revision"] == current} for entry in migrate.history()]
    if as_json:
        output.emit_json(revisions)
        return
    head = migrate.head_revision()

    def status(entry: dict[str, Any]) -> str:
        marks = [("current", entry["current"]), ("head", entry["revision"] == head)]
        return ", ".join(mark for mark, on in marks if on)

    output.print_table(
        ["REVISION", "DESCRIPTION", "STATUS"],
        ([entry["revision"], entry["message"] or "", status(entry)] for entry in revisions),
        give_way=(1,),
    )
    if not exists:
        output.line(f"(no database at {url.database})")
    elif current is None:
        output.line(f"({describe(url)} has no checkpointdb schema yet)")


@db_group.command("check")
@json_option
@click.pass_obj
@examples(
    "checkpointdb --db agent.db db check && start-agents",
)
def db_check_command(env: Env, as_json: bool) -> None:
    """Exit 0 if the database's schema is the newest, 1 (saying why) if not.

    For deploy scripts: check before starting agents that open stores with
    auto_upgrade=False.
    """
    status = _schema_status(*env.open_database())
    if as_json:
        output.emit_json(status)
        if not status["at_head"]:
            raise click.exceptions.Exit(1)
        return
    if not status["at_head"]:
        raise CommandError(_describe_status(status))
    output.line(_describe_status(status))


def _role_name(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    from ..errors import InvalidDataError
    from ..roles import check_role_name

    try:
        return check_role_name(value)
    except InvalidDataError as exc:
        raise UsageLine(str(exc)) from None


@db_group.command("create-reader")
@click.argument("role", callback=_role_name)
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the role's password from stdin (its first line). Without it the role has "
    "no password, for servers that trust local or peer logins.",
)
@click.option(
    "--print",
    "print_only",
    is_flag=True,
    help="Print the SQL it would run and change nothing.",
)
@click.pass_obj
@examples(
    "checkpointdb --db postgresql+psycopg://admin@host/agents db create-reader reader "
    "--password-stdin < reader.pw",
    "checkpointdb --db postgresql+psycopg://admin@host/agents db create-reader reader --print",
)
def db_create_reader_command(env: Env, role: str, password_stdin: bool, print_only: bool) -> None:
    """PostgreSQL: create a login role that may only read the store, for `sql --url`.

    `checkpointdb sql` runs in a READ ONLY transaction, which does not stop
    functions that act outside it (pg_terminate_backend, dblink_exec): a
    role that may only SELECT does. ROLE gets CONNECT on the database, USAGE
    on the store's schema and SELECT on the store's tables and views, nothing
    else. A ROLE that exists is granted the same again (its other privileges
    on those tables are revoked); one that can do more than read (a
    superuser, a member of another role, ...) is refused. All in one
    transaction. Run it again after `db upgrade`: tables of later revisions
    are not covered until then. It prints the URL to give `sql --url`.
    """
    from ..engine import describe
    from ..roles import PASSWORD_PLACEHOLDER, create_reader

    url = env.url()
    if url.get_backend_name() != "postgresql":
        raise UsageLine(
            f"db create-reader applies to PostgreSQL only; {describe(url)} is "
            f"{url.get_backend_name()}, where `sql` cannot write whatever the query says"
        )
    password = None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise UsageLine("--password-stdin read an empty password; give one line on stdin")
    plan = create_reader(url, role, password=password, apply=not print_only)
    if print_only:
        for statement in ("BEGIN", *plan.statements, "COMMIT"):
            output.line(f"{statement};")
        return
    if plan.existed:
        output.line(f"role {role} exists already: granted it read-only access to the store again")
    else:
        output.line(f"created role {role}, which may only read the store")
    where = shlex.quote(plan.reader_url.render_as_string(hide_password=False))
    output.line(f'run queries as it with: checkpointdb sql --url {where} "SELECT ..."')
    if password is not None:
        output.line(f"(with its password, URL-escaped, in place of {PASSWORD_PLACEHOLDER})")


COMMANDS = (db_group,)
