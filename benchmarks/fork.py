"""Forking a large session: ``mgr.fork(last, new, history="all")`` on SQLite.

Builds one session of N checkpoints (default 100,000, ~100-byte payloads,
written with ``create_many`` in batches), then forks its newest checkpoint
into a fresh session RUNS times and prints each time and the median. The
copy is one ``INSERT ... SELECT`` renumbering rows with ROW_NUMBER() and
remapping parent links, so no row passes through Python.

    python benchmarks/fork.py [N] [RUNS]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from checkpointdb import CheckpointStore

BATCH = 5_000


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    with tempfile.TemporaryDirectory() as tmp, CheckpointStore(Path(tmp) / "fork.db") as store:
        mgr = store.manager("source", max_checkpoints=None, compress_after=None)
        for start in range(0, count, BATCH):
            mgr.create_many(
                [(f"step-{i % 7}", {"i": i, "text": "x" * 80}) for i in range(start, start + BATCH)]
            )
        last = mgr.get_latest()
        assert last is not None
        times = []
        for run in range(runs):
            began = time.perf_counter()
            forked = mgr.fork(last.id, f"fork-{run}", history="all")
            times.append(time.perf_counter() - began)
            assert len(forked) == count
        print(f"fork of {count:,} checkpoints (history='all'), SQLite, {runs} runs:")
        print("  " + ", ".join(f"{t:.3f}s" for t in times))
        print(f"  median {statistics.median(times):.3f}s")


if __name__ == "__main__":
    main()
