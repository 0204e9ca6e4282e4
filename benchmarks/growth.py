"""Storage growth: does a long-running agent's database stop growing?

An agent loop creates N checkpoints (default 200,000) of about 2 KB of JSON
each into one session with the default policy (compress_after=50,
keep_recent=20, max_checkpoints=100), on a fresh SQLite file with default
settings. Every N/20 creates it records the database file size, the WAL size
and the live checkpoint count. Compaction deletes rows in the same
transaction as the insert and SQLite reuses the freed pages, so the file
should reach a plateau after the first few hundred creates and stay there.

    python benchmarks/growth.py [--creates 200000] [--results benchmarks/GROWTH.md]

Prints a table, the growth between the first sample and the last, and writes
the same to the results file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from checkpointdb import CheckpointStore, __version__


def payload(i: int) -> dict[str, object]:
    """About 2 KB of agent-like state that changes with every step."""
    return {
        "step": i,
        "messages": [{"role": "tool", "content": f"result {i} " + "x" * 180} for _ in range(8)],
        "scratch": {"cursor": i % 97, "seen": list(range(i % 13))},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--creates", type=int, default=200_000)
    parser.add_argument(
        "--results", type=Path, default=Path(__file__).with_name("GROWTH.md"), help="output file"
    )
    args = parser.parse_args()
    every = max(args.creates // 20, 1)

    with tempfile.TemporaryDirectory() as workdir:
        path = Path(workdir) / "growth.db"
        rows: list[tuple[int, int, int, int, float]] = []
        with CheckpointStore(path) as store:
            mgr = store.manager("agent")
            start = time.perf_counter()
            for i in range(1, args.creates + 1):
                mgr.create("tool_done" if i % 3 else "plan", payload(i))
                if i % every == 0:
                    wal = Path(f"{path}-wal")
                    rows.append(
                        (
                            i,
                            path.stat().st_size,
                            wal.stat().st_size if wal.exists() else 0,
                            len(mgr),
                            time.perf_counter() - start,
                        )
                    )
        payload_bytes = len(json.dumps(payload(1), separators=(",", ":")))

    lines = [
        "# Storage growth",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, checkpointdb {__version__}, SQLite "
        f"{sqlite3.sqlite_version}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs. Method: see the docstring of benchmarks/growth.py "
        f"(payload about {payload_bytes} bytes, default policy).",
        "",
        "| creates | file bytes | WAL bytes | live checkpoints | elapsed s |",
        "|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {i:,} | {f:,} | {w:,} | {n} | {t:.1f} |" for i, f, w, n, t in rows]
    first, last = rows[0][1], rows[-1][1]
    lines += [
        "",
        f"File size after {rows[0][0]:,} creates: {first:,} bytes; after {rows[-1][0]:,}: "
        f"{last:,} bytes ({last / first:.2f}x).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    args.results.write_text(text)


if __name__ == "__main__":
    main()
