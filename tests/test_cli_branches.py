"""`fork`, `delete`, `pop`, `diff`, `list --tree`, parents in `show`, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest
from click.testing import CliRunner, Result

from checkpointdb import CheckpointManager, CheckpointStore, cli
from checkpointdb.cli import output

Run = Callable[..., Result]


@pytest.fixture
def run(backend_url: str) -> Run:
    def run_on_db(*args: str, input: str | None = None, color: bool = False) -> Result:
        result = CliRunner().invoke(cli.cli, ["--db", backend_url, *args], input=input, color=color)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result

    return run_on_db


def one_error_line(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in result.output
    return lines[0]


def branched(store: CheckpointStore) -> CheckpointManager:
    """s:1 <- s:2 <- s:3 <- s:4, and s:2 <- s:5 <- s:6, s:2 <- s:7 (pinned)."""
    mgr = store.manager("s")
    mgr.create("start", {"step": 0, "todo": ["a", "b", "c"]})
    mgr.create("plan", {"step": 1, "todo": ["a", "b"], "notes": {"k": 1}})
    mgr.create("tool", {"step": 2, "todo": ["b"]})
    mgr.create("tool", {"step": 3})
    mgr.create("retry", {"step": 2, "alt": True}, parent="s:2")
    mgr.create("done", {"step": 9})
    mgr.create("other", {"step": 2}, parent="s:2", pin=True)
    return mgr


# -- list --tree and show ------------------------------------------------------------------


def test_list_tree_draws_branches_by_parent_links(store: CheckpointStore, run: Run) -> None:
    branched(store)
    result = run("list", "s", "--tree")
    assert result.exit_code == 0, result.stderr
    shape = [re.match(r".*?s:\d+", line).group() for line in result.stdout.splitlines()]
    assert shape == [
        "s:1",
        "s:2",
        "├─ s:3",
        "│  s:4",
        "├─ s:5",
        "│  s:6",
        "└─ s:7",
    ]
    assert result.stdout.splitlines()[-1].endswith("pinned")


def test_list_tree_starts_a_tree_where_a_parent_was_deleted(
    store: CheckpointStore, run: Run
) -> None:
    branched(store).delete("s:2")
    lines = run("list", "s", "--tree").stdout.splitlines()
    assert [line.split("  ")[0] for line in lines] == ["s:1", "s:3", "s:4", "s:5", "s:6", "s:7"]
    for line in (lines[1], lines[3], lines[5]):
        assert line.endswith("(child of s:2)") or "(child of s:2)" in line


def test_list_tree_json_is_the_list_with_parent_ids(store: CheckpointStore, run: Run) -> None:
    branched(store)
    listed = json.loads(run("list", "s", "--tree", "--json").stdout)
    assert [(cp["id"], cp["parent_id"]) for cp in listed][:3] == [
        ("s:7", "s:2"),
        ("s:6", "s:5"),
        ("s:5", "s:2"),
    ]


def test_show_prints_the_parent_and_says_when_it_is_gone(store: CheckpointStore, run: Run) -> None:
    mgr = branched(store)
    assert "parent    s:2\n" in run("show", "s:5").stdout
    assert "parent    - (the first of its lineage)\n" in run("show", "s:1").stdout
    mgr.delete("s:2")
    assert "parent    s:2 (deleted)\n" in run("show", "s:5").stdout
    assert json.loads(run("show", "s:5", "--json").stdout)["parent_id"] == "s:2"


# -- fork ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("history", "copied"),
    [("latest", ["done"]), ("lineage", ["start", "plan", "retry", "done"]), ("all", None)],
)
def test_fork_copies_the_history_asked_for(
    store: CheckpointStore, run: Run, history: str, copied: list[str] | None
) -> None:
    branched(store)
    result = run("fork", "s:6", "b", "--history", history, "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    forked = store.manager("b").get_all()
    expected = copied or ["start", "plan", "tool", "tool", "retry", "done"]
    assert [cp.name for cp in forked] == expected
    assert [cp.id for cp in forked] == [f"b:{i}" for i in range(1, len(expected) + 1)]
    assert report == {
        "session_id": "b",
        "forked_from": "s:6",
        "history": history,
        "checkpoint_count": len(expected),
        "last_seq": len(expected),
    }
    listed = {entry["session_id"]: entry for entry in json.loads(run("sessions", "--json").stdout)}
    assert listed["b"]["forked_from"] == "s:6"
    assert listed["s"]["forked_from"] is None


def test_fork_says_what_it_made(store: CheckpointStore, run: Run) -> None:
    branched(store)
    result = run("fork", "s:4", "b")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        "forked s:4 into session 'b': 4 checkpoints (history lineage), the newest is b:4\n"
    )
    assert store.manager("b").get("b:4") is not None
    assert store.manager("b").lineage("b:4")[0].name == "start"


def test_fork_refusals_are_one_line_and_write_nothing(store: CheckpointStore, run: Run) -> None:
    branched(store)
    store.manager("taken").create("x", {})
    onto_taken = run("fork", "s:2", "taken")
    assert onto_taken.exit_code == 1
    assert "'taken'" in one_error_line(onto_taken)
    assert len(store.manager("taken")) == 1
    unknown = run("fork", "s:99", "new")
    assert unknown.exit_code == 1
    assert "s:99" in one_error_line(unknown)
    bad_history = run("fork", "s:2", "new", "--history", "some")
    assert bad_history.exit_code == 2
    assert "'some'" in one_error_line(bad_history)
    assert store.session("new") is None


# -- delete and pop ------------------------------------------------------------------------


def test_delete_removes_one_checkpoint_and_its_id_is_not_reused(
    store: CheckpointStore, run: Run
) -> None:
    mgr = branched(store)
    result = run("delete", "s:7", "--yes")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "deleted checkpoint s:7 ('other')\n"
    assert mgr.get("s:7") is None
    assert len(mgr) == 6
    assert mgr.create("next", {}).id == "s:8"
    again = run("delete", "s:7", "--yes")
    assert again.exit_code == 1
    assert "s:7" in one_error_line(again)


def test_delete_json_names_what_went(store: CheckpointStore, run: Run) -> None:
    branched(store)
    result = run("delete", "s:3", "--yes", "--json")
    assert json.loads(result.stdout) == {"id": "s:3", "name": "tool", "deleted": True}


def test_pop_removes_and_prints_the_newest(store: CheckpointStore, run: Run) -> None:
    mgr = branched(store)
    result = run("pop", "s", "--yes")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "popped s:7 ('other'); the newest is now s:6\n"
    popped = json.loads(run("pop", "s", "--yes", "--json").stdout)
    assert (popped["id"], popped["data"], popped["parent_id"]) == ("s:6", {"step": 9}, "s:5")
    assert [cp.id for cp in mgr.get_recent(1)] == ["s:5"]


def test_pop_of_an_empty_or_unknown_session_exits_1(store: CheckpointStore, run: Run) -> None:
    mgr = store.manager("s")
    mgr.create("only", {})
    assert run("pop", "s", "--yes").stdout == "popped s:1 ('only'); the session is empty\n"
    empty = run("pop", "s", "--yes")
    assert empty.exit_code == 1
    assert "no checkpoint to pop" in one_error_line(empty)
    unknown = run("pop", "ghost", "--yes")
    assert unknown.exit_code == 1
    assert "no session 'ghost'" in one_error_line(unknown)


@pytest.mark.parametrize("args", [["delete", "s:2"], ["pop", "s"]])
def test_without_a_terminal_or_yes_nothing_is_removed(
    store: CheckpointStore, run: Run, args: list[str]
) -> None:
    store.manager("s").create_many([("a", {}), ("b", {})])
    result = run(*args)
    assert result.exit_code == 1
    assert "add --yes" in one_error_line(result)
    assert len(store.manager("s")) == 2


@pytest.mark.parametrize("args", [["delete", "s:2"], ["pop", "s"]])
def test_on_a_terminal_the_question_names_the_checkpoint_and_decides(
    store: CheckpointStore, run: Run, args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    mgr = store.manager("s")
    mgr.create_many([("a", {}), ("b", {})])
    monkeypatch.setattr(output, "stdin_is_terminal", lambda: True)
    declined = run(*args, input="n\n")
    assert declined.exit_code == 1
    assert "s:2 ('b'" in declined.stderr
    assert "not confirmed" in declined.stderr
    assert len(mgr) == 2
    accepted = run(*args, input="y\n")
    assert accepted.exit_code == 0, accepted.stderr
    assert [cp.id for cp in mgr.get_all()] == ["s:1"]


# -- diff ----------------------------------------------------------------------------------


def test_diff_shows_each_change_with_the_old_value(store: CheckpointStore, run: Run) -> None:
    branched(store)
    result = run("diff", "s:2", "s:3")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("--- s:2  plan  ")
    assert lines[1].startswith("+++ s:3  tool  ")
    assert sorted(lines[2:]) == sorted(['- /notes: {"k":1}', "~ /step: 1 -> 2", '- /todo/0: "a"'])
    assert "\x1b[" not in result.stdout  # not a terminal


def test_diff_json_is_the_rfc_6902_patch_of_the_library(store: CheckpointStore, run: Run) -> None:
    mgr = branched(store)
    result = run("diff", "s:1", "s:5", "--json")
    assert result.exit_code == 0, result.stderr
    patch = json.loads(result.stdout)
    assert patch == mgr.diff("s:1", "s:5")
    assert patch  # the data differ


def test_diff_old_values_follow_earlier_operations(store: CheckpointStore, run: Run) -> None:
    mgr = store.manager("s")
    mgr.create("a", {"xs": [1, 2, 3, 4]})
    mgr.create("b", {"xs": [4]})
    patch = mgr.diff("s:1", "s:2")
    shown = run("diff", "s:1", "s:2").stdout.splitlines()[2:]
    # Each removal names the value it removes from the list as the earlier ones left it.
    values = [1, 2, 3, 4]
    for operation, line in zip(patch, shown, strict=True):
        index = int(operation["path"].rsplit("/", 1)[1])
        if operation["op"] == "remove":
            assert line == f"- {operation['path']}: {values.pop(index)}"
        else:
            assert line.startswith("~ ")
            values[index] = operation["value"]
    assert values == [4]


def test_diff_shows_a_moved_member_as_moved(store: CheckpointStore, run: Run) -> None:
    mgr = store.manager("s")
    mgr.create("a", {"draft": {"steps": [1, 2, 3]}, "n": 1})
    mgr.create("b", {"final": {"steps": [1, 2, 3]}, "n": 2})
    shown = run("diff", "s:1", "s:2").stdout.splitlines()[2:]
    assert sorted(shown) == ["> /final: moved from /draft", "~ /n: 1 -> 2"]


def test_diff_across_sessions_and_of_equal_data(store: CheckpointStore, run: Run) -> None:
    branched(store)
    store.manager("s").fork("s:6", "b", history="latest")
    same = run("diff", "s:6", "b:1")
    assert same.exit_code == 0, same.stderr
    assert same.stdout.splitlines()[2:] == ["(the same data)"]
    assert json.loads(run("diff", "s:6", "b:1", "--json").stdout) == []
    assert run("diff", "s:1", "b:1").stdout.splitlines()[2:]


def test_diff_is_coloured_on_a_terminal_unless_no_color(
    store: CheckpointStore, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    branched(store)
    monkeypatch.setattr(output, "stdout_is_terminal", lambda: True)
    monkeypatch.delenv("NO_COLOR", raising=False)
    # color=True: the test runner keeps what the command writes instead of stripping it.
    coloured = run("diff", "s:2", "s:3", color=True).stdout.splitlines()
    assert any(line.startswith("\x1b[31m- ") for line in coloured)  # removals red
    assert any(line.startswith("\x1b[33m~ ") for line in coloured)  # replacements yellow
    monkeypatch.setenv("NO_COLOR", "1")
    assert "\x1b[" not in run("diff", "s:2", "s:3", color=True).stdout


def test_diff_of_unknown_or_malformed_ids(store: CheckpointStore, run: Run) -> None:
    branched(store)
    unknown = run("diff", "s:1", "s:42")
    assert unknown.exit_code == 1
    assert "s:42" in one_error_line(unknown)
    malformed = run("diff", "s:1", "nope")
    assert malformed.exit_code == 2
    assert "'nope'" in one_error_line(malformed)


# -- sessions --------------------------------------------------------------------------------


def test_sessions_shows_fork_origin_and_metadata_when_there_are_some(
    store: CheckpointStore, run: Run
) -> None:
    mgr = branched(store)
    plain = run("sessions").stdout
    assert "FORKED FROM" not in plain
    assert "METADATA" not in plain
    store.manager("s", max_checkpoints=500, keep_recent=7).create("more", {})  # stores a policy
    mgr.fork("s:4", "b")
    mgr.set_session_metadata({"owner": "ana"})
    rows = {line.split()[0]: line.split() for line in run("sessions").stdout.splitlines()[2:]}
    assert rows["b"][-2:] == ["s:4", "-"]
    assert rows["s"][-2:] == ["-", '{"owner":"ana"}']
    listed = {entry["session_id"]: entry for entry in json.loads(run("sessions", "--json").stdout)}
    assert listed["s"]["metadata"] == {"owner": "ana"}
    # The fork took the origin's policy (an argument left out keeps its stored value).
    assert listed["b"]["policy"] == listed["s"]["policy"]
    assert listed["b"]["policy"]["max_checkpoints"] == 500
    assert listed["b"]["policy"]["keep_recent"] == 7
