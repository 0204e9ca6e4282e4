"""How the command behaves as a program: start-up, width, colour, errors, pipes, Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from checkpointdb import CheckpointStore, cli
from checkpointdb.cli import output
from checkpointdb.readonly import run_read_only


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    result = CliRunner().invoke(cli.cli, list(args), env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "checkpointdb", *args]


@pytest.mark.parametrize(
    "args", [["--help"], ["--version"], ["list", "--help"], ["sql", "--help"], ["demo", "--help"]]
)
def test_help_and_version_do_not_import_sqlalchemy(args: list[str]) -> None:
    probe = (
        "import sys\n"
        "from checkpointdb.cli import main\n"
        f"sys.argv = ['checkpointdb', *{args!r}]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert exc.code in (0, None), exc.code\n"
        "print('LOADED', sorted(m for m in sys.modules if m.split('.')[0] == 'sqlalchemy'))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "LOADED []"


def test_every_time_is_printed_one_way(store_with_times: tuple[str, str]) -> None:
    database, session = store_with_times
    iso_z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
    shown = invoke("--db", database, "show", f"{session}:1").stdout
    assert iso_z.search(shown.split("created", 1)[1]).group(0) == "2026-01-01T12:00:00.250000Z"
    listed = invoke("--db", database, "list", session).stdout
    assert "2026-01-01T12:00:00.250000Z" in listed
    sessions = invoke("--db", database, "sessions").stdout
    assert "2026-01-01T12:00:00.250000Z" in sessions
    as_json = json.loads(invoke("--db", database, "list", session, "--json").stdout)
    assert as_json[-1]["timestamp"] == "2026-01-01T12:00:00.250000Z"
    stats = json.loads(invoke("--db", database, "stats", session, "--json").stdout)
    assert stats["first"] == "2026-01-01T12:00:00.250000Z"
    view = run_read_only(database, "SELECT created_at FROM checkpoint_view ORDER BY seq")
    assert view[1][0][0] == "2026-01-01T12:00:00.250000Z"


@pytest.fixture
def store_with_times(tmp_path: Path) -> tuple[str, str]:
    database = str(tmp_path / "times.db")
    document = [
        {"id": "t:1", "name": "a", "timestamp": "2026-01-01T13:00:00.25+01:00", "data": {}},
        {"id": "t:2", "name": "b", "timestamp": "2026-01-01T12:30:00+00:00", "data": {}},
    ]
    with CheckpointStore(database) as store:
        store.manager("t").import_checkpoints(json.dumps(document))
    return database, "t"


def test_tables_fit_the_terminal_cutting_data_first(tmp_path: Path) -> None:
    database = str(tmp_path / "wide.db")
    with CheckpointStore(database) as store:
        store.manager("s").create("plan", {"text": "word " * 40})
    narrow = invoke("--db", database, "list", "s", env={"COLUMNS": "70"}).stdout.splitlines()
    table = narrow[:3]
    assert max(len(line) for line in table) <= 70
    assert table[2].startswith("s:1  plan  ")  # id and name whole: DATA gave way
    assert table[2].endswith("…")
    assert "--json shows them whole" in narrow[-1]
    piped = invoke("--db", database, "list", "s").stdout.splitlines()
    assert len(piped[2]) > 70  # a pipe has no width to fit


def test_colour_only_on_a_terminal_and_never_with_no_color(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = str(tmp_path / "c.db")
    with CheckpointStore(database) as store:
        store.manager("s").create("plan", {})
    assert "\x1b[" not in invoke("--db", database, "sessions").stdout
    monkeypatch.setattr(output, "stdout_is_terminal", lambda: True)
    monkeypatch.delenv("NO_COLOR", raising=False)
    lines, _ = output.render_table(["A", "B"], [["1", "2"]])
    assert lines[0].startswith("\x1b[1m")
    monkeypatch.setenv("NO_COLOR", "1")
    lines, _ = output.render_table(["A", "B"], [["1", "2"]])
    assert "\x1b[" not in "".join(lines)


def test_a_mistyped_command_is_suggested_with_single_punctuation() -> None:
    result = invoke("sesions")
    assert result.exit_code == 2
    message = result.stderr.strip()
    assert "Did you mean 'sessions'?" in message
    assert "?." not in message and ".." not in message


def test_sql_help_lists_the_views_with_their_live_columns(sqlite_path: Path) -> None:
    CheckpointStore(sqlite_path).close()
    shown = invoke("sql", "--help").stdout
    views = shown.split("Views:\n", 1)[1].split("\n\n", 1)[0]
    described: dict[str, list[str]] = {}
    current = ""
    for line in views.splitlines():
        head, _, rest = line.strip().partition(": ") if ": " in line else ("", "", line)
        if head:
            current = head.split()[0]
        described.setdefault(current, []).extend(
            part.strip() for part in rest.split(",") if part.strip()
        )
    for view in ("checkpoint_view", "session_view"):
        columns, _ = run_read_only(sqlite_path, f"SELECT * FROM {view} LIMIT 0")
        assert described[view] == columns, view


def test_a_closed_pipe_ends_the_command_quietly(tmp_path: Path) -> None:
    database = tmp_path / "many.db"
    with CheckpointStore(database) as store:
        mgr = store.manager("s", max_checkpoints=None, compress_after=None)
        for i in range(3000):
            mgr.create("step", {"i": i, "text": "x" * 40})
    listing = subprocess.Popen(
        command("--db", str(database), "list", "s", "--limit", "0"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert listing.stdout is not None and listing.stderr is not None
    listing.stdout.readline()
    listing.stdout.close()  # what `| head -1` does
    status = listing.wait(timeout=60)
    assert listing.stderr.read() == b""
    assert status == 141


def test_ctrl_c_exits_130_in_one_line(monkeypatch: pytest.MonkeyPatch, sqlite_path: Path) -> None:
    CheckpointStore(sqlite_path).close()

    def interrupted(self: CheckpointStore) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(CheckpointStore, "sessions", interrupted)
    result = invoke("--db", str(sqlite_path), "sessions")
    assert result.exit_code == 130
    assert len(result.stderr.strip().splitlines()) == 1
    assert "interrupted" in result.stderr


def test_ctrl_c_during_an_import_writes_nothing(tmp_path: Path) -> None:
    database = tmp_path / "target.db"
    CheckpointStore(database).close()
    fifo = tmp_path / "export.fifo"
    os.mkfifo(fifo)
    importing = subprocess.Popen(
        command("--db", str(database), "import", "s", str(fifo)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    entry = {"id": "x:1", "name": "n", "timestamp": "2026-01-01T00:00:00+00:00", "data": {}}
    with fifo.open("w") as writer:  # opens once the import is reading
        writer.write("[" + ",".join(json.dumps({**entry, "id": f"x:{i}"}) for i in range(1, 500)))
        writer.flush()
        time.sleep(1.0)  # the import has read those and waits for more
        importing.send_signal(signal.SIGINT)
        status = importing.wait(timeout=60)
    assert status == 130, importing.stderr.read() if importing.stderr else ""
    assert importing.stderr is not None
    assert len(importing.stderr.read().strip().splitlines()) == 1
    with CheckpointStore(database) as store:
        assert store.session("s") is None
