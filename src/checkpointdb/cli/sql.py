"""``sql``: one read-only query, printed as a table or JSON."""

from __future__ import annotations

import sys

import click

from . import output
from .common import Env, examples, json_option, verbatim


@click.command("sql")
@click.argument("query")
@json_option
@click.pass_obj
@examples(
    'checkpointdb sql "SELECT name, count(*) FROM checkpoints GROUP BY name"',
    'checkpointdb sql "SELECT id, created_at FROM checkpoint_view WHERE pinned" --json',
)
@verbatim(
    "Views:",
    "checkpoint_view  one row per live checkpoint: id, session_id, seq, parent_id,",
    "                 name, created_at, payload_bytes, pinned, data, metadata",
    "session_view     one row per session: id, checkpoint_count, last_seq,",
    "                 payload_bytes, created_at, updated_at,",
    "                 first_checkpoint_at, last_checkpoint_at, metadata,",
    "                 forked_from, max_checkpoints, compress_after, keep_recent",
)
def sql_command(env: Env, query: str, as_json: bool) -> None:
    """Run one SQL query on a read-only connection.

    Nothing can be written: INSERT, UPDATE, DELETE, DDL, ATTACH and pragmas
    that set a value are refused, and the database is left unchanged. QUERY
    - reads it from stdin. Tables: sessions, checkpoints (data and metadata
    are JSON: json_extract() on SQLite, ->> on PostgreSQL). Two views give
    the same columns on SQLite and PostgreSQL, times as text such as
    2026-11-26T18:30:00.123456Z.
    """
    from decimal import Decimal

    from ..readonly import run_read_only

    if query == "-":
        query = sys.stdin.read()
    columns, rows = run_read_only(env.url(), query)
    if as_json:
        output.emit_json({"columns": columns, "rows": [list(row) for row in rows]})
        return
    if not columns:
        output.line("(the statement returned no columns)")
        return
    numeric = {
        index
        for index in range(len(columns))
        if rows and all(isinstance(row[index], int | float | Decimal) for row in rows)
    }
    wide_first = sorted(
        (index for index in range(len(columns)) if index not in numeric),
        key=lambda index: -max((len(output.cell(row[index])) for row in rows), default=0),
    )
    output.print_table(
        columns,
        ([output.cell(value) for value in row] for row in rows),
        right=numeric,
        give_way=wide_first,
    )
    output.line(f"({output.count(len(rows), 'row')})")


COMMANDS = (sql_command,)
