"""The ``checkpointdb`` command: inspect, move and repair agent state from a terminal.

A thin layer over the public API: each command opens a
:class:`~checkpointdb.CheckpointStore`, calls one or two methods of it or of a
:class:`~checkpointdb.CheckpointManager`, and prints the result as a table for
people or, with ``--json``, as JSON for scripts. The only SQL of its own is
the ``sql`` command's, run by :mod:`checkpointdb.readonly`; the ``db``
commands drive :mod:`checkpointdb.migrate`.

Exit status: 0 on success; 1 on an error (an unknown session, id or database
file, a refused query, a schema that is not at head for ``db check``); 2 on
bad usage (a missing or malformed argument). Errors are one line on stderr.
The CLI never upgrades a schema on its own: ``db upgrade`` does.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import shlex
import sys
import tempfile
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import islice
from pathlib import Path
from typing import Any, TextIO, TypeVar

import click
from sqlalchemy.engine import URL

from . import demo, migrate
from .checkpoint import Checkpoint, SessionInfo, parse_id
from .engine import Database, describe, resolve_url
from .errors import CheckpointDBError, InvalidDataError, NotFoundError
from .manager import CheckpointManager
from .readonly import run_read_only
from .repository import Repository
from .store import CheckpointStore
from .validate import check_identifier

# Below this many rows (or bytes, for import) the work is over before a
# progress bar could be read, so none is drawn.
PROGRESS_MIN_ROWS = 2000
PROGRESS_MIN_BYTES = 4 * 1024 * 1024
# Table cells longer than this are cut (``--json`` gives them whole).
CELL_WIDTH = 60
# Rows in the ``stats`` chart, and the width of its longest bar.
CHART_ROWS = 12
CHART_WIDTH = 40

_KEEP_RECENT_DEFAULT = inspect.signature(CheckpointStore.manager).parameters["keep_recent"].default
_RELATIVE_TIME = re.compile(r"^(\d+)\s*([smhdw])$")
_TIME_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
# The widest range get_between accepts: "every checkpoint" for an open bound.
_EARLIEST = datetime.min.replace(tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)

F = TypeVar("F", bound=Callable[..., Any])


# -- errors ---------------------------------------------------------------------


class _CommandError(click.ClickException):
    """An error shown as one line, ``Error: ...``; exit status 1."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class _UsageLine(_CommandError):
    """Bad usage shown as one line, with where to find help; exit status 2."""

    exit_code = 2


def _one_line_usage(exc: click.UsageError) -> _UsageLine:
    hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
    return _UsageLine(exc.format_message().rstrip(".") + "." + hint)


class _Group(click.Group):
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
        """Run the subcommand; turn usage and store errors into one-line errors."""
        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            raise _one_line_usage(exc) from None
        except CheckpointDBError as exc:
            raise _CommandError(str(exc)) from None


# -- the database the command works on -----------------------------------------------------


@dataclass(frozen=True)
class _Env:
    """What the group's options say: which database (``--db``, None for the default)."""

    target: str | None

    def url(self) -> URL:
        """The database URL: ``--db``, else $CHECKPOINTDB_URL, else ./checkpoints.db."""
        return resolve_url(self.target)

    def open_store(self, *, write: bool = False, create: bool = False) -> CheckpointStore:
        """Open the store, closed when the command ends.

        Reading commands get a read-only store: they never create, migrate or
        change anything. ``write`` opens an existing store for writing;
        ``create`` also creates one in a new file or an empty database.
        """
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
        if not self.target:
            return ""
        shown = describe(self.url()) if "://" in self.target else self.target
        return f" --db {shlex.quote(shown)}"


# -- arguments ------------------------------------------------------------------------------


