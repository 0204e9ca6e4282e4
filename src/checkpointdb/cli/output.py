"""The one way every command prints: tables and text for people, ``--json`` for scripts.

Times are printed one way everywhere, tables and JSON alike: ISO 8601 in
UTC with microseconds and a ``Z`` (2026-11-26T18:30:00.123456Z), the text the
``checkpoint_view`` and ``session_view`` views show. The one exception is
the export format (``export``), which is :meth:`Checkpoint.to_dict`'s.

Tables fit the terminal when stdout is one (or ``$COLUMNS`` is set): the
column marked to give way (a checkpoint's DATA, say) is cut first. Headers
are bold on a terminal unless ``$NO_COLOR`` is set; pipes get plain text.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import click

# Below this many rows (or bytes, for import) the work is over before a
# progress bar could be read, so none is drawn.
PROGRESS_MIN_ROWS = 2000
PROGRESS_MIN_BYTES = 4 * 1024 * 1024
# Table cells longer than this are cut (``--json`` gives them whole).
CELL_WIDTH = 60
# A column that gives way to fit the terminal keeps at least this many characters.
MIN_COLUMN_WIDTH = 8
COLUMN_GAP = "  "
# Items of a streamed JSON list written (and flushed) at a time.
_JSON_ITEMS_PER_WRITE = 200


def stdout_is_terminal() -> bool:
    """Whether a person reads stdout (not a pipe or a file)."""
    return sys.stdout.isatty()


def stderr_is_terminal() -> bool:
    """Whether a person reads stderr, where progress is drawn."""
    return sys.stderr.isatty()


def stdin_is_terminal() -> bool:
    """Whether a person could answer a question on stdin."""
    return sys.stdin.isatty()


def colour_wanted() -> bool:
    """Colour only for a terminal, and never when $NO_COLOR is set (https://no-color.org)."""
    return stdout_is_terminal() and not os.environ.get("NO_COLOR")


def table_width() -> int | None:
    """The width tables must fit: the terminal's, or $COLUMNS; None (no limit) for a pipe."""
    if stdout_is_terminal() or os.environ.get("COLUMNS"):
        return shutil.get_terminal_size().columns
    return None


def progress_wanted(size: int, threshold: int) -> bool:
    """Draw progress only for people (stderr is a terminal) and only for long work."""
    return size >= threshold and stderr_is_terminal()


# -- values --------------------------------------------------------------------------------


def format_time(moment: datetime) -> str:
    """The CLI's one time format: ISO 8601, UTC, microseconds, ``Z`` (paste it into --since)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def size(count: int) -> str:
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


def count(number: int, noun: str) -> str:
    """``1 checkpoint``, ``2 checkpoints``."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def age_text(span: timedelta) -> str:
    """An age as --older-than takes it, in its largest whole unit: 30d, 36h, 90s."""
    seconds = int(span.total_seconds())
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % length == 0:
            return f"{seconds // length}{unit}"
    return f"{seconds}s"


def duration(seconds: float) -> str:
    """A span of time for people: 12.0 s, 3.5 min, 5.0 h, 2.0 days."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def yes_no(flag: bool) -> str:
    """A flag in a table."""
    return "yes" if flag else "no"


# Control characters (C0, DEL, C1) shown as escapes, so stored text cannot
# move the cursor, recolour or retitle the terminal.
_CONTROL_ESCAPES = {
    code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0))
}


def cell(value: Any) -> str:
    """A value as a person reads it in a table (control characters escaped)."""
    return _cell(value).translate(_CONTROL_ESCAPES)


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return "x'" + bytes(value).hex() + "'"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)  # Decimal, UUID: exact as text


# -- printing ------------------------------------------------------------------------------


def emit_json(value: Any) -> None:
    """Print ``value`` as JSON for scripts (times in the CLI's one format)."""
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=_json_default))


