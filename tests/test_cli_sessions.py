"""`sessions`, `delete-session` and `clear`, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from click.testing import CliRunner, Result

from checkpointdb import CheckpointStore, cli
from checkpointdb.cli import output

Run = Callable[..., Result]


@pytest.fixture
def run(backend_url: str) -> Run:
    def run_on_db(*args: str, input: str | None = None) -> Result:
        result = CliRunner().invoke(cli.cli, ["--db", backend_url, *args], input=input)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result

    return run_on_db


def one_error_line(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    return lines[0]


def imported(store: CheckpointStore, session_id: str, times: list[str]) -> None:
    document = [
        {"id": f"x:{i}", "name": "step", "timestamp": when, "data": {"i": i}}
        for i, when in enumerate(times, 1)
    ]
    store.manager(session_id).import_checkpoints(json.dumps(document))


def test_sessions_first_and_last_are_the_checkpoints_times_not_the_rows(
    store: CheckpointStore, run: Run
) -> None:
    # Imported last year: the session row was written now, its checkpoints then.
    imported(store, "old", ["2025-03-01T10:00:00.5+00:00", "2025-03-02T11:30:00+00:00"])
    store.manager("empty").create("x", {})
    store.manager("empty").clear()
    listed = {entry["session_id"]: entry for entry in json.loads(run("sessions", "--json").stdout)}
    assert listed["old"]["first_checkpoint_at"] == "2025-03-01T10:00:00.500000Z"
    assert listed["old"]["last_checkpoint_at"] == "2025-03-02T11:30:00.000000Z"
    assert listed["old"]["created_at"] > "2026"  # the row's own time stays in --json
    assert listed["empty"]["first_checkpoint_at"] is None
    rows = {line.split()[0]: line.split() for line in run("sessions").stdout.splitlines()[2:]}
    assert rows["old"][-2:] == ["2025-03-01T10:00:00.500000Z", "2025-03-02T11:30:00.000000Z"]
    assert rows["empty"][-2:] == ["-", "-"]


def test_the_session_view_agrees_with_sessions(store: CheckpointStore, run: Run) -> None:
    imported(store, "s", ["2025-03-01T10:00:00+00:00", "2025-03-02T11:30:00.25+00:00"])
    view = json.loads(
        run(
            "sql", "SELECT first_checkpoint_at, last_checkpoint_at FROM session_view", "--json"
        ).stdout
    )["rows"][0]
    listed = json.loads(run("sessions", "--json").stdout)[0]
    assert view == [listed["first_checkpoint_at"], listed["last_checkpoint_at"]]


def test_delete_session_with_yes_forgets_the_session(store: CheckpointStore, run: Run) -> None:
    mgr = store.manager("s")
    mgr.create("a", {})
    mgr.create("b", {}, pin=True)
    store.manager("other").create("keep", {})
    result = run("delete-session", "s", "--yes")
    assert result.exit_code == 0, result.stderr
    assert "deleted session 's' and its 2 checkpoints" in result.stdout
    assert store.session("s") is None
    assert store.manager("s").create("again", {}).id == "s:1"  # the counter went too
    assert len(store.manager("other")) == 1


def test_clear_with_yes_keeps_the_session_and_its_counter(store: CheckpointStore, run: Run) -> None:
    mgr = store.manager("s")
    for i in range(3):
        mgr.create("step", {"i": i}, pin=i == 0)
    result = run("clear", "s", "--yes", "--json")
    assert json.loads(result.stdout) == {"session_id": "s", "rows_removed": 3, "last_seq": 3}
    assert len(mgr) == 0
    assert mgr.create("next", {}).id == "s:4"
    assert "the next one gets id s:5" in run("clear", "s", "-y").stdout


@pytest.mark.parametrize("command", ["delete-session", "clear"])
def test_without_a_terminal_or_yes_nothing_is_deleted(
    store: CheckpointStore, run: Run, command: str
) -> None:
    store.manager("s").create("a", {})
    result = run(command, "s")
    assert result.exit_code == 1
    assert "add --yes" in one_error_line(result)
    assert len(store.manager("s")) == 1


@pytest.mark.parametrize("command", ["delete-session", "clear"])
def test_on_a_terminal_the_question_decides(
    store: CheckpointStore, run: Run, command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.manager("s").create("a", {})
    monkeypatch.setattr(output, "stdin_is_terminal", lambda: True)
    declined = run(command, "s", input="n\n")
    assert declined.exit_code == 1
    assert "1 checkpoint" in declined.stderr  # the question says what would go
    assert "not confirmed" in declined.stderr
    assert len(store.manager("s")) == 1
    accepted = run(command, "s", input="y\n")
    assert accepted.exit_code == 0, accepted.stderr
    assert (store.session("s") is None) == (command == "delete-session")


@pytest.mark.parametrize("command", ["delete-session", "clear"])
def test_an_unknown_session_exits_1(store: CheckpointStore, run: Run, command: str) -> None:
    result = run(command, "ghost", "--yes")
    assert result.exit_code == 1
    assert "no session 'ghost'" in one_error_line(result)