def _identifier(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
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


def _time(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
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
            "(2026-11-26T18:00:00+00:00, ...Z) or a relative time (30s, 10m, 2h, 7d, 1w)"
        ) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise click.BadParameter(
            f"{text!r} has no timezone: add one ({text}Z for UTC, or +02:00) "
            "or give a relative time such as 2h"
        )
    return parsed


def _age(ctx: click.Context, param: click.Parameter, value: str | None) -> timedelta | None:
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


def _split_id(text: str) -> tuple[str, int]:
    """``(session_id, seq)`` of an id given on the command line; bad usage if malformed."""
    parsed = parse_id(text)
    if parsed is None:
        raise click.BadParameter(
            f"{text!r} is not a checkpoint id: ids are SESSION:SEQ, such as demo:3",
            param_hint="ID",
        )
    return parsed


def _checkpoint_id(ctx: click.Context, param: click.Parameter, value: str) -> str:
    _split_id(value)  # refused while parsing, before the database is opened
    return value


def _examples(*lines: str) -> Callable[[F], F]:
    """Append an "Example:" block to a command's help, kept verbatim by click."""

    def decorate(function: F) -> F:
        block = "".join(f"  {line}\n" for line in lines)
        # "\b" on a line of its own stops click from re-wrapping the block.
        function.__doc__ = f"{inspect.cleandoc(function.__doc__ or '')}\n\n\b\nExample:\n{block}"
        return function

    return decorate


def _session_argument(function: F) -> F:
    return click.argument("session_id", metavar="SESSION", callback=_identifier)(function)


def _checkpoint_argument(function: F) -> F:
    return click.argument("checkpoint_id", metavar="ID", callback=_checkpoint_id)(function)


def _json_option(function: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print JSON (for scripts) instead of a table."
    )(function)


# -- output -------------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    """A time for tables: UTC to the second, in ISO 8601 (paste it into --since)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _size(count: int) -> str:
    """Bytes in decimal units for people: 512 B, 1.2 kB, 34.5 MB (--json gives the exact number)."""
    if count < 1000:
        return f"{count} B"
    value = float(count)
    for unit in ("kB", "MB", "GB", "TB"):
        value /= 1000
        # 999.96 kB would print as "1000.0 kB": move up a unit before rounding does.
        if value < 999.95 or unit == "TB":
            break
    return f"{value:.1f} {unit}"


def _count(number: int, noun: str) -> str:
    """``1 checkpoint``, ``2 checkpoints``."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _age_text(span: timedelta) -> str:
    """An age as --older-than takes it, in its largest whole unit: 30d, 36h, 90s."""
    seconds = int(span.total_seconds())
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % length == 0:
            return f"{seconds // length}{unit}"
    return f"{seconds}s"


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)  # Decimal, UUID: exact as text


def _emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=_json_default))


def _cell(value: Any) -> str:
    """A value as a person reads it in a table."""
    if value is None:
        return "NULL"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return "x'" + bytes(value).hex() + "'"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def _cut(text: str, width: int = CELL_WIDTH) -> tuple[str, bool]:
    text = text.replace("\n", " ")
    if len(text) <= width:
        return text, False
    return text[: width - 1] + "…", True


def _render_table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], right: Iterable[int] = ()
) -> tuple[list[str], bool]:
    """Lines of an aligned text table, and whether any cell had to be cut."""
    cut_any = False
    cells: list[list[str]] = []
    for row in rows:
        cut_row = []
        for value in row:
            text, was_cut = _cut(value)
            cut_row.append(text)
            cut_any = cut_any or was_cut
        cells.append(cut_row)
    widths = [len(header) for header in headers]
    for row in cells:
        widths = [max(width, len(value)) for width, value in zip(widths, row, strict=True)]
    right_aligned = set(right)

    def line(values: Sequence[str]) -> str:
        parts = [
            value.rjust(width) if index in right_aligned else value.ljust(width)
            for index, (value, width) in enumerate(zip(values, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    return [line(headers), line(["-" * width for width in widths]), *map(line, cells)], cut_any


def _print_table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], right: Iterable[int] = ()
) -> None:
    lines, cut_any = _render_table(headers, rows, right)
    for text in lines:
        click.echo(text)
    if cut_any:
        click.echo(f"(values longer than {CELL_WIDTH} characters are cut; --json shows them whole)")


def _stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


def _progress_wanted(size: int, threshold: int) -> bool:
    """Draw progress only for people (stderr is a terminal) and only for long work."""
    return size >= threshold and _stderr_is_terminal()


def _note(message: str) -> None:
    """A status line for the person at the terminal; stdout stays clean for pipes."""
    click.echo(message, err=True)


# -- the group ------------------------------------------------------------------------------


@click.group(
    name="checkpointdb",
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--db",
    "target",
    metavar="PATH|URL",
    help="The database: an SQLite file path or a URL such as "
    "postgresql+psycopg://user@host/db. Default: $CHECKPOINTDB_URL, else ./checkpoints.db.",
)
@click.version_option(package_name="checkpointdb", prog_name="checkpointdb")
@click.pass_context
@_examples(
    "checkpointdb demo --crash-at 4; checkpointdb demo",
    "checkpointdb sessions",
    "checkpointdb --db postgresql+psycopg://agent@db.internal/agents sessions",
)
def cli(ctx: click.Context, target: str | None) -> None:
    """A durable SQL checkpoint store for AI agents: inspect, move and repair agent state.

    Start with the demo, which crashes an agent on purpose and resumes it.
    Every command that prints data takes --json. Exit status: 0 ok, 1 error
    (unknown session, id or database), 2 bad usage.
    """
    ctx.obj = _Env(target)


def main() -> None:
    """Entry point of the ``checkpointdb`` console script (and ``python -m checkpointdb``)."""
    cli.main(prog_name="checkpointdb")


def _require_session(store: CheckpointStore, session_id: str) -> SessionInfo:
    info = store.session(session_id)
    if info is None:
        raise NotFoundError(
            f"no session {session_id!r} in {store.where} (`checkpointdb sessions` lists them)"
        )
    return info


# -- sessions, list, show, latest -------------------------------------------------------------


@cli.command("sessions")
@_json_option
@click.pass_obj
@_examples(
    "checkpointdb sessions",
    "checkpointdb --db agent.db sessions --json",
)
def sessions_command(env: _Env, as_json: bool) -> None:
    """List every session: live checkpoints, last seq, payload size, first and last write.

    SIZE is the UTF-8 size of the live checkpoints' data and metadata JSON
    (--json: payload_bytes, exact).
    """
    store = env.open_store()
    sessions = store.sessions()
    if as_json:
        _emit_json(
            [
                {
                    "session_id": info.id,
                    "checkpoint_count": info.checkpoint_count,
                    "last_seq": info.last_seq,
                    "payload_bytes": info.payload_bytes,
                    "created_at": info.created_at,
                    "updated_at": info.updated_at,
                }
                for info in sessions
            ]
        )
        return
    if not sessions:
        click.echo(f"no sessions in {store.where}")
        return
    _print_table(
        ["SESSION", "CHECKPOINTS", "LAST SEQ", "SIZE", "FIRST (UTC)", "LAST (UTC)"],
        (
            [
                info.id,
                str(info.checkpoint_count),
                str(info.last_seq),
                _size(info.payload_bytes),
                _iso(info.created_at),
                _iso(info.updated_at),
            ]
            for info in sessions
        ),
        right=(1, 2, 3),
    )


@cli.command("list")
@_session_argument
@click.option("--name", "-n", callback=_identifier, help="Only checkpoints with this name.")
@click.option(
    "--since",
    metavar="TIME",
    callback=_time,
    help="Created at or after TIME (ISO 8601 or 10m, 2h, 7d).",
)
@click.option("--until", metavar="TIME", callback=_time, help="Created at or before TIME.")
@click.option(
    "--limit",
    "-l",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="At most this many (0: all).",
)
@_json_option
@click.pass_obj
@_examples(
    "checkpointdb list demo",
    "checkpointdb list demo --name plan --since 2h --limit 5",
    "checkpointdb list agent-7 --since 2026-11-26T09:00:00+01:00 --json",
)
def list_command(
    env: _Env,
    session_id: str,
    name: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    as_json: bool,
) -> None:
    """List a session's checkpoints, newest first; PINNED marks those retention keeps.

    Times are ISO 8601 with an offset (2026-11-26T18:00:00Z, ...+02:00) or
    relative to now (30s, 10m, 2h, 7d, 1w). --json prints the export format
    (id, name, timestamp, data, metadata) with "pinned" on every entry.
    """
    if since is not None and until is not None and since > until:
        raise click.UsageError(f"--since {since.isoformat()} is after --until {until.isoformat()}")
    store = env.open_store()
    info = _require_session(store, session_id)
    mgr = store.manager(session_id)
    wanted = None if limit == 0 else limit + 1  # one more tells whether there are more
    found: Iterable[Checkpoint]
    if since is not None or until is not None:
        in_range = mgr.get_between(since or _EARLIEST, until or _LATEST)
        found = (cp for cp in reversed(in_range) if name is None or cp.name == name)
    elif name is not None:
        found = mgr.get_by_name(name, wanted)
    else:
        found = mgr.iter_newest_first()
    checkpoints = list(islice(found, wanted))
    more = wanted is not None and len(checkpoints) == wanted
    checkpoints = checkpoints[:limit] if more else checkpoints
    if as_json:
        _emit_json([_checkpoint_json(cp) for cp in checkpoints])
    elif not checkpoints:
        click.echo(f"no matching checkpoints in session {session_id!r}")
    else:
        _print_table(
            ["ID", "NAME", "CREATED (UTC)", "PINNED", "DATA"],
            (
                [cp.id, cp.name, _iso(cp.timestamp), _yes_no(cp.pinned), _cell(cp.data)]
                for cp in checkpoints
            ),
        )
    if more:
        filtered = name is not None or since is not None or until is not None
        total = "" if filtered else f" {info.checkpoint_count}"
        _note(f"(showing the {limit} newest; --limit 0 lists all{total})")


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def _checkpoint_json(checkpoint: Checkpoint) -> dict[str, Any]:
    """The export format with "pinned" always present, so scripts need not default it.

    ``import`` reads it back unchanged (it takes "pinned" as true or false).
    """
    return {**checkpoint.to_dict(), "pinned": checkpoint.pinned}


def _print_checkpoint(checkpoint: Checkpoint, as_json: bool) -> None:
    if as_json:
        _emit_json(_checkpoint_json(checkpoint))
        return
    click.echo(f"id        {checkpoint.id}")
    click.echo(f"name      {checkpoint.name}")
    click.echo(f"created   {checkpoint.timestamp.isoformat()}")
    click.echo(f"pinned    {_yes_no(checkpoint.pinned)}")
    click.echo(f"metadata  {json.dumps(checkpoint.metadata, ensure_ascii=False)}")
    click.echo("data")
    click.echo(textwrap.indent(json.dumps(checkpoint.data, indent=2, ensure_ascii=False), "  "))


def _missing_checkpoint(store: CheckpointStore, checkpoint_id: str) -> NotFoundError:
    """The error for an id with no checkpoint: whether it never existed or is gone."""
    session_id, seq = _split_id(checkpoint_id)
    info = _require_session(store, session_id)
    why = "never existed" if seq > info.last_seq else "was compacted or deleted"
    return NotFoundError(f"no checkpoint {checkpoint_id} in {store.where}: it {why}")


def _require_checkpoint(store: CheckpointStore, checkpoint_id: str) -> Checkpoint:
    session_id, _ = _split_id(checkpoint_id)
    _require_session(store, session_id)
    checkpoint = store.manager(session_id).get(checkpoint_id)
    if checkpoint is None:
        raise _missing_checkpoint(store, checkpoint_id)
    return checkpoint


@cli.command("show")
@_checkpoint_argument
@_json_option
@click.pass_obj
@_examples(
    "checkpointdb show demo:3",
    "checkpointdb show demo:3 --json | jq .data",
)
def show_command(env: _Env, checkpoint_id: str, as_json: bool) -> None:
    """Show one checkpoint: its name, time, whether it is pinned, metadata and data.

    ID is SESSION:SEQ, as `list` prints it.
    """
    _print_checkpoint(_require_checkpoint(env.open_store(), checkpoint_id), as_json)


@cli.command("latest")
@_session_argument
@click.option("--name", "-n", callback=_identifier, help="The newest checkpoint with this name.")
@_json_option
@click.pass_obj
@_examples(
    "checkpointdb latest demo",
    "checkpointdb latest demo --name plan --json",
)
def latest_command(env: _Env, session_id: str, name: str | None, as_json: bool) -> None:
    """Show a session's newest checkpoint (or the newest with --name).

    This is the state an agent resumes from.
    """
    store = env.open_store()
    _require_session(store, session_id)
    checkpoint = store.manager(session_id).get_latest(name)
    if checkpoint is None:
        named = f" named {name!r}" if name else ""
        raise NotFoundError(f"session {session_id!r} has no checkpoint{named}")
    _print_checkpoint(checkpoint, as_json)


# -- pin, unpin -----------------------------------------------------------------------------------


def _set_pinned(env: _Env, checkpoint_id: str, pinned: bool, as_json: bool) -> None:
    store = env.open_store(write=True)
    before = _require_checkpoint(store, checkpoint_id)
    mgr = store.manager(before.session_id)
    changed = mgr.pin(checkpoint_id) if pinned else mgr.unpin(checkpoint_id)
    if not changed:  # deleted between the read and the write
        raise _missing_checkpoint(store, checkpoint_id)
    if as_json:
        _emit_json({"id": checkpoint_id, "pinned": pinned, "changed": before.pinned != pinned})
    elif before.pinned == pinned:
        click.echo(f"{checkpoint_id} was already {'pinned' if pinned else 'not pinned'}")
    elif pinned:
        click.echo(f"pinned {checkpoint_id}: compaction, max_checkpoints and expire keep it")
    else:
        click.echo(f"unpinned {checkpoint_id}: retention may remove it again")


@cli.command("pin")
@_checkpoint_argument
@_json_option
@click.pass_obj
@_examples(
    "checkpointdb pin demo:3",
    "checkpointdb pin agent-7:120 --json",
)
def pin_command(env: _Env, checkpoint_id: str, as_json: bool) -> None:
    """Pin a checkpoint: compaction, the max_checkpoints cap and expire never remove it.

    Pinned checkpoints do not count toward the cap. Pinning a pinned
    checkpoint changes nothing. An unknown id exits 1.
    """
    _set_pinned(env, checkpoint_id, True, as_json)


@cli.command("unpin")
@_checkpoint_argument
@_json_option
@click.pass_obj
@_examples(
    "checkpointdb unpin demo:3",
)
def unpin_command(env: _Env, checkpoint_id: str, as_json: bool) -> None:
    """Unpin a checkpoint, so retention may remove it again like any other.

    Unpinning a checkpoint that is not pinned changes nothing. An unknown id exits 1.
    """
    _set_pinned(env, checkpoint_id, False, as_json)


# -- export, import, compact, expire, vacuum ------------------------------------------------------


def _write_export(mgr: CheckpointManager, total: int, write: Callable[[str], Any]) -> int:
    """Stream ``mgr.export()``'s exact text, a page of rows at a time, with progress.

    The manager's ``export()`` builds the whole document in memory and cannot
    report progress; this writes the same bytes (a test holds them equal).
    """
    count = 0
    with click.progressbar(
        length=total,
        label="Exporting",
        file=sys.stderr,
        hidden=not _progress_wanted(total, PROGRESS_MIN_ROWS),
    ) as bar:
        write("[")
        for checkpoint in mgr:
            entry = json.dumps(checkpoint.to_dict(), indent=2, ensure_ascii=False)
            # Indent the entry as a list item; JSON text has no raw newline inside strings.
            write(("\n  " if count == 0 else ",\n  ") + entry.replace("\n", "\n  "))
            count += 1
            bar.update(1)
        write("\n]\n" if count else "]\n")
    return count


def _write_file_atomically(path: Path, produce: Callable[[TextIO], Any]) -> Any:
    """Write ``path`` through a 0600 temporary file renamed over it: never half a file.

    A symlink is followed (the file it points to is replaced, the link
    stays); a device or a pipe (``-o /dev/stdout``) is written to directly.
    """
    target = Path(os.path.realpath(path.expanduser()))
    if target.exists() and not target.is_file():
        try:
            with target.open("w", encoding="utf-8") as handle:
                return produce(handle)
        except OSError as exc:
            raise CheckpointDBError(f"cannot write {path}: {exc.strerror}") from exc
    try:
        descriptor, temporary = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".partial", dir=target.parent
        )
    except OSError as exc:
        raise CheckpointDBError(f"cannot write {path}: {exc.strerror}") from exc
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            result = produce(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return result


@cli.command("export")
@_session_argument
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to FILE (mode 0600, replaced atomically) instead of stdout.",
)
@click.pass_obj
@_examples(
    "checkpointdb export demo -o demo.json",
    "checkpointdb export demo | jq 'length'",
)
def export_command(env: _Env, session_id: str, output: Path | None) -> None:
    """Export a session's checkpoints as JSON (the seed's export format).

    The file is a JSON list of {id, name, timestamp, data, metadata},
    oldest first: what CheckpointManager.export() returns and `import` reads.
    """
    store = env.open_store()
    info = _require_session(store, session_id)
    mgr = store.manager(session_id)
    if output is None:
        _write_export(mgr, info.checkpoint_count, lambda text: click.echo(text, nl=False))
        return
    count = _write_file_atomically(
        output, lambda handle: _write_export(mgr, info.checkpoint_count, handle.write)
    )
    _note(f"exported {_count(count, 'checkpoint')} of session {session_id!r} to {output}")


@cli.command("import")
@_session_argument
@click.argument("file", type=click.File("r", encoding="utf-8"))
@_json_option
@click.pass_obj
@_examples(
    "checkpointdb import demo-copy demo.json",
    "checkpointdb --db old.db export agent-7 | checkpointdb --db new.db import agent-7 -",
)
def import_command(env: _Env, session_id: str, file: TextIO, as_json: bool) -> None:
    """Import checkpoints from an export file into SESSION, all or nothing.

    FILE is JSON as `export` (or the seed's CheckpointManager.export()) writes
    it; - reads stdin. Every entry is checked before anything is written; one
    bad entry imports nothing. Checkpoints keep their order and timestamps. An
    entry keeps its id only if the id is SESSION's and above every id SESSION
    has issued; any other gets the next fresh id, so no id is ever duplicated.
    The database is created if it does not exist (and not for a file that
    fails or holds no checkpoint).
    """
    try:
        text = file.read()
    except UnicodeDecodeError as exc:
        raise CheckpointDBError(f"{file.name} is not UTF-8 text: {exc}") from None
    url = env.url()
    path = Path(str(url.database)) if url.get_backend_name() == "sqlite" else None
    new_file = path if path is not None and not path.exists() else None
    store = env.open_store(create=True)
    mgr = store.manager(session_id)
    started = time.monotonic()
    if _progress_wanted(len(text), PROGRESS_MIN_BYTES):
        _note(f"Importing {len(text) / 1e6:.1f} MB into session {session_id!r} (one transaction)…")
    try:
        count = mgr.import_checkpoints(text)
    except BaseException:
        _remove_new_database(store, new_file)
        raise
    found = store.session(session_id)
    if count == 0:
        _remove_new_database(store, new_file)
    if as_json:
        _emit_json(
            {
                "session_id": session_id,
                "imported": count,
                "checkpoint_count": found.checkpoint_count if found else 0,
                "last_seq": found.last_seq if found else 0,
            }
        )
        return
    if count == 0:
        click.echo(f"{file.name} holds no checkpoints; nothing was imported")
        return
    info = _require_session(store, session_id)
    click.echo(
        f"imported {_count(count, 'checkpoint')} into session {session_id!r} in "
        f"{time.monotonic() - started:.1f} s; it now has {info.checkpoint_count} "
        f"(newest id {session_id}:{info.last_seq})"
    )


def _remove_new_database(store: CheckpointStore, path: Path | None) -> None:
    """Remove the SQLite file this command created, once it is known to hold nothing.

    Called only before anything was committed to it, so a failed or empty
    import leaves no database behind.
    """
    if path is None:
        return
    store.close()
    for suffix in ("", "-wal", "-shm", "-journal"):
        with suppress(FileNotFoundError):
            os.unlink(f"{path}{suffix}")


def _shorten(ids: Sequence[str], keep: int = 6) -> str:
    if len(ids) <= keep:
        return ", ".join(ids)
    half = keep // 2
    return ", ".join([*ids[:half], "…", *ids[-half:]])


# Why compaction keeps a checkpoint, as CompactionReport.kept names the reasons.
_KEEP_REASONS = {
    "first": "the first",
    "pinned": "pinned",
    "recent": "among the newest {keep_recent}",
    "too_recent": "younger than {older_than}",
    "newest_of_name": "the newest of their name",
}


def _kept_text(kept: dict[str, int], keep_recent: int, older_than: str) -> str:
    """``1 the first, 3 the newest of their name, 5 among the newest 5``."""
    return ", ".join(
        f"{count} "
        + _KEEP_REASONS.get(reason, reason).format(keep_recent=keep_recent, older_than=older_than)
        for reason, count in kept.items()
    )


def _vacuum_hint(env: _Env) -> str:
    return (
        "(the database reuses the freed space for new checkpoints; "
        f"`checkpointdb{env.db_flag()} vacuum` gives it back to the file system)"
    )


@cli.command("compact")
@_session_argument
@click.option("--dry-run", is_flag=True, help="Only say what would be removed; change nothing.")
@click.option(
    "--keep-recent",
    type=click.IntRange(min=0),
    default=_KEEP_RECENT_DEFAULT,
    show_default=True,
    help="How many of the newest checkpoints to keep whatever their names.",
)
@click.option(
    "--older-than",
    metavar="AGE",
    callback=_age,
    help="Only remove checkpoints older than AGE (30s, 10m, 2h, 7d, 1w).",
)
@_json_option
@click.pass_obj
@_examples(
    "checkpointdb compact agent-7 --dry-run",
    "checkpointdb compact agent-7 --keep-recent 5 --older-than 7d",
)
def compact_command(
    env: _Env,
    session_id: str,
    dry_run: bool,
    keep_recent: int,
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
    info = _require_session(store, session_id)
    mgr = store.manager(session_id, keep_recent=keep_recent)
    if not dry_run and _progress_wanted(info.checkpoint_count, PROGRESS_MIN_ROWS):
        _note(f"Compacting {info.checkpoint_count} checkpoints (one transaction)…")
    report = mgr.compact(keep_recent=keep_recent, older_than=older_than, dry_run=dry_run)
    if as_json:
        _emit_json(
            {
                "session_id": session_id,
                "dry_run": report.dry_run,
                "keep_recent": keep_recent,
                "older_than_seconds": None if older_than is None else older_than.total_seconds(),
                "rows_removed": report.rows_removed,
                "bytes_removed": report.bytes_removed,
                "removed": report.removed,
                "remaining": report.remaining,
                "kept": report.kept,
            }
        )
        return
    count, size = report.rows_removed, _size(report.bytes_removed)
    if dry_run:
        click.echo(
            f"dry run: compacting session {session_id!r} would remove {count} of "
            f"{_count(count + report.remaining, 'checkpoint')} ({size} of JSON) "
            f"and keep {report.remaining}"
        )
    else:
        click.echo(
            f"removed {_count(count, 'checkpoint')} ({size} of JSON) from session {session_id!r}; "
            f"{report.remaining} remain"
        )
    if report.removed:
        click.echo(f"{'would remove' if dry_run else 'removed'}: {_shorten(report.removed)}")
    age = "" if older_than is None else _age_text(older_than)
    if report.kept:
        click.echo(f"kept: {_kept_text(report.kept, keep_recent, age)}")
    if report.removed and not dry_run:
        click.echo(_vacuum_hint(env))


@cli.command("expire")
@click.option(
    "--older-than",
    metavar="AGE",
    required=True,
    callback=_age,
    help="Remove checkpoints older than AGE (30s, 10m, 2h, 7d, 1w).",
)
@click.option("--dry-run", is_flag=True, help="Only say what would be removed; change nothing.")
@_json_option
@click.pass_obj
@_examples(
    "checkpointdb expire --older-than 30d --dry-run",
    "checkpointdb expire --older-than 2w --json",
)
def expire_command(env: _Env, older_than: timedelta, dry_run: bool, as_json: bool) -> None:
    """Remove checkpoints older than AGE from every session.

    Pinned checkpoints stay, and so does each session's newest checkpoint,
    so an idle agent can still resume. One transaction per session. The size
    is the removed checkpoints' data and metadata JSON (--json: bytes_removed,
    exact).
    """
    store = env.open_store(write=True)
    report = store.expire(older_than, dry_run=dry_run)
    if as_json:
        _emit_json(
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
    age = _age_text(older_than)
    if not report.removed:
        click.echo(f"no checkpoint older than {age} to remove in {store.where}")
        return
    sessions = _count(len(report.removed), "session")
    rows = f"{_count(report.rows_removed, 'checkpoint')} ({_size(report.bytes_removed)} of JSON)"
    if dry_run:
        click.echo(f"dry run: expiring would remove {rows} older than {age} from {sessions}")
    else:
        click.echo(f"removed {rows} older than {age} from {sessions}")
    _print_table(
        ["SESSION", "REMOVED", "SIZE", "IDS"],
        (
            [
                session_id,
                str(len(ids)),
                _size(report.bytes_by_session[session_id]),
                _shorten(ids, keep=4),
            ]
            for session_id, ids in report.removed.items()
        ),
        right=(1, 2),
    )
    if not dry_run:
        click.echo(_vacuum_hint(env))


@cli.command("vacuum")
@_json_option
@click.pass_obj
@_examples(
    "checkpointdb vacuum",
    "checkpointdb --db agent.db vacuum --json",
)
def vacuum_command(env: _Env, as_json: bool) -> None:
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
        _emit_json(
            {
                "database": store.where,
                "bytes_before": report.bytes_before,
                "bytes_after": report.bytes_after,
                "bytes_freed": freed,
            }
        )
        return
    click.echo(
        f"vacuumed {store.where}: {_size(report.bytes_before)} -> {_size(report.bytes_after)} "
        f"({_size(max(freed, 0))} given back)"  # VACUUM's maps can grow PostgreSQL's
    )


# -- stats ------------------------------------------------------------------------------------


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _rate(count: int, seconds: float) -> str:
    if seconds <= 0:
        return "n/a (a single instant)"
    for unit, length in (("second", 1), ("minute", 60), ("hour", 3600)):
        per = count / seconds * length
        if per >= 1:
            return f"{per:.1f} per {unit}"
    return f"{count / seconds * 86400:.1f} per day"


def _timeline(times: list[datetime]) -> list[tuple[datetime, datetime, int]]:
    """Checkpoints per equal slice of time between the first and the last."""
    if not times:
        return []
    start, end = min(times), max(times)
    rows = max(1, min(CHART_ROWS, len(times)))
    step = (end - start) / rows
    if not step:
        return [(start, end, len(times))]
    counts = [0] * rows
    for moment in times:
        counts[min(int((moment - start) / step), rows - 1)] += 1
    return [(start + step * i, start + step * (i + 1), n) for i, n in enumerate(counts)]


def _chart(timeline: list[tuple[datetime, datetime, int]]) -> list[str]:
    width = timeline[0][1] - timeline[0][0]
    if not width:  # every checkpoint at one instant
        label = "%Y-%m-%d %H:%M:%S.%f"
    elif width < timedelta(seconds=1):
        label = "%H:%M:%S.%f"
    elif width < timedelta(days=1) and timeline[-1][1] - timeline[0][0] < timedelta(days=1):
        label = "%H:%M:%S"
    else:
        label = "%Y-%m-%d %H:%M"
    peak = max(count for _, _, count in timeline)
    block = "█" if "█".encode(sys.stdout.encoding or "ascii", "ignore") else "#"
    lines = []
    for start, _, count in timeline:
        length = max(round(count / peak * CHART_WIDTH), 1) if count else 0
        stamp = start.astimezone(UTC).strftime(label)
        if label.endswith("%f"):
            stamp = stamp[:-3]  # milliseconds
        lines.append(f"  {stamp}  {block * length:<{CHART_WIDTH}}  {count}")
    return lines


def _gather(
    store: CheckpointStore, sessions: list[SessionInfo]
) -> tuple[Counter[str], list[datetime]]:
    names: Counter[str] = Counter()
    times: list[datetime] = []
    for info in sessions:
        mgr = store.manager(info.id)
        names.update(mgr.get_summary()["names"])
        times.extend(checkpoint.timestamp for checkpoint in mgr)
    return names, times


@cli.command("stats")
@click.argument("session_id", metavar="[SESSION]", required=False, callback=_identifier)
@_json_option
@click.pass_obj
@_examples(
    "checkpointdb stats demo",
    "checkpointdb stats --json",
)
def stats_command(env: _Env, session_id: str | None, as_json: bool) -> None:
    """Summarise a session (or every session): counts per name, size, span, rate, a chart.

    The size is the live checkpoints' data and metadata JSON (--json:
    payload_bytes, exact). The chart shows how many checkpoints were written
    in each slice of time between the first and the last (UTC).
    """
    store = env.open_store()
    sessions = [_require_session(store, session_id)] if session_id else store.sessions()
    names, times = _gather(store, sessions)
    total = sum(names.values())
    payload_bytes = sum(info.payload_bytes for info in sessions)
    first, last = (min(times), max(times)) if times else (None, None)
    seconds = (last - first).total_seconds() if first and last else 0.0
    timeline = _timeline(times)
    if as_json:
        _emit_json(
            {
                "session_id": session_id,
                "sessions": len(sessions),
                "total_count": total,
                "unique_names": len(names),
                "names": dict(names.most_common()),
                "payload_bytes": payload_bytes,
                "first": first,
                "last": last,
                "duration_seconds": seconds,
                "per_minute": total / seconds * 60 if seconds else None,
                "timeline": [
                    {"start": start, "end": end, "count": count} for start, end, count in timeline
                ],
            }
        )
        return
    scope = f"session {session_id!r}" if session_id else _count(len(sessions), "session")
    click.echo(f"{scope} in {store.where}")
    click.echo(f"  checkpoints  {total} live, {_count(len(names), 'distinct name')}")
    click.echo(f"  size         {_size(payload_bytes)} of data and metadata JSON")
    if first is None or last is None:
        return
    click.echo(f"  span         {_iso(first)} .. {_iso(last)} ({_duration(seconds)})")
    click.echo(f"  rate         {_rate(total, seconds)}")
    click.echo("")
    _print_table(
        ["NAME", "COUNT"], ([name, str(count)] for name, count in names.most_common()), right=(1,)
    )
    click.echo("")
    width = timeline[0][1] - timeline[0][0]
    each = f", {_duration(width.total_seconds())} per row" if width else ""
    click.echo(f"checkpoints over time (UTC{each}):")
    for line in _chart(timeline):
        click.echo(line)


# -- sql ---------------------------------------------------------------------------------------


@cli.command("sql")
@click.argument("query")
@_json_option
@click.pass_obj
@_examples(
    'checkpointdb sql "SELECT name, count(*) FROM checkpoints GROUP BY name"',
    "checkpointdb sql \"SELECT seq, json_extract(data, '$.run') FROM checkpoints\" --json",
)
def sql_command(env: _Env, query: str, as_json: bool) -> None:
    """Run one SQL query on a read-only connection.

    Nothing can be written: INSERT, UPDATE, DELETE, DDL, ATTACH and pragmas
    that set a value are refused, and the database is left unchanged. QUERY
    - reads it from stdin. Tables: sessions, checkpoints (data and metadata
    are JSON: json_extract() on SQLite, ->> on PostgreSQL).
    """
    if query == "-":
        query = sys.stdin.read()
    columns, rows = run_read_only(env.url(), query)
    if as_json:
        _emit_json({"columns": columns, "rows": [list(row) for row in rows]})
        return
    if not columns:
        click.echo("(the statement returned no columns)")
        return
    numeric = {
        index
        for index in range(len(columns))
        if rows and all(isinstance(row[index], int | float | Decimal) for row in rows)
    }
    _print_table(columns, ([_cell(value) for value in row] for row in rows), right=numeric)
    click.echo(f"({_count(len(rows), 'row')})")


# -- db ----------------------------------------------------------------------------------------


@cli.group("db", cls=_Group)
@_examples(
    "checkpointdb --db agent.db db check || checkpointdb --db agent.db db upgrade",
)
def db_group() -> None:
    """Manage the schema: upgrade, current, history, check.

    The same as running alembic from a checkout, with the migrations packaged
    in checkpointdb itself, so it works from an installed wheel.
    """


def _schema_status(database: Database, repository: Repository) -> dict[str, Any]:
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
@_json_option
@click.pass_obj
@_examples(
    "checkpointdb --db agent.db db upgrade",
)
def db_upgrade_command(env: _Env, as_json: bool) -> None:
    """Upgrade the database's schema to the newest revision (creating it if empty).

    Safe to run while agents use the database and from many hosts at once:
    migrations run under a lock, each exactly once. A database written by a
    newer checkpointdb is refused and left unchanged.
    """
    database, repository = env.open_database(create=True)
    before = migrate.current_revision(database, repository)
    migrate.upgrade(database, repository)
    after = migrate.current_revision(database, repository)
    if as_json:
        _emit_json({"database": database.where, "from": before, "to": after})
    elif before == after:
        click.echo(f"{database.where} is already at schema revision {after}; nothing to do")
    elif before is None:
        click.echo(f"created the schema in {database.where} at revision {after}")
    else:
        click.echo(f"upgraded {database.where} from schema revision {before} to {after}")


@db_group.command("current")
@_json_option
@click.pass_obj
@_examples(
    "checkpointdb db current",
    "checkpointdb --db agent.db db current --json",
)
def db_current_command(env: _Env, as_json: bool) -> None:
    """Print the database's schema revision and whether it is the newest.

    A database without a checkpointdb schema exits 1.
    """
    status = _schema_status(*env.open_database())
    if as_json:
        _emit_json(status)
        if status["current"] is None:
            raise click.exceptions.Exit(1)
    elif status["current"] is None:
        raise _CommandError(_describe_status(status))
    else:
        click.echo(_describe_status(status))


@db_group.command("history")
@_json_option
@click.pass_obj
@_examples(
    "checkpointdb db history",
)
def db_history_command(env: _Env, as_json: bool) -> None:
    """List the schema revisions this checkpointdb ships, oldest first.

    The database's current revision is marked when the database exists.
    """
    url = env.url()
    exists = url.get_backend_name() != "sqlite" or Path(str(url.database)).exists()
    current = migrate.current_revision(*env.open_database()) if exists else None
    revisions = [{**entry, "current": entry["revision"] == current} for entry in migrate.history()]
    if as_json:
        _emit_json(revisions)
        return
    head = migrate.head_revision()

    def status(entry: dict[str, Any]) -> str:
        marks = [("current", entry["current"]), ("head", entry["revision"] == head)]
        return ", ".join(mark for mark, on in marks if on)

    _print_table(
        ["REVISION", "DESCRIPTION", "STATUS"],
        ([entry["revision"], entry["message"] or "", status(entry)] for entry in revisions),
    )
    if not exists:
        click.echo(f"(no database at {url.database})")
    elif current is None:
        click.echo(f"({describe(url)} has no checkpointdb schema yet)")


@db_group.command("check")
@_json_option
@click.pass_obj
@_examples(
    "checkpointdb --db agent.db db check && start-agents",
)
def db_check_command(env: _Env, as_json: bool) -> None:
    """Exit 0 if the database's schema is the newest, 1 (saying why) if not.

    For deploy scripts: check before starting agents that open stores with
    auto_upgrade=False.
    """
    status = _schema_status(*env.open_database())
    if as_json:
        _emit_json(status)
        if not status["at_head"]:
            raise click.exceptions.Exit(1)
        return
    if not status["at_head"]:
        raise _CommandError(_describe_status(status))
    click.echo(_describe_status(status))


# -- demo --------------------------------------------------------------------------------------


def _where(store: CheckpointStore) -> str:
    """The database as the user named it: a path relative to here if it is below here."""
    if store.dialect != "sqlite":
        return store.where
    path = Path(str(store.url.database))
    with suppress(ValueError):
        path = path.relative_to(Path.cwd())
    return str(path)


@cli.command("demo")
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
    callback=_identifier,
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
@_examples(
    "checkpointdb demo --crash-at 4    # killed during step 4",
    "checkpointdb demo                 # resumes at step 4 and finishes",
)
def demo_command(
    env: _Env,
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
        env = _Env(db_option)
    store = env.open_store(create=True)
    command = f"checkpointdb demo{env.db_flag()}"
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
    click.echo(f'\nThe checkpoints of session "{session_id}", oldest first:\n')
    lines, _ = _render_table(headers, rows, right=(0, 3, 4))
    for line in lines:
        click.echo(f"  {line}")
    if store.dialect == "sqlite":
        click.echo(
            f"\nThe same rows with SQL: run `sqlite3 {shlex.quote(_where(store))}` and paste\n"
        )
    else:
        click.echo(f"\nThe same rows with SQL: connect with `psql` to {store.where} and paste\n")
    click.echo(textwrap.indent(demo.query(session_id, store.dialect), "  "))
    newest = checkpoints[-1].id if checkpoints else f"{session_id}:1"
    prefix = f"checkpointdb{env.db_flag()}"
    click.echo(
        f"\nMore: `{prefix} sessions`, `{prefix} show {newest}`, `{prefix} stats {session_id}`"
    )
