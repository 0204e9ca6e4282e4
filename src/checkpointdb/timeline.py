"""When checkpoints were written: counts per equal slice of time, without reading payloads."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class TimeSlice:
    """Checkpoints created in ``[start, end)`` (the last slice includes its end)."""

    start: datetime
    end: datetime
    count: int


@dataclass(frozen=True)
class Timeline:
    """Live checkpoints over time, from :meth:`CheckpointStore.timeline`.

    Attributes:
        count: live checkpoints counted.
        first: the oldest created_at, or None if there is no checkpoint.
        last: the newest created_at, or None.
        slices: counts per equal slice of time from ``first`` to ``last``;
            a single slice when every checkpoint has the same time; empty
            when there is none.
    """

    count: int
    first: datetime | None
    last: datetime | None
    slices: list[TimeSlice]


def build_timeline(
    times: Iterable[datetime], first: datetime, last: datetime, count: int, slices: int
) -> Timeline:
    """Count ``times`` (``count`` of them, from ``first`` to ``last``) into at most ``slices``."""
    rows = max(1, min(slices, count))
    step = (last - first) / rows
    if not step:
        return Timeline(count, first, last, [TimeSlice(first, last, count)])
    counts = [0] * rows
    for moment in times:
        counts[min(int((moment - first) / step), rows - 1)] += 1
    return Timeline(
        count,
        first,
        last,
        [TimeSlice(first + step * i, first + step * (i + 1), n) for i, n in enumerate(counts)],
    )