def emit_json_streaming(head: dict[str, Any], key: str, items: Iterable[Any]) -> None:
    """Print ``head`` with ``key: [items]`` added, as :func:`emit_json` would, item by item.

    The text is the same as ``emit_json({**head, key: list(items)})``, but
    only a batch of items is held at a time, so a reader of the pipe gets the
    first ones while later ones are still being fetched.
    """
    opening = json.dumps(head, indent=2, ensure_ascii=False, default=_json_default)
    # "{...\n}" becomes "{...,\n  "key": [" (or "{\n  "key": [" for an empty head).
    prefix = opening[:-2] + ",\n" if head else "{\n"
    pending = [prefix + "  " + json.dumps(key, ensure_ascii=False) + ": ["]
    written = 0
    for item in items:
        text = json.dumps(item, indent=2, ensure_ascii=False, default=_json_default)
        pending.append(("," if written else "") + "\n    " + text.replace("\n", "\n    "))
        written += 1
        if len(pending) >= _JSON_ITEMS_PER_WRITE:
            click.echo("".join(pending), nl=False)
            pending.clear()
    pending.append("\n  ]\n}" if written else "]\n}")
    click.echo("".join(pending))


def line(text: str = "") -> None:
    """Print one line of text for people."""
    click.echo(text)


def note(message: str) -> None:
    """A status line for the person at the terminal; stdout stays clean for pipes."""
    click.echo(message, err=True)


def _cut(text: str, width: int) -> tuple[str, bool]:
    text = text.replace("\n", " ")
    if len(text) <= width:
        return text, False
    return text[: max(width - 1, 0)] + "…", True


def _fit(widths: list[int], limit: int | None, give_way: Sequence[int]) -> list[int]:
    """Column widths narrowed, ``give_way`` columns first, to fit ``limit`` characters."""
    if limit is None:
        return widths
    fitted = list(widths)
    excess = sum(fitted) + len(COLUMN_GAP) * (len(fitted) - 1) - limit
    for index in give_way:
        if excess <= 0:
            break
        take = min(excess, max(fitted[index] - MIN_COLUMN_WIDTH, 0))
        fitted[index] -= take
        excess -= take
    return fitted


def render_table(
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    right: Iterable[int] = (),
    give_way: Sequence[int] = (),
    width: int | None = None,
) -> tuple[list[str], bool]:
    """Lines of an aligned text table, and whether any cell had to be cut.

    ``give_way`` lists the columns that narrow, in that order, to make the
    table fit ``width`` characters (None: no limit).
    """
    cells = [[text.replace("\n", " ") for text in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in cells:
        widths = [
            max(column, min(len(value), CELL_WIDTH))
            for column, value in zip(widths, row, strict=True)
        ]
    widths = _fit(widths, width, give_way)
    cut_any = False
    for row in cells:
        for index, value in enumerate(row):
            row[index], was_cut = _cut(value, widths[index])
            cut_any = cut_any or was_cut
    right_aligned = set(right)
    bold = colour_wanted()

    def render(values: Sequence[str], header: bool = False) -> str:
        parts = [
            value.rjust(column) if index in right_aligned else value.ljust(column)
            for index, (value, column) in enumerate(zip(values, widths, strict=True))
        ]
        text = COLUMN_GAP.join(parts).rstrip()
        return click.style(text, bold=True) if header and bold else text

    heads = [_cut(header, column)[0] for header, column in zip(headers, widths, strict=True)]
    lines = [render(heads, header=True), render(["-" * column for column in widths])]
    return [*lines, *map(render, cells)], cut_any


def print_table(
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    right: Iterable[int] = (),
    give_way: Sequence[int] = (),
    indent: str = "",
) -> None:
    """Print a table fitted to the terminal, and say so when values were cut."""
    width = table_width()
    if width is not None:
        width -= len(indent)
    lines, cut_any = render_table(headers, rows, right, give_way, width)
    for text in lines:
        click.echo(indent + text)
    if cut_any:
        click.echo("(long values are cut to fit; --json shows them whole)")
