"""What every command shares: one-line errors, the database option, argument parsing.

Nothing here imports SQLAlchemy at module level: ``checkpointdb --help`` and
``--version`` load only click and this package. The store is imported when a
command opens it.
"""

from __future__ import annotations

import errno
import inspect
import os
import re
import shlex
import shutil
import sys
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ..checkpoint import SessionInfo, parse_id
from ..errors import CheckpointDBError, InvalidDataError, NotFoundError
from . import output

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

    from ..checkpoint import Checkpoint
    from ..engine import Database
    from ..repository import Repository
    from ..store import CheckpointStore

_RELATIVE_TIME = re.compile(r"^(\d+)\s*([smhdw])$")
_TIME_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_EARLIEST = datetime.min.replace(tzinfo=UTC)
# The exit status of a command interrupted by Ctrl-C, as shells report SIGINT.
EXIT_INTERRUPTED = 130
# The exit status when the reader of stdout went away (`... | head -1`), as for SIGPIPE.
EXIT_BROKEN_PIPE = 141

F = TypeVar("F", bound=Callable[..., Any])


# -- errors ---------------------------------------------------------------------


class CommandError(click.ClickException):
    """An error shown as one line, ``Error: ...``; exit status 1."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class UsageLine(CommandError):
    """Bad usage shown as one line, with where to find help; exit status 2."""

    exit_code = 2


class Interrupted(CommandError):
    """Ctrl-C: one line, exit status 130."""

    exit_code = EXIT_INTERRUPTED

    def __init__(self) -> None:
        super().__init__("interrupted (Ctrl-C); a write in progress was rolled back")


def _one_line_usage(exc: click.UsageError) -> UsageLine:
    hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
    message = " ".join(exc.format_message().split())
    if not message.endswith((".", "?", "!")):
        message += "."
    return UsageLine(message + hint)


def _quiet_broken_pipe() -> click.exceptions.Exit:
    """Stop writing to a closed pipe: no message, and no error when Python flushes at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a file descriptor (a test's buffer)
        pass
    return click.exceptions.Exit(EXIT_BROKEN_PIPE)


class Group(click.Group):
    """A group whose errors are one line on stderr: exit 2 for bad usage, 1 otherwise."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        """Parse the group's own options, reporting bad ones on one line."""
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            raise _one_line_usage(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        """Run the subcommand; usage and store errors and Ctrl-C become one line."""
        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            raise _one_line_usage(exc) from None
        except CheckpointDBError as exc:
            raise CommandError(str(exc)) from None
        except KeyboardInterrupt:
            raise Interrupted() from None
        except BrokenPipeError:
            raise _quiet_broken_pipe() from None
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                raise _quiet_broken_pipe() from None
            raise


# -- the database the command works on -----------------------------------------------------


@dataclass(frozen=True)
class Env:
    """What the group's options say: which database (``--db``, None for the default)."""

    target: str | None

    def url(self) -> URL:
        """The database URL: ``--db``, else $CHECKPOINTDB_URL, else ./checkpoints.db."""
        from ..engine import resolve_url

        return resolve_url(self.target)

    def open_store(self, *, write: bool = False, create: bool = False) -> CheckpointStore:
        """Open the store, closed when the command ends.

        Reading commands get a read-only store: they never create, migrate or
        change anything. ``write`` opens an existing store for writing;
        ``create`` also creates one in a new file or an empty database.
        """
        from ..store import CheckpointStore

        url = self.url()
        if not create and not write:
            store = CheckpointStore(url, read_only=True)
        else:
            if not create:
                # A command that changes checkpoints has none to change where
                # there is no store yet: say so rather than create an empty one.
                CheckpointStore(url, read_only=True).close()
            store = CheckpointStore(url, auto_upgrade=False)
        click.get_current_context().call_on_close(store.close)
        return store

    def open_database(self, *, create: bool = False) -> tuple[Database, Repository]:
        """The database without the store's schema check, for the ``db`` commands.

        Without ``create`` it is opened read-only; with it (``db upgrade``, an
        explicit migration, which is consent to create the schema beside other
        tables), a database a newer checkpointdb wrote is refused before
        anything is written.
        """
        from .. import migrate
        from ..engine import Database
        from ..repository import Repository

        url = self.url()
        if create:
            migrate.check_before_writing(url, auto_upgrade=True, create_in_existing=True)
            database = Database(url)
        else:
            database = migrate.open_reader(url)
        click.get_current_context().call_on_close(database.dispose)
        return database, Repository(database.engine.dialect)

    def db_flag(self) -> str:
        """`` --db TARGET`` to retype this command (a URL's password masked), or ""."""
        from ..engine import describe

        if not self.target:
            return ""
        shown = describe(self.url()) if "://" in self.target else self.target
        return f" --db {shlex.quote(shown)}"

    def command(self) -> str:
        """How the user runs checkpointdb on this database, pasteable into their shell."""
        return runnable_command() + self.db_flag()


def runnable_command() -> str:
    """``checkpointdb`` if that runs this installation, else a command that does.

    When the environment is not activated, ``checkpointdb`` is not on PATH:
    then the full path of this environment's script, else ``python -m``.
    """
    script = Path(sysconfig.get_path("scripts")) / "checkpointdb"
    on_path = shutil.which("checkpointdb")
    if on_path is not None and (not script.exists() or Path(on_path).samefile(script)):
        return "checkpointdb"
    if script.exists():
        return shlex.quote(str(script))
    return f"{shlex.quote(sys.executable)} -m checkpointdb"


def require_session(store: CheckpointStore, session_id: str) -> SessionInfo:
    """The session's info, or a NotFoundError that says how to list sessions."""
    info = store.session(session_id)
    if info is None:
        raise NotFoundError(
            f"no session {session_id!r} in {store.where} (`checkpointdb sessions` lists them)"
        )
    return info


def confirm(action: str, yes: bool) -> None:
    """Go on if --yes, or if the person at the terminal says so; refuse otherwise."""
    if yes:
        return
    if not output.stdin_is_terminal():
        raise CommandError(f"refusing to {action} without confirmation: add --yes")
    if not click.confirm(f"{action[0].upper()}{action[1:]}?", default=False, err=True):
        raise CommandError(f"did not {action}: not confirmed")


def missing_checkpoint(store: CheckpointStore, checkpoint_id: str) -> NotFoundError:
    """The error for an id with no checkpoint: whether it never existed or is gone."""
    session_id, seq = split_id(checkpoint_id)
    info = require_session(store, session_id)
    why = "never existed" if seq > info.last_seq else "was compacted or deleted"
    return NotFoundError(f"no checkpoint {checkpoint_id} in {store.where}: it {why}")


def require_checkpoint(store: CheckpointStore, checkpoint_id: str) -> Checkpoint:
    """The checkpoint with this id, or a NotFoundError that says why there is none."""
    session_id, _ = split_id(checkpoint_id)
    require_session(store, session_id)
    checkpoint = store.manager(session_id).get(checkpoint_id)
    if checkpoint is None:
        raise missing_checkpoint(store, checkpoint_id)
    return checkpoint


# -- arguments ------------------------------------------------------------------------------


def identifier(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A session id or name, checked as the store checks it (bad usage if not)."""
    if value is None:
        return None
    from ..validate import check_identifier

    try:
        return check_identifier(value, param.human_readable_name)
    except InvalidDataError as exc:
        raise click.BadParameter(str(exc)) from None


def _relative(text: str) -> timedelta | None:
    """A span written as a number and a unit (30s, 10m, 2h, 7d, 1w), or None if it is not one.

    Raises:
        click.BadParameter: the span is longer than a datetime can reach.
    """
    relative = _RELATIVE_TIME.match(text)
    if relative is None:
        return None
    amount, unit = int(relative.group(1)), relative.group(2)
    try:
        span = timedelta(**{_TIME_UNITS[unit]: amount})
    except OverflowError:
        span = None
    if span is None or span > datetime.now(UTC) - _EARLIEST:
        raise click.BadParameter(f"{text!r} reaches too far back")
    return span


def instant(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """An instant: ISO 8601 with an offset, or a relative time before now (10m, 2h, 7d).

    A time without an offset is refused rather than guessed.
    """
    if value is None:
        return None
    text = value.strip()
    span = _relative(text)
    if span is not None:
        return datetime.now(UTC) - span
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a time: give ISO 8601 with an offset "
            "(2026-11-26T18:00:00Z, ...+02:00) or a relative time (30s, 10m, 2h, 7d, 1w)"
        ) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise click.BadParameter(
            f"{text!r} has no timezone: add one ({text}Z for UTC, or +02:00) "
            "or give a relative time such as 2h"
        )
    return parsed


def age(ctx: click.Context, param: click.Parameter, value: str | None) -> timedelta | None:
    """An age: a number and a unit, as --since takes them (30s, 10m, 2h, 7d, 1w)."""
    if value is None:
        return None
    text = value.strip()
    span = _relative(text)
    if span is None:
        raise click.BadParameter(
            f"{text!r} is not an age: give a number and a unit, such as 30s, 10m, 2h, 7d or 1w"
        )
    return span


def split_id(text: str) -> tuple[str, int]:
    """``(session_id, seq)`` of an id given on the command line; bad usage if malformed."""
    parsed = parse_id(text)
    if parsed is None:
        raise click.BadParameter(
            f"{text!r} is not a checkpoint id: ids are SESSION:SEQ, such as demo:3",
            param_hint="ID",
        )
    return parsed


def checked_checkpoint_id(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A SESSION:SEQ argument, refused while parsing, before the database is opened."""
    split_id(value)
    return value


def verbatim(title: str, *lines: str) -> Callable[[F], F]:
    """Append a titled block to a command's help, kept line for line by click."""

    def decorate(function: F) -> F:
        block = "".join(f"  {line}\n" for line in lines)
        # "\b" on a line of its own stops click from re-wrapping the block.
        function.__doc__ = f"{inspect.cleandoc(function.__doc__ or '')}\n\n\b\n{title}\n{block}"
        return function

    return decorate


def examples(*lines: str) -> Callable[[F], F]:
    """Append an "Example:" block to a command's help."""
    return verbatim("Example:", *lines)


def session_argument(function: F) -> F:
    """The SESSION argument, checked as a session id."""
    return click.argument("session_id", metavar="SESSION", callback=identifier)(function)


def checkpoint_argument(function: F) -> F:
    """The ID argument (SESSION:SEQ), checked before the database is opened."""
    return click.argument("checkpoint_id", metavar="ID", callback=checked_checkpoint_id)(function)


def json_option(function: F) -> F:
    """``--json``: JSON for scripts instead of a table."""
    return click.option(
        "--json", "as_json", is_flag=True, help="Print JSON (for scripts) instead of a table."
    )(function)


def yes_option(function: F) -> F:
    """``--yes``: skip the confirmation question of a command that deletes."""
    return click.option(
        "--yes", "-y", is_flag=True, help="Do not ask for confirmation (needed without a terminal)."
    )(function)
