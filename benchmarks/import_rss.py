"""Peak memory and time of ``checkpointdb import`` on a large export file.

Writes an export file of N checkpoints (default 200,000 of about 540 bytes of
JSON each: 108 MB), then imports it into a fresh SQLite database with the
``checkpointdb`` command in a child process, and prints the child's peak
resident memory (``getrusage(RUSAGE_CHILDREN).ru_maxrss``) and wall time. The
import streams the file, so its peak should stay well under 150 MB however
large the file is.

    python benchmarks/import_rss.py [--checkpoints 200000] [--command "checkpointdb"]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def write_export(path: Path, checkpoints: int) -> None:
    """An export file as CheckpointManager.export() writes it, one entry at a time."""
    with path.open("w", encoding="utf-8") as handle:
        handle.write("[")
        for seq in range(1, checkpoints + 1):
            entry = {
                "id": f"agent:{seq}",
                "name": f"step-{seq % 7}",
                "timestamp": f"2026-01-01T00:00:00.{seq % 1_000_000:06d}+00:00",
                "data": {"step": seq, "notes": "n" * 260, "tools": ["search", "fetch"]},
                "metadata": {"run": "r1", "host": "worker-3"},
            }
            text = json.dumps(entry, indent=2, ensure_ascii=False).replace("\n", "\n  ")
            handle.write(("\n  " if seq == 1 else ",\n  ") + text)
        handle.write("\n]\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=int, default=200_000)
    parser.add_argument("--command", help="how to run checkpointdb (default: its script here)")
    args = parser.parse_args()
    if args.command:
        command = shlex.split(args.command)
    else:
        script = Path(sys.executable).with_name("checkpointdb")
        command = [str(script)] if script.exists() else [sys.executable, "-m", "checkpointdb"]
    with tempfile.TemporaryDirectory() as scratch:
        export = Path(scratch) / "export.json"
        write_export(export, args.checkpoints)
        size = export.stat().st_size
        database = Path(scratch) / "import.db"
        started = time.perf_counter()
        subprocess.run(
            [*command, "--db", str(database), "import", "agent", str(export)],
            check=True,
            stdout=subprocess.DEVNULL,
            env={**os.environ, "CHECKPOINTDB_URL": ""},
        )
        seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # kB on Linux
    print(f"file: {args.checkpoints} checkpoints, {size / 1e6:.1f} MB")
    print(f"import: {seconds:.1f} s, peak RSS {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
