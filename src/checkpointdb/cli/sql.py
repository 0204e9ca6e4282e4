"""``sql``: one read-only query, printed as a table or JSON."""

from __future__ import annotations

import sys
from itertools import islice

import click

from . import output
from .common import Env, examples, json_option, verbatim


@click.command("sql")
@click.argument("query")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="Seconds the query may run before the database stops it.",
)
@click.option(
    "--max-rows",
    type=click.IntRange(min=1, max=2**63 - 2),
    default=10_000,
    show_default=True,
    help="Print at most this many rows (a note says when more were left out).",
)
@click.option(
    "--url",
    envvar="CHECKPOINTDB_SQL_URL",
    metavar="URL",
    help="Run the query on this database URL instead of --db ($CHECKPOINTDB_SQL_URL): on "
    "PostgreSQL, one that logs in as a role that may only SELECT (`checkpointdb db "
    "create-reader` makes one).",
)
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
def sql_command(
    env: Env, query: str, timeout: float, max_rows: int, url: str | None, as_json: bool
) -> None:
    """Run one SQL query on a read-only connection.

    Nothing can be written: INSERT, UPDATE, DELETE, DDL, ATTACH and pragmas
    that set a value are refused, and the database is left unchanged (an
    SQLite file byte for byte, with no -wal or -shm left beside it). On
    PostgreSQL, functions that act outside the transaction are stopped only
    by a role that may just SELECT (db create-reader): give its URL with
    --url. The query is stopped after --timeout seconds (Ctrl-C stops it too); at most
    --max-rows rows are printed (--json prints them as they are fetched).
    QUERY - reads it from stdin. Tables: sessions, checkpoints (data and
    metadata are JSON: json_extract() on SQLite, ->> on PostgreSQL). Two
    views give the same columns on SQLite and PostgreSQL, times as text
    such as 2026-11-26T18:30:00.123456Z.
    """
    from decimal import Decimal

    from ..engine import resolve_url
    from ..readonly import read_only_query

    if query == "-":
        query = sys.stdin.read()
    note = f"(only the first {output.count(max_rows, 'row')}: raise --max-rows for more)"
    target = resolve_url(url) if url else env.url()
    with read_only_query(target, query, timeout=timeout) as (columns, fetched):
        if as_json:
            output.emit_json_streaming({"columns": columns}, "rows", islice(fetched, max_rows))
            if next(fetched, None) is not None:
                click.echo(note, err=True)
            return
        rows = list(islice(fetched, max_rows + 1))
    cut = len(rows) > max_rows
    rows = rows[:max_rows]
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
    output.line(note if cut else f"({output.count(len(rows), 'row')})")


COMMANDS = (sql_command,)
