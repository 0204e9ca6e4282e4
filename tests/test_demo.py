"""The demo as a person runs it: a real process, killed in the middle of a step, resumed."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from checkpointdb import CheckpointStore, cli, demo
from checkpointdb.cli.common import runnable_command
from checkpointdb.readonly import run_read_only

STEP_NAMES = [step.name for step in demo.STEPS]
DONE_LINE = re.compile(r"^  step (\d+)/\d+  .*done -> checkpoint (\S+)  \(", re.MULTILINE)
SKIPPED_LINE = re.compile(r"^  step (\d+)/\d+  .*already done in run (\d+): skipped$", re.MULTILINE)


def run_demo(
    *args: str, cwd: Path, pace: str = "0", path: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m checkpointdb demo ...`` in its own process, as a user would run it."""
    env = {key: value for key, value in os.environ.items() if key != "CHECKPOINTDB_URL"}
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [sys.executable, "-m", "checkpointdb", "demo", "--pace", pace, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def printed_table(stdout: str) -> list[list[str]]:
    """The rows of the checkpoint table the demo prints at the end."""
    after = stdout.split("oldest first:\n\n", 1)[1]
    lines = after.split("\n\n", 1)[0].splitlines()
    assert lines[0].split() == ["seq", "name", "created_at", "run", "steps_done"]
    return [line.split() for line in lines[2:]]


def printed_query(stdout: str) -> str:
    """The SQL the demo tells the reader to paste."""
    after = stdout.split("and paste\n\n", 1)[1]
    return textwrap.dedent(after.split("\n\n", 1)[0])


def state_of(store: CheckpointStore, session_id: str = "demo") -> dict[str, Any]:
    latest = store.manager(session_id).get_latest()
    assert latest is not None
    return latest.data


@pytest.mark.parametrize("crash_at", [1, 4, len(demo.STEPS)])
def test_demo_killed_in_a_step_resumes_and_does_every_step_once(
    tmp_path: Path, crash_at: int
) -> None:
    crashed = run_demo("--crash-at", str(crash_at), cwd=tmp_path)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert f"CRASH (--crash-at {crash_at})" in crashed.stdout
    assert [int(n) for n, _ in DONE_LINE.findall(crashed.stdout)] == list(range(1, crash_at))
    database = tmp_path / "checkpoints.db"  # the default, in the current directory
    with CheckpointStore(database) as store:
        names = [cp.name for cp in store.manager("demo")]
        assert names == ["started", *STEP_NAMES[: crash_at - 1]]
        assert [entry["step"] for entry in state_of(store)["done"]] == STEP_NAMES[: crash_at - 1]

    resumed = run_demo(cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "was interrupted" in resumed.stdout
    if crash_at == 1:
        assert "and starts at step 1: it records no step as done." in resumed.stdout
    else:
        assert f"and skips the {crash_at - 1} steps it records as done." in resumed.stdout
    skipped = [(int(n), int(run)) for n, run in SKIPPED_LINE.findall(resumed.stdout)]
    assert skipped == [(n, 1) for n in range(1, crash_at)]
    done = DONE_LINE.findall(resumed.stdout)
    assert [int(n) for n, _ in done] == list(range(crash_at, len(STEP_NAMES) + 1))
    assert "each exactly once" in resumed.stdout

    with CheckpointStore(database) as store:
        mgr = store.manager("demo")
        checkpoints = mgr.get_all()
        # Every step was done once, in order, and by the run the output says.
        assert [cp.name for cp in checkpoints] == [
            "started",
            *STEP_NAMES[: crash_at - 1],
            "resumed",
            *STEP_NAMES[crash_at - 1 :],
        ]
        assert state_of(store)["done"] == [
            {"step": name, "run": 1 if number < crash_at else 2}
            for number, name in enumerate(STEP_NAMES, 1)
        ]
        assert demo.is_complete(state_of(store))
        # The two runs were two processes.
        pids: dict[int, set[int]] = {}
        for cp in checkpoints:
            pids.setdefault(cp.metadata["run"], set()).add(cp.metadata["pid"])
        assert all(len(found) == 1 for found in pids.values())
        assert pids[1] != pids[2]
        # Each "done -> checkpoint ID" line names a stored checkpoint of that step.
        for number, checkpoint_id in done:
            stored = mgr.get(checkpoint_id)
            assert stored is not None
            assert stored.name == STEP_NAMES[int(number) - 1]
            assert stored.metadata["step"] == int(number)

    # The printed table is what the database holds, and the printed query returns it.
    table = printed_table(resumed.stdout)
    assert [row[1] for row in table] == [cp.name for cp in checkpoints]
    query = printed_query(resumed.stdout)
    assert f"sqlite3 {database.name}` and paste" in resumed.stdout
    with sqlite3.connect(database) as raw:
        rows = raw.execute(query).fetchall()
    raw.close()
    assert [[str(value) for value in row] for row in rows] == table
    sqlite3_cli = shutil.which("sqlite3")
    if sqlite3_cli:
        pasted = subprocess.run(
            [sqlite3_cli, database.name],
            input=query,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=True,
        )
        assert [line.split("|") for line in pasted.stdout.splitlines()] == table


def test_two_crashes_then_a_finish_record_which_run_did_each_step(tmp_path: Path) -> None:
    assert run_demo("--crash-at", "3", cwd=tmp_path).returncode == -signal.SIGKILL
    assert run_demo("--crash-at", "5", cwd=tmp_path).returncode == -signal.SIGKILL
    finished = run_demo("--crash-at", "2", cwd=tmp_path)
    assert finished.returncode == 0
    assert "--crash-at 2: step 2 is already done; nothing to interrupt" in finished.stdout
    assert "steps 1-2 in run 1, steps 3-4 in run 2, steps 5-7 in run 3" in finished.stdout
    with CheckpointStore(tmp_path / "checkpoints.db") as store:
        runs = [entry["run"] for entry in state_of(store)["done"]]
        names = [cp.name for cp in store.manager("demo")]
    assert runs == [1, 1, 2, 2, 3, 3, 3]
    assert names.count("resumed") == 2
    assert sorted(name for name in names if name in STEP_NAMES) == sorted(STEP_NAMES)


def test_a_finished_demo_says_so_and_adds_nothing_until_restarted(tmp_path: Path) -> None:
    first = run_demo(cwd=tmp_path)
    assert first.returncode == 0
    assert "is new: run 1 starts at step 1" in first.stdout
    again = run_demo("--crash-at", "3", cwd=tmp_path)
    assert again.returncode == 0
    assert 'Session "demo" is already complete' in again.stdout
    assert "--restart" in again.stdout
    assert printed_table(again.stdout) == printed_table(first.stdout)
    with CheckpointStore(tmp_path / "checkpoints.db") as store:
        assert len(store.manager("demo")) == 1 + len(STEP_NAMES)
    restarted = run_demo("--restart", cwd=tmp_path)
    assert restarted.returncode == 0
    assert f'Deleted session "demo" ({1 + len(STEP_NAMES)} checkpoints)' in restarted.stdout
    with CheckpointStore(tmp_path / "checkpoints.db") as store:
        ids = [cp.id for cp in store.manager("demo")]
    assert ids == [f"demo:{seq}" for seq in range(1, len(STEP_NAMES) + 2)]


def test_demo_takes_db_and_session_and_says_how_to_rerun(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "agent.db"
    target.parent.mkdir()
    crashed = run_demo("--db", str(target), "--session", "s-1", "--crash-at", "2", cwd=tmp_path)
    assert crashed.returncode == -signal.SIGKILL
    rerun = f"{runnable_command()} demo --db {target} --session s-1"
    assert f"Run `{rerun}` again to resume." in crashed.stdout
    assert not (tmp_path / "checkpoints.db").exists()
    resumed = run_demo("--db", str(target), "--session", "s-1", cwd=tmp_path)
    assert resumed.returncode == 0
    assert "sqlite3 elsewhere/agent.db` and paste" in resumed.stdout
    assert "WHERE session_id = 's-1'" in printed_query(resumed.stdout)


def test_demo_words_agree_with_a_count_of_one(tmp_path: Path) -> None:
    database = str(tmp_path / "checkpoints.db")
    assert run_demo("--crash-at", "2", cwd=tmp_path).returncode == -signal.SIGKILL
    resumed = CliRunner().invoke(cli.cli, ["--db", database, "demo", "--pace", "0"])
    assert resumed.exit_code == 0, resumed.output
    assert "and skips the 1 step it records as done." in resumed.stdout
    assert "1 steps" not in resumed.stdout
    # A run killed in step 1 leaves one checkpoint ("started") for --restart to delete.
    crashed = run_demo("--session", "other", "--crash-at", "1", cwd=tmp_path)
    assert crashed.returncode == -signal.SIGKILL
    restarted = CliRunner().invoke(
        cli.cli, ["--db", database, "demo", "--session", "other", "--restart", "--pace", "0"]
    )
    assert restarted.exit_code == 0, restarted.output
    assert 'Deleted session "other" (1 checkpoint) to start over.' in restarted.stdout


@pytest.mark.parametrize("crash_at", ["0", str(len(demo.STEPS) + 1), "x"])
def test_crash_at_outside_the_steps_is_a_usage_error(tmp_path: Path, crash_at: str) -> None:
    result = run_demo("--crash-at", crash_at, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("Error: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "checkpoints.db").exists()


def test_demo_refuses_a_session_it_did_not_write(tmp_path: Path) -> None:
    with CheckpointStore(tmp_path / "checkpoints.db") as store:
        store.manager("demo").create("my_agent", {"precious": True})
    result = run_demo(cwd=tmp_path)
    assert result.returncode == 1
    assert "not the demo's" in result.stderr
    with CheckpointStore(tmp_path / "checkpoints.db") as store:
        assert [cp.name for cp in store.manager("demo")] == ["my_agent"]


def test_demo_runs_in_process_on_each_backend(backend_url: str) -> None:
    result = CliRunner().invoke(cli.cli, ["--db", backend_url, "demo", "--pace", "0"])
    assert result.exit_code == 0, result.output
    assert "each exactly once" in result.stdout
    with CheckpointStore(backend_url) as store:
        assert demo.is_complete(state_of(store))
        assert [row[1] for row in printed_table(result.stdout)] == [
            cp.name for cp in store.manager("demo")
        ]


def test_demo_at_its_default_pace_takes_a_few_seconds(tmp_path: Path) -> None:
    started = time.monotonic()
    result = run_demo(cwd=tmp_path, pace=str(demo.DEFAULT_PACE))
    elapsed = time.monotonic() - started
    assert result.returncode == 0
    assert len(demo.STEPS) * demo.DEFAULT_PACE <= elapsed < 15


def test_console_script_runs_the_demo(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("checkpointdb")
    if not script.exists():
        pytest.skip(f"no console script next to {sys.executable}: package not installed")
    result = subprocess.run(
        [str(script), "--db", str(tmp_path / "c.db"), "demo", "--pace", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "each exactly once" in result.stdout


def test_demo_resumes_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    assert run_demo("--db", postgres_url, "--crash-at", "3", cwd=tmp_path).returncode == (
        -signal.SIGKILL
    )
    resumed = run_demo("--db", postgres_url, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "connect with `psql`" in resumed.stdout
    assert "checkpointdb:checkpointdb@" not in resumed.stdout  # no password shown
    with CheckpointStore(postgres_url) as store:
        assert [entry["run"] for entry in state_of(store)["done"]] == [1, 1, 2, 2, 2, 2, 2]
        columns, rows = run_read_only(store, printed_query(resumed.stdout))
    assert columns == ["seq", "name", "created_at", "run", "steps_done"]
    assert [
        [str(seq), name, created.isoformat(), str(run), str(steps)]
        for seq, name, created, run, steps in rows
    ] == printed_table(resumed.stdout)


@pytest.mark.parametrize("activated", [True, False], ids=["venv-on-path", "venv-not-on-path"])
def test_demo_closing_hint_is_a_command_that_runs(tmp_path: Path, activated: bool) -> None:
    scripts = Path(sys.executable).parent
    path = os.pathsep.join(
        [str(scripts), "/usr/bin", "/bin"] if activated else ["/usr/bin", "/bin"]
    )
    if not activated and shutil.which("checkpointdb", path=path) is not None:
        pytest.skip("a checkpointdb outside this environment is on PATH")
    finished = run_demo(cwd=tmp_path, path=path)
    assert finished.returncode == 0, finished.stderr
    hint = re.search(r"More: `([^`]+) sessions`", finished.stdout)
    assert hint is not None, finished.stdout
    prefix = shlex.split(hint.group(1))
    if activated:
        assert prefix == ["checkpointdb"]
    else:
        assert Path(prefix[0]).is_absolute()
    listed = subprocess.run(
        [*prefix, "sessions"],
        cwd=tmp_path,
        env={**os.environ, "PATH": path},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert "demo" in listed.stdout
