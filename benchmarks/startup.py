"""Start-up time of `checkpointdb --help` and `--version`, against `python -c pass`.

Each command runs ``--runs`` times (default 15) as a fresh process, after
one warm-up run so the page cache holds the files; the script prints the
median and the fastest wall time of each, and the median's ratio to the bare
interpreter's. ``--help`` must stay well under 150 ms: it loads click and the
CLI package, never SQLAlchemy (tests/test_cli_startup.py checks that).

    python benchmarks/startup.py [--runs 15] [--command "python -m checkpointdb"]

By default the command is the ``checkpointdb`` script next to this Python.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path


def timings(argv: list[str], runs: int) -> list[float]:
    """Wall seconds of ``runs`` fresh processes running ``argv`` (after one warm-up)."""
    subprocess.run(argv, check=True, capture_output=True)
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        seconds.append(time.perf_counter() - started)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--command", help="how to run checkpointdb (default: its script here)")
    args = parser.parse_args()
    if args.command:
        command = shlex.split(args.command)
    else:
        script = Path(sys.executable).with_name("checkpointdb")
        command = [str(script)] if script.exists() else [sys.executable, "-m", "checkpointdb"]
    cases = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "checkpointdb --help": [*command, "--help"],
        "checkpointdb --version": [*command, "--version"],
    }
    medians = {}
    print(f"{'command':<26} {'median':>9} {'fastest':>9} {'ratio':>7}")
    for label, argv in cases.items():
        seconds = timings(argv, args.runs)
        medians[label] = statistics.median(seconds)
        ratio = medians[label] / medians["python -c pass"]
        print(
            f"{label:<26} {medians[label] * 1000:7.1f} ms {min(seconds) * 1000:7.1f} ms"
            f" {ratio:6.1f}x"
        )


if __name__ == "__main__":
    main()
