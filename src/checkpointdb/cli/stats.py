"""``stats``: counts per name, size, span, rate and a chart of checkpoints over time."""

from __future__ import annotations

import sys
from collections import Counter
from datetime import UTC, timedelta
from typing import TYPE_CHECKING

import click

from . import output
from .common import Env, examples, identifier, json_option, require_session

if TYPE_CHECKING:
    from ..timeline import TimeSlice

# Rows in the chart, and the width of its longest bar.
CHART_ROWS = 12
CHART_WIDTH = 40


def _rate(number: int, seconds: float) -> str:
    if seconds <= 0:
        return "n/a (a single instant)"
    for unit, length in (("second", 1), ("minute", 60), ("hour", 3600)):
        per = number / seconds * length
        if per >= 1:
            return f"{per:.1f} per {unit}"
    return f"{number / seconds * 86400:.1f} per day"


def _chart(slices: list[TimeSlice]) -> list[str]:
    width = slices[0].end - slices[0].start
    if not width:  # every checkpoint at one instant
        label = "%Y-%m-%d %H:%M:%S.%f"
    elif width < timedelta(seconds=1):
        label = "%H:%M:%S.%f"
    elif width < timedelta(days=1) and slices[-1].end - slices[0].start < timedelta(days=1):
        label = "%H:%M:%S"
    else:
        label = "%Y-%m-%d %H:%M"
    peak = max(part.count for part in slices)
    block = "█" if "█".encode(sys.stdout.encoding or "ascii", "ignore") else "#"
    lines = []
    for part in slices:
        length = max(round(part.count / peak * CHART_WIDTH), 1) if part.count else 0
        stamp = part.start.astimezone(UTC).strftime(label)
        if label.endswith("%f"):
            stamp = stamp[:-3]  # milliseconds
        lines.append(f"  {stamp}  {block * length:<{CHART_WIDTH}}  {part.count}")
    return lines


@click.command("stats")
@click.argument("session_id", metavar="[SESSION]", required=False, callback=identifier)
@json_option
@click.pass_obj
@examples(
    "checkpointdb stats demo",
    "checkpointdb stats --json",
)
def stats_command(env: Env, session_id: str | None, as_json: bool) -> None:
    """Summarise a session (or every session): counts per name, size, span, rate, a chart.

    The size is the live checkpoints' data and metadata JSON (--json:
    payload_bytes, exact). The chart shows how many checkpoints were written
    in each slice of time between the first and the last (UTC). Only names
    and times are read, never the checkpoints' data.
    """
    store = env.open_store()
    sessions = [require_session(store, session_id)] if session_id else store.sessions()
    names: Counter[str] = Counter()
    for info in sessions:
        names.update(store.manager(info.id).get_summary()["names"])
    timeline = store.timeline(session_id, slices=CHART_ROWS)
    total = sum(names.values())
    payload_bytes = sum(info.payload_bytes for info in sessions)
    first, last = timeline.first, timeline.last
    seconds = (last - first).total_seconds() if first and last else 0.0
    if as_json:
        output.emit_json(
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
                    {"start": part.start, "end": part.end, "count": part.count}
                    for part in timeline.slices
                ],
            }
        )
        return
    scope = f"session {session_id!r}" if session_id else output.count(len(sessions), "session")
    output.line(f"{scope} in {store.where}")
    output.line(f"  checkpoints  {total} live, {output.count(len(names), 'distinct name')}")
    output.line(f"  size         {output.size(payload_bytes)} of data and metadata JSON")
    if first is None or last is None:
        return
    output.line(
        f"  span         {output.format_time(first)} .. {output.format_time(last)} "
        f"({output.duration(seconds)})"
    )
    output.line(f"  rate         {_rate(total, seconds)}")
    output.line()
    output.print_table(
        ["NAME", "COUNT"],
        ([name, str(number)] for name, number in names.most_common()),
        right=(1,),
        give_way=(0,),
    )
    output.line()
    width = timeline.slices[0].end - timeline.slices[0].start
    each = f", {output.duration(width.total_seconds())} per row" if width else ""
    output.line(f"checkpoints over time (UTC{each}):")
    for text in _chart(timeline.slices):
        output.line(text)


COMMANDS = (stats_command,)
