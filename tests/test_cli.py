"""The `checkpointdb` command, through click's CliRunner, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from checkpointdb import CheckpointStore, cli, migrate
from checkpointdb.cli import output
from checkpointdb.engine import Database, resolve_url
from checkpointdb.readonly import run_read_only
from checkpointdb.repository import Repository

Run = Callable[..., Result]


def invoke(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    """Run the command in-process; an unexpected exception fails the test."""
    result = CliRunner().invoke(cli.cli, list(args), input=input, env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


@pytest.fixture
def run(backend_url: str) -> Run:
    """The command against the test's database."""

    def run_on_db(*args: str, input: str | None = None) -> Result:
        return invoke("--db", backend_url, *args, input=input)

    return run_on_db


def populate(store: CheckpointStore, session_id: str, entries: list[tuple[str, str]]) -> None:
    """Checkpoints (name, ISO time) with known timestamps, through the import API."""
    document = [
        {"id": f"elsewhere:{i}", "name": name, "timestamp": when, "data": {"i": i}, "metadata": {}}
        for i, (name, when) in enumerate(entries, 1)
    ]
    store.manager(session_id).import_checkpoints(json.dumps(document))


HOURLY = [("plan", "2026-01-01T00:00:00+00:00")] + [
    ("tool" if i % 2 else "think", f"2026-01-01T0{i}:00:00+00:00") for i in range(1, 6)
]


def stored_size(data: dict[str, object], metadata: dict[str, object] | None = None) -> int:
    """The bytes the store counts for a checkpoint: its data and metadata as compact UTF-8 JSON."""
    return sum(
        len(json.dumps(part, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
        for part in (data, metadata or {})
    )


def payload_bytes(store: CheckpointStore, session_id: str) -> int:
    info = store.session(session_id)
    assert info is not None
    return info.payload_bytes


def one_error_line(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in result.output
    return lines[0]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in group.commands.items():
        yield (*path, name)
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))


# -- help ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [(), *commands(cli.cli)], ids=lambda p: " ".join(p) or "top")
def test_every_command_has_help_with_a_runnable_looking_example(path: tuple[str, ...]) -> None:
    result = invoke(*path, "--help")
    assert result.exit_code == 0
    _, found, examples = result.stdout.partition("Example:\n")
    assert found, result.stdout
    first = examples.splitlines()[0].strip()
    assert first.startswith("checkpointdb "), first
    assert " ".join(path) in first


def test_version_is_printed() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert "checkpointdb" in result.stdout


# -- sessions, list, show, latest ------------------------------------------------------------------


def test_sessions_lists_each_session_with_counts_and_times(
    store: CheckpointStore, run: Run
) -> None:
    populate(store, "agent-1", HOURLY)
    store.manager("agent-2").create("start", {})
    table = run("sessions")
    assert table.exit_code == 0
    rows = {line.split()[0]: line.split() for line in table.stdout.splitlines()[2:]}
    assert rows["agent-1"][1:3] == ["6", "6"]
    assert rows["agent-2"][1:3] == ["1", "1"]
    listed = json.loads(run("sessions", "--json").stdout)
    assert [entry["session_id"] for entry in listed] == ["agent-1", "agent-2"]
    assert listed[0]["checkpoint_count"] == 6
    assert listed[0]["last_seq"] == 6
    assert listed[0]["payload_bytes"] == sum(stored_size({"i": i}) for i in range(1, 7))
    assert listed[1]["payload_bytes"] == stored_size({})
    assert datetime.fromisoformat(listed[0]["created_at"]).tzinfo is not None
    assert table.stdout.splitlines()[0].split()[:5] == [
        "SESSION",
        "CHECKPOINTS",
        "LAST",
        "SEQ",
        "SIZE",
    ]
    assert rows["agent-1"][3:5] == [str(listed[0]["payload_bytes"]), "B"]


def test_sessions_shows_large_sizes_in_human_units(store: CheckpointStore, run: Run) -> None:
    mgr = store.manager("big", max_checkpoints=None, compress_after=None)
    for i in range(3):
        mgr.create("blob", {"text": "é" * 200_000, "i": i})  # 400 kB of UTF-8 each
    exact = json.loads(run("sessions", "--json").stdout)[0]["payload_bytes"]
    assert exact == 3 * stored_size({"text": "é" * 200_000, "i": 0})
    assert 1_200_000 < exact < 1_250_000
    row = run("sessions").stdout.splitlines()[2].split()
    assert row[3:5] == ["1.2", "MB"]


def test_sessions_on_an_empty_database_says_so(store: CheckpointStore, run: Run) -> None:
    assert "no sessions" in run("sessions").stdout
    assert json.loads(run("sessions", "--json").stdout) == []


def test_list_is_newest_first_with_limit(store: CheckpointStore, run: Run) -> None:
    populate(store, "s", HOURLY)
    listed = json.loads(run("list", "s", "--json").stdout)
    assert [cp["id"] for cp in listed] == [f"s:{seq}" for seq in range(6, 0, -1)]
    limited = run("list", "s", "--limit", "2", "--json")
    assert [cp["id"] for cp in json.loads(limited.stdout)] == ["s:6", "s:5"]
    assert "--limit 0 lists all 6" in limited.stderr
    table = run("list", "s", "--limit", "0")
    assert [line.split()[0] for line in table.stdout.splitlines()[2:]] == [
        f"s:{seq}" for seq in range(6, 0, -1)
    ]
    assert table.stderr == ""


def test_list_filters_by_name_and_time(store: CheckpointStore, run: Run) -> None:
    populate(store, "s", HOURLY)

    def ids(*args: str) -> list[str]:
        result = run("list", "s", "--json", *args)
        assert result.exit_code == 0, result.stderr
        return [cp["id"] for cp in json.loads(result.stdout)]

    assert ids("--name", "tool") == ["s:6", "s:4", "s:2"]
    assert ids("--since", "2026-01-01T03:00:00Z") == ["s:6", "s:5", "s:4"]
    assert ids("--until", "2026-01-01T01:00:00+00:00") == ["s:2", "s:1"]
    # An offset is honoured: 04:00+02:00 is 02:00 UTC.
    assert ids("--since", "2026-01-01T04:00:00+02:00", "--until", "2026-01-01T03:00Z") == [
        "s:4",
        "s:3",
    ]
    assert ids("--name", "tool", "--since", "2026-01-01T02:00Z", "--limit", "1") == ["s:6"]
    assert ids("--name", "nobody") == []


def test_list_accepts_relative_times(store: CheckpointStore, run: Run) -> None:
    populate(store, "s", [("old", "2020-01-01T00:00:00+00:00")])
    store.manager("s").create("new", {})
    names = [cp["name"] for cp in json.loads(run("list", "s", "--since", "10m", "--json").stdout)]
    assert names == ["new"]
    names = [cp["name"] for cp in json.loads(run("list", "s", "--until", "7d", "--json").stdout)]
    assert names == ["old"]
    for relative in ("30s", "2h", "1w"):
        assert run("list", "s", "--since", relative).exit_code == 0


@pytest.mark.parametrize(
    "bad",
    ["2026-01-01T03:00:00", "2026-01-01", "yesterday", "10 minutes", "99999999999w"],
)
def test_a_time_without_offset_or_unreadable_is_a_usage_error(
    store: CheckpointStore, run: Run, bad: str
) -> None:
    populate(store, "s", HOURLY)
    result = run("list", "s", "--since", bad)
    assert result.exit_code == 2
    assert "--since" in one_error_line(result)


def test_since_after_until_is_a_usage_error(store: CheckpointStore, run: Run) -> None:
    populate(store, "s", HOURLY)
    result = run("list", "s", "--since", "1h", "--until", "2h")
    assert result.exit_code == 2
    assert "is after --until" in one_error_line(result)


def test_show_prints_one_checkpoint(store: CheckpointStore, run: Run) -> None:
    mgr = store.manager("s")
    mgr.create("first", {"n": 1})
    cp = mgr.create("plan", {"steps": ["a", "b"], "text": "é"}, {"who": "agent"})
    shown = run("show", cp.id)
    assert shown.exit_code == 0
    assert "name      plan" in shown.stdout
    assert '"text": "é"' in shown.stdout
    assert '{"who": "agent"}' in shown.stdout
    assert "pinned    no" in shown.stdout
    shown_json = json.loads(run("show", cp.id, "--json").stdout)
    timestamp = output.format_time(cp.timestamp)
    assert shown_json == {**cp.to_dict(), "timestamp": timestamp, "pinned": False}
    assert shown_json["timestamp"].endswith("Z")
    assert f"created   {shown_json['timestamp']}" in shown.stdout


def test_latest_gives_the_newest_or_the_newest_of_a_name(store: CheckpointStore, run: Run) -> None:
    populate(store, "s", HOURLY)
    assert json.loads(run("latest", "s", "--json").stdout)["id"] == "s:6"
    assert json.loads(run("latest", "s", "--name", "think", "--json").stdout)["id"] == "s:5"
    missing = run("latest", "s", "--name", "nope")
    assert missing.exit_code == 1
    assert "no checkpoint named 'nope'" in one_error_line(missing)


def test_unknown_session_or_id_exits_1_with_one_line(store: CheckpointStore, run: Run) -> None:
    populate(store, "s", HOURLY)
    store.manager("s").compact(keep_recent=1)
    for args in (
        ["list", "ghost"],
        ["latest", "ghost"],
        ["export", "ghost"],
        ["compact", "ghost"],
        ["stats", "ghost"],
        ["show", "ghost:1"],
        ["pin", "ghost:1"],
        ["unpin", "ghost:1"],
    ):
        result = run(*args)
        assert result.exit_code == 1, args
        assert "no session 'ghost'" in one_error_line(result)
    for command in ("show", "pin", "unpin"):
        never = run(command, "s:99")
        assert never.exit_code == 1
        assert "never existed" in one_error_line(never)
        compacted = run(command, "s:2")
        assert compacted.exit_code == 1
        assert "compacted or deleted" in one_error_line(compacted)


@pytest.mark.parametrize(
    "args",
    [
        ["show", "no-seq"],
        ["show", "s:0"],
        ["show", "s:x"],
        ["list"],
        ["list", ""],
        ["list", "s", "--limit", "-1"],
        ["compact", "s", "--keep-recent", "many"],
        ["compact", "s", "--older-than", "yesterday"],
        ["compact", "s", "--older-than", "-1d"],
        ["expire"],
        ["expire", "--older-than", "7 days"],
        ["expire", "--older-than", "2026-01-01T00:00:00Z"],
        ["expire", "--older-than", "99999999999w"],
        ["pin"],
        ["pin", "s"],
        ["unpin", "s:0"],
        ["vacuum", "extra"],
        ["no-such-command"],
        ["--no-such-option"],
        ["sessions", "extra"],
    ],
)
def test_bad_usage_exits_2_with_one_line(store: CheckpointStore, run: Run, args: list[str]) -> None:
    populate(store, "s", HOURLY)
    result = run(*args)
    assert result.exit_code == 2
    assert "--help" in one_error_line(result)


def test_reading_a_missing_sqlite_file_fails_without_creating_it(tmp_path: Path) -> None:
    path = tmp_path / "typo.db"
    for args in (["sessions"], ["list", "s"], ["sql", "SELECT 1"], ["db", "current"]):
        result = invoke("--db", str(path), *args)
        assert result.exit_code == 1, args
        assert one_error_line(result) == (
            f"Error: no checkpointdb store at {path}; create one with: "
            f"checkpointdb --db {path} db upgrade"
        )
    assert not path.exists()


def test_a_file_that_is_not_a_database_is_one_line_exit_1(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("these are not checkpoints\n" * 20)
    before = sha256(path)
    for args in (["sessions"], ["sql", "SELECT 1"]):
        result = invoke("--db", str(path), *args)
        assert result.exit_code == 1
        assert "not" in one_error_line(result)
    assert sha256(path) == before


def test_default_database_is_env_url_else_checkpoints_db_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CHECKPOINTDB_URL", raising=False)
    with CheckpointStore(tmp_path / "checkpoints.db") as here:
        here.manager("from-cwd").create("x", {})
    with CheckpointStore(tmp_path / "elsewhere.db") as elsewhere:
        elsewhere.manager("from-env").create("x", {})
    assert "from-cwd" in invoke("sessions").stdout
    from_env = invoke("sessions", env={"CHECKPOINTDB_URL": str(tmp_path / "elsewhere.db")})
    assert "from-env" in from_env.stdout
    assert "from-cwd" not in from_env.stdout


# -- export, import, compact ------------------------------------------------------------------


def test_export_writes_exactly_what_the_manager_exports(
    store: CheckpointStore, run: Run, tmp_path: Path
) -> None:
    populate(store, "s", HOURLY)
    store.manager("s").create("unicode", {"text": "naïve ☃", "nested": {"list": [1, 2.5, None]}})
    expected = store.manager("s").export()
    printed = run("export", "s")
    assert printed.exit_code == 0
    assert printed.stdout == expected + "\n"
    target = tmp_path / "s.json"
    written = run("export", "s", "-o", str(target))
    assert written.exit_code == 0
    assert f"exported 7 checkpoints of session 's' to {target}" in written.stderr
    assert target.read_text(encoding="utf-8") == expected + "\n"
    assert target.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []


def test_export_follows_a_symlink_and_writes_through_a_device(
    store: CheckpointStore, run: Run, tmp_path: Path
) -> None:
    populate(store, "s", HOURLY)
    real = tmp_path / "real"
    real.mkdir()
    (real / "target.json").write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real / "target.json")
    assert run("export", "s", "-o", str(link)).exit_code == 0
    assert link.is_symlink()
    assert (real / "target.json").read_text() == store.manager("s").export() + "\n"
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    assert run("export", "s", "-o", str(fifo)).exit_code == 0
    reader.join(timeout=30)
    assert received == [(store.manager("s").export() + "\n").encode()]
    assert stat.S_ISFIFO(fifo.stat().st_mode)  # still a pipe, not replaced by a file
    assert run("export", "s", "-o", os.devnull).exit_code == 0
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)


def test_export_of_an_emptied_session_is_an_empty_list(store: CheckpointStore, run: Run) -> None:
    mgr = store.manager("s")
    mgr.create("x", {})
    mgr.clear()
    assert run("export", "s").stdout == mgr.export() + "\n"


def test_export_into_a_missing_directory_fails_in_one_line(
    store: CheckpointStore, run: Run, tmp_path: Path
) -> None:
    populate(store, "s", HOURLY)
    result = run("export", "s", "-o", str(tmp_path / "nowhere" / "s.json"))
    assert result.exit_code == 1
    assert "cannot write" in one_error_line(result)


def test_export_then_import_copies_a_session(
    store: CheckpointStore, run: Run, new_url: Callable[[], str], tmp_path: Path
) -> None:
    populate(store, "s", HOURLY)
    file = tmp_path / "s.json"
    assert run("export", "s", "-o", str(file)).exit_code == 0
    other = new_url()
    imported = invoke("--db", other, "import", "copy", str(file), "--json")
    assert imported.exit_code == 0, imported.stderr
    assert json.loads(imported.stdout) == {
        "session_id": "copy",
        "imported": 6,
        "checkpoint_count": 6,
        "last_seq": 6,
    }
    with CheckpointStore(other) as copy:
        copied = [(cp.name, cp.timestamp, cp.data) for cp in copy.manager("copy")]
    original = [(cp.name, cp.timestamp, cp.data) for cp in store.manager("s")]
    assert copied == original


def test_import_reads_stdin_and_appends_with_fresh_ids(store: CheckpointStore, run: Run) -> None:
    populate(store, "s", HOURLY)
    exported = store.manager("s").export()
    result = run("import", "s", "-", input=exported)
    assert result.exit_code == 0, result.stderr
    assert "imported 6 checkpoints into session 's'" in result.stdout
    assert "now has 12 (newest id s:12)" in result.stdout
    ids = [cp.id for cp in store.manager("s")]
    assert ids == [f"s:{seq}" for seq in range(1, 13)]


def test_import_is_all_or_nothing(store: CheckpointStore, run: Run, tmp_path: Path) -> None:
    entries = [
        {"id": "a:1", "name": "ok", "timestamp": "2026-01-01T00:00:00+00:00", "data": {}},
        {"id": "a:2", "name": "naive", "timestamp": "2026-01-01T00:00:00", "data": {}},
    ]
    file = tmp_path / "bad.json"
    file.write_text(json.dumps(entries))
    result = run("import", "new", str(file))
    assert result.exit_code == 1
    assert "entry 1" in one_error_line(result)
    assert store.session("new") is None
    not_json = tmp_path / "garbage.json"
    not_json.write_bytes(b"\xff\xfe not text")
    assert run("import", "new", str(not_json)).exit_code == 1
    assert store.session("new") is None


def test_import_of_a_missing_file_is_a_usage_error(run: Run, tmp_path: Path) -> None:
    result = run("import", "s", str(tmp_path / "missing.json"))
    assert result.exit_code == 2
    one_error_line(result)


def test_compact_dry_run_changes_nothing_and_predicts_the_real_run(
    store: CheckpointStore, run: Run
) -> None:
    mgr = store.manager("s", max_checkpoints=None, compress_after=None)
    for i in range(30):
        mgr.create(f"step-{i % 3}", {"i": i})
    preview = json.loads(run("compact", "s", "--dry-run", "--keep-recent", "5", "--json").stdout)
    assert preview["dry_run"] is True
    assert len(mgr) == 30
    # Kept: the first, the newest 5, and the newest of each of the 3 names before those.
    assert preview["remaining"] == 1 + 5 + 3
    assert preview["kept"] == {"first": 1, "recent": 5, "newest_of_name": 3}
    assert preview["rows_removed"] == len(preview["removed"]) == 21
    human = run("compact", "s", "--dry-run", "--keep-recent", "5")
    assert "would remove 21 of 30 checkpoints (" in human.stdout
    assert "and keep 9" in human.stdout
    assert "kept: 1 the first, 3 the newest of their name, 5 among the newest 5" in human.stdout
    before = payload_bytes(store, "s")
    done = json.loads(run("compact", "s", "--keep-recent", "5", "--json").stdout)
    assert done["removed"] == preview["removed"]
    assert done["bytes_removed"] == preview["bytes_removed"]
    assert done["kept"] == preview["kept"]
    assert done["dry_run"] is False
    assert len(mgr) == done["remaining"] == 9
    assert before - payload_bytes(store, "s") == done["bytes_removed"]
    assert done["bytes_removed"] == sum(
        stored_size({"i": i}) for i in range(30) if f"s:{i + 1}" in done["removed"]
    )
    again = run("compact", "s", "--keep-recent", "5")
    assert "removed 0 checkpoints (0 B of JSON) from session 's'; 9 remain" in again.stdout
    assert "vacuum" not in again.stdout  # nothing was removed: no space to give back


def test_compact_older_than_spares_young_checkpoints_and_says_so(
    store: CheckpointStore, run: Run
) -> None:
    populate(store, "s", HOURLY)  # 2026-01-01, long ago
    mgr = store.manager("s", max_checkpoints=None, compress_after=None)
    young = [mgr.create("tool", {"young": n}).id for n in range(3)]
    preview = json.loads(
        run(
            "compact", "s", "--keep-recent", "0", "--older-than", "7d", "--dry-run", "--json"
        ).stdout
    )
    # Kept: the first, the newest "think" among the old, and the three young ones.
    # The old "tool" rows all go: the newest "tool" is young.
    assert preview["removed"] == ["s:2", "s:3", "s:4", "s:6"]
    assert preview["kept"] == {"first": 1, "newest_of_name": 1, "too_recent": 3}
    assert preview["older_than_seconds"] == 7 * 86400
    human = run("compact", "s", "--keep-recent", "0", "--older-than", "7d")
    assert human.exit_code == 0, human.stderr
    assert "removed 4 checkpoints" in human.stdout
    assert "3 younger than 7d" in human.stdout
    assert "vacuum` gives it back" in human.stdout
    assert [cp.id for cp in mgr] == ["s:1", "s:5", *young]


def test_pin_keeps_a_checkpoint_through_compaction_until_unpinned(
    store: CheckpointStore, run: Run
) -> None:
    mgr = store.manager("s", max_checkpoints=None, compress_after=None)
    for i in range(10):
        mgr.create("step", {"i": i})
    pinned = run("pin", "s:4")
    assert pinned.exit_code == 0, pinned.stderr
    assert "pinned s:4" in pinned.stdout
    assert json.loads(run("pin", "s:4", "--json").stdout) == {
        "id": "s:4",
        "pinned": True,
        "changed": False,
    }
    assert "already pinned" in run("pin", "s:4").stdout
    assert json.loads(run("show", "s:4", "--json").stdout)["pinned"] is True
    assert "pinned    yes" in run("show", "s:4").stdout
    listed = {cp["id"]: cp["pinned"] for cp in json.loads(run("list", "s", "--json").stdout)}
    assert listed == {f"s:{seq}": seq == 4 for seq in range(1, 11)}
    table = run("list", "s").stdout.splitlines()
    assert table[0].split()[:5] == ["ID", "NAME", "CREATED", "(UTC)", "PINNED"]
    assert {line.split()[0]: line.split()[3] for line in table[2:]} == {
        f"s:{seq}": "yes" if seq == 4 else "no" for seq in range(1, 11)
    }

    report = json.loads(run("compact", "s", "--keep-recent", "2", "--json").stdout)
    assert "s:4" not in report["removed"]
    assert report["kept"]["pinned"] == 1
    assert [cp.id for cp in mgr] == ["s:1", "s:4", "s:8", "s:9", "s:10"]  # s:8: newest "step"

    unpinned = run("unpin", "s:4", "--json")
    assert json.loads(unpinned.stdout) == {"id": "s:4", "pinned": False, "changed": True}
    assert "was already not pinned" in run("unpin", "s:4").stdout
    assert run("latest", "s", "--json").exit_code == 0
    assert json.loads(run("latest", "s", "--json").stdout)["pinned"] is False
    again = json.loads(run("compact", "s", "--keep-recent", "2", "--json").stdout)
    assert again["removed"] == ["s:4"]


def test_list_json_with_pinned_imports_back_with_the_pins(
    store: CheckpointStore, run: Run, new_url: Callable[[], str]
) -> None:
    mgr = store.manager("s")
    mgr.create("a", {})
    mgr.create("b", {}, pin=True)
    listed = run("list", "s", "--json").stdout
    other = new_url()
    assert invoke("--db", other, "import", "s", "-", input=listed).exit_code == 0
    with CheckpointStore(other) as copy:
        assert {cp.name: cp.pinned for cp in copy.manager("s")} == {"a": False, "b": True}


def test_expire_removes_old_checkpoints_across_sessions_per_session(
    store: CheckpointStore, run: Run
) -> None:
    populate(store, "mixed", HOURLY)  # six old checkpoints...
    store.manager("mixed").create("fresh", {})  # ...and a young one
    populate(store, "idle", HOURLY)  # only old ones: its newest stays so it can resume
    populate(store, "pinned", HOURLY)
    store.manager("pinned").pin("pinned:2")
    store.manager("young").create("fresh", {})
    before = {info.id: info.payload_bytes for info in store.sessions()}

    preview = json.loads(run("expire", "--older-than", "30d", "--dry-run", "--json").stdout)
    assert preview["dry_run"] is True
    assert preview["older_than_seconds"] == 30 * 86400
    sizes = {i: stored_size({"i": i}) for i in range(1, 7)}
    assert preview["sessions"] == {
        "idle": {
            "rows_removed": 5,
            "bytes_removed": sum(sizes[i] for i in (1, 2, 3, 4, 5)),
            "removed": [f"idle:{seq}" for seq in range(1, 6)],
        },
        "mixed": {
            "rows_removed": 6,
            "bytes_removed": sum(sizes[i] for i in (1, 2, 3, 4, 5, 6)),
            "removed": [f"mixed:{seq}" for seq in range(1, 7)],
        },
        "pinned": {
            "rows_removed": 4,
            "bytes_removed": sum(sizes[i] for i in (1, 3, 4, 5)),
            "removed": ["pinned:1", "pinned:3", "pinned:4", "pinned:5"],
        },
    }
    assert preview["rows_removed"] == 15
    assert preview["bytes_removed"] == sum(
        session["bytes_removed"] for session in preview["sessions"].values()
    )
    assert {info.id: info.payload_bytes for info in store.sessions()} == before

    human = run("expire", "--older-than", "30d", "--dry-run")
    assert "dry run: expiring would remove 15 checkpoints (" in human.stdout
    assert "older than 30d from 3 sessions" in human.stdout
    rows = {line.split()[0]: line.split()[1] for line in human.stdout.splitlines()[3:6]}
    assert rows == {"idle": "5", "mixed": "6", "pinned": "4"}

    done = json.loads(run("expire", "--older-than", "30d", "--json").stdout)
    assert done["sessions"] == preview["sessions"]
    assert done["bytes_removed"] == preview["bytes_removed"]
    after = {info.id: info.payload_bytes for info in store.sessions()}
    assert sum(before.values()) - sum(after.values()) == done["bytes_removed"]
    assert [cp.id for cp in store.manager("idle")] == ["idle:6"]
    assert [cp.id for cp in store.manager("mixed")] == ["mixed:7"]
    assert [cp.id for cp in store.manager("pinned")] == ["pinned:2", "pinned:6"]
    assert [cp.id for cp in store.manager("young")] == ["young:1"]
    nothing = run("expire", "--older-than", "30d")
    assert nothing.exit_code == 0
    assert "no checkpoint older than 30d to remove" in nothing.stdout


def test_vacuum_reports_the_size_before_and_after(store: CheckpointStore, run: Run) -> None:
    mgr = store.manager("s", max_checkpoints=None, compress_after=None)
    for i in range(200):
        mgr.create("big", {"i": i, "text": "x" * 4000})
    mgr.clear()
    result = json.loads(run("vacuum", "--json").stdout)
    assert result["database"] == store.where
    assert result["bytes_before"] - result["bytes_after"] == result["bytes_freed"]
    assert result["bytes_after"] > 0
    if store.dialect == "sqlite":
        # 800 kB of payload was freed; the rewritten file holds none of it.
        assert result["bytes_freed"] > 700_000
        assert Path(str(store.url.database)).stat().st_size == result["bytes_after"]
    human = run("vacuum")
    assert human.exit_code == 0, human.stderr
    assert f"vacuumed {store.where}: " in human.stdout
    assert " -> " in human.stdout


def test_vacuum_of_a_missing_sqlite_file_fails_without_creating_it(tmp_path: Path) -> None:
    path = tmp_path / "typo.db"
    for args in (["vacuum"], ["expire", "--older-than", "1d"], ["pin", "s:1"]):
        result = invoke("--db", str(path), *args)
        assert result.exit_code == 1, args
        assert f"no checkpointdb store at {path}" in one_error_line(result)
    assert not path.exists()


@pytest.mark.parametrize(
    ("count", "shown"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1.0 kB"),
        (1234, "1.2 kB"),
        (999_949, "999.9 kB"),
        (999_950, "1.0 MB"),
        (1_234_567, "1.2 MB"),
        (5 * 10**9, "5.0 GB"),
        (3 * 10**15, "3000.0 TB"),
    ],
)
def test_sizes_are_shown_in_decimal_units(count: int, shown: str) -> None:
    assert output.size(count) == shown


# -- stats ------------------------------------------------------------------------------------


def test_stats_summarises_a_session_with_a_chart(store: CheckpointStore, run: Run) -> None:
    populate(store, "s", HOURLY)
    summary = json.loads(run("stats", "s", "--json").stdout)
    assert summary["total_count"] == 6
    assert summary["names"] == {"tool": 3, "think": 2, "plan": 1}
    assert list(summary["names"]) == ["tool", "think", "plan"]  # most common first
    assert summary["duration_seconds"] == 5 * 3600
    assert summary["per_minute"] == pytest.approx(6 / 300)
    assert summary["payload_bytes"] == sum(stored_size({"i": i}) for i in range(1, 7))
    assert sum(row["count"] for row in summary["timeline"]) == 6
    text = run("stats", "s")
    assert text.exit_code == 0
    assert "6 live, 3 distinct names" in text.stdout
    assert f"size         {summary['payload_bytes']} B of data and metadata JSON" in text.stdout
    assert "(5.0 h)" in text.stdout
    assert "1.2 per hour" in text.stdout
    chart = text.stdout.split("checkpoints over time")[1].splitlines()[1:]
    assert len(chart) == 6
    assert sum(int(line.split()[-1]) for line in chart) == 6
    assert chart[0].lstrip().startswith("00:00:00")


def test_stats_without_a_session_covers_every_session(store: CheckpointStore, run: Run) -> None:
    populate(store, "a", HOURLY)
    populate(store, "b", [("plan", "2026-01-02T00:00:00+00:00")])
    summary = json.loads(run("stats", "--json").stdout)
    assert summary["sessions"] == 2
    assert summary["total_count"] == 7
    assert summary["names"]["plan"] == 2
    assert summary["duration_seconds"] == 24 * 3600
    assert summary["payload_bytes"] == sum(info.payload_bytes for info in store.sessions())
    assert summary["payload_bytes"] == sum(stored_size({"i": i}) for i in (1, 2, 3, 4, 5, 6, 1))
    text = run("stats").stdout
    assert "2 sessions" in text
    assert "2026-01-01 00:00" in text  # a span of a day or more shows dates


def test_stats_of_an_empty_store_prints_zero(store: CheckpointStore, run: Run) -> None:
    assert "0 live" in run("stats").stdout
    empty = json.loads(run("stats", "--json").stdout)
    assert empty["timeline"] == []
    assert empty["payload_bytes"] == 0


# -- progress ------------------------------------------------------------------------------------


def test_export_draws_progress_only_on_a_terminal(
    store: CheckpointStore, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    populate(store, "s", HOURLY)
    expected = store.manager("s").export() + "\n"
    monkeypatch.setattr(output, "PROGRESS_MIN_ROWS", 1)
    quiet = run("export", "s")
    assert quiet.stderr == ""
    monkeypatch.setattr(output, "stderr_is_terminal", lambda: True)
    shown = run("export", "s")
    assert "Exporting" in shown.stderr
    assert shown.stdout == expected


# -- sql -------------------------------------------------------------------------------------


def test_sql_runs_a_query_and_prints_rows(store: CheckpointStore, run: Run) -> None:
    populate(store, "s", HOURLY)
    query = "SELECT name, count(*) AS n FROM checkpoints GROUP BY name ORDER BY name"
    table = run("sql", query)
    assert table.exit_code == 0, table.stderr
    assert table.stdout.splitlines()[2:] == ["plan   1", "think  2", "tool   3", "(3 rows)"]
    result = json.loads(run("sql", query, "--json").stdout)
    assert result == {"columns": ["name", "n"], "rows": [["plan", 1], ["think", 2], ["tool", 3]]}
    from_stdin = run("sql", "-", "--json", input="SELECT count(*) AS n FROM sessions")
    assert json.loads(from_stdin.stdout) == {"columns": ["n"], "rows": [[1]]}


def test_sql_shows_json_and_times_readably(store: CheckpointStore, run: Run) -> None:
    populate(store, "s", HOURLY)
    result = json.loads(
        run("sql", "SELECT data, created_at FROM checkpoints WHERE seq = 1", "--json").stdout
    )
    data, created = result["rows"][0]
    assert (json.loads(data) if isinstance(data, str) else data) == {"i": 1}
    assert created.startswith("2026-01-01")


def test_sql_errors_are_one_line(store: CheckpointStore, run: Run) -> None:
    result = run("sql", "SELEC nonsense")
    assert result.exit_code == 1
    assert "syntax error" in one_error_line(result)


def test_run_read_only_takes_a_store_or_a_url(store: CheckpointStore, backend_url: str) -> None:
    populate(store, "s", HOURLY)
    query = "SELECT seq FROM checkpoints ORDER BY seq"
    assert run_read_only(store, query) == (["seq"], [(seq,) for seq in range(1, 7)])
    assert run_read_only(backend_url, query) == (["seq"], [(seq,) for seq in range(1, 7)])


SQLITE_WRITES = [
    "INSERT INTO sessions (id, created_at, updated_at, last_seq, checkpoint_count, metadata) "
    "VALUES ('x', 'a', 'b', 0, 0, '{}')",
    "UPDATE checkpoints SET name = 'hacked'",
    "DELETE FROM checkpoints",
    "DROP TABLE checkpoints",
    "CREATE TABLE extra (x)",
    "CREATE TEMP TABLE scratch (x)",
    "ALTER TABLE sessions ADD COLUMN y",
    "ATTACH 'attached.db' AS other",
    "ATTACH ':memory:' AS other",
    "VACUUM",
    "VACUUM INTO 'copy.db'",
    "REINDEX",
    "ANALYZE",
    "PRAGMA user_version = 5",
    "PRAGMA journal_mode = DELETE",
    "PRAGMA query_only = OFF",
    "PRAGMA schema_version = 99",
    "PRAGMA wal_checkpoint(TRUNCATE)",
    "PRAGMA optimize",
    "PRAGMA writable_schema = ON",
    "BEGIN; DELETE FROM checkpoints",
    "SELECT 1; DELETE FROM checkpoints",
    "WITH gone AS (SELECT 1) DELETE FROM checkpoints",
]


RUNAWAY = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"


def test_sql_stops_a_runaway_query_at_its_timeout_in_one_line(
    store: CheckpointStore, run: Run
) -> None:
    began = time.monotonic()
    result = run("sql", RUNAWAY, "--timeout", "1")
    assert result.exit_code == 1
    assert "ran longer than 1s and was stopped" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert time.monotonic() - began < 20


def test_sql_prints_at_most_max_rows_and_says_so(store: CheckpointStore, run: Run) -> None:
    mgr = store.manager("s")
    for step in range(6):
        mgr.create("step", {"n": step})
    query = "SELECT seq FROM checkpoints ORDER BY seq"
    result = run("sql", query, "--max-rows", "2")
    assert result.exit_code == 0
    lines = result.stdout.strip().splitlines()
    assert [line.strip() for line in lines[2:4]] == ["1", "2"]
    assert lines[-1] == "(only the first 2 rows: raise --max-rows for more)"
    as_json = run("sql", query, "--max-rows", "2", "--json")
    assert json.loads(as_json.stdout)["rows"] == [[1], [2]]
    assert "only the first 2 rows" in as_json.stderr
    assert run("sql", query, "--max-rows", "6").stdout.strip().splitlines()[-1] == "(6 rows)"


def test_sql_escapes_control_characters_from_the_database(
    store: CheckpointStore, run: Run, backend: str
) -> None:
    escape = "char(27)" if backend == "sqlite" else "chr(27)"
    bell = "char(7)" if backend == "sqlite" else "chr(7)"
    result = run("sql", f"SELECT 'a' || {escape} || ']0;title' || {bell} || 'b' AS t")
    assert result.exit_code == 0
    assert "a\\x1b]0;title\\x07b" in result.stdout
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout


def test_sql_refuses_copy_to_stdout_in_one_line(postgres_url: str) -> None:
    CheckpointStore(postgres_url).close()
    result = invoke("--db", postgres_url, "sql", "COPY checkpoints TO STDOUT")
    assert result.exit_code == 1
    assert "COPY cannot run here" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("statement", SQLITE_WRITES)
def test_sql_cannot_change_an_sqlite_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, statement: str
) -> None:
    monkeypatch.chdir(tmp_path)  # where ATTACH or VACUUM INTO would create files
    path = tmp_path / "checkpoints.db"
    with CheckpointStore(path) as store:
        populate(store, "s", HOURLY)
    before = sha256(path)
    files = sorted(p.name for p in tmp_path.iterdir())
    result = invoke("--db", str(path), "sql", statement)
    assert result.exit_code == 1, result.stdout
    one_error_line(result)
    assert sha256(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == files  # no -wal or -shm left either
    with CheckpointStore(path) as reopened:
        assert [cp.name for cp in reopened.manager("s")] == [name for name, _ in HOURLY]


def test_sql_url_runs_the_query_on_that_database(
    store: CheckpointStore, backend_url: str, tmp_path: Path
) -> None:
    populate(store, "s", HOURLY)
    elsewhere = str(tmp_path / "not-this.db")
    query = "SELECT count(*) AS n FROM checkpoints"
    result = invoke("--db", elsewhere, "sql", "--url", backend_url, query, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["rows"] == [[6]]
    from_env = invoke("--db", elsewhere, "sql", query, env={"CHECKPOINTDB_SQL_URL": backend_url})
    assert from_env.stdout.splitlines()[-1] == "(1 row)"
    assert not Path(elsewhere).exists()


ENDLESS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c"


def test_sql_json_streams_rows_before_the_query_ends(
    store: CheckpointStore, backend_url: str
) -> None:
    # The query never ends: rows can reach the pipe only if they are written
    # as they are fetched, not gathered first.
    command = [sys.executable, "-m", "checkpointdb", "--db", backend_url, "sql", "--json"]
    process = subprocess.Popen(
        [*command, "--max-rows", str(2**62), "--timeout", "120", ENDLESS],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        head = [process.stdout.readline() for _ in range(12)]
        assert process.poll() is None  # still fetching
    finally:
        process.kill()
        process.wait()
    text = b"".join(head).decode()
    assert text.startswith('{\n  "columns": [\n    "x"\n  ],\n  "rows": [\n    [\n      1\n    ],')


def _closed_store_in(directory: Path) -> tuple[Path, str, list[str]]:
    path = directory / "checkpoints.db"
    with CheckpointStore(path) as store:
        populate(store, "s", HOURLY)
    return path, sha256(path), sorted(p.name for p in directory.iterdir())


READERS = [["sql", "SELECT count(*) FROM checkpoints"], ["list", "s"], ["sessions"], ["stats"]]


@pytest.mark.parametrize("args", READERS)
def test_reading_a_closed_sqlite_store_leaves_nothing_behind(
    tmp_path: Path, args: list[str]
) -> None:
    path, before, files = _closed_store_in(tmp_path)
    assert files == ["checkpoints.db"]
    result = invoke("--db", str(path), *args)
    assert result.exit_code == 0, result.stderr
    assert sha256(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == files


def test_reading_leaves_a_wal_someone_else_left_as_it_was(tmp_path: Path) -> None:
    # A copy taken while a writer had the store open: its -wal holds rows the
    # database file does not. Reading must not copy them into the file.
    copy = tmp_path / "copy"
    copy.mkdir()
    with CheckpointStore(tmp_path / "checkpoints.db") as store:
        populate(store, "s", HOURLY)
        for name in ("checkpoints.db", "checkpoints.db-wal"):
            shutil.copy(tmp_path / name, copy / name)
    path = copy / "checkpoints.db"
    wal = copy / "checkpoints.db-wal"
    assert wal.stat().st_size > 0
    before = (sha256(path), sha256(wal))
    for args in READERS:
        result = invoke("--db", str(path), *args)
        assert result.exit_code == 0, result.stderr
    assert "6" in invoke("--db", str(path), "sql", "SELECT count(*) FROM checkpoints").stdout
    assert (sha256(path), sha256(wal)) == before


def _without_write_permission() -> list[str]:
    """A command prefix under which directory permissions hold (root bypasses them)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot drop the right to write anywhere")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"]


@pytest.mark.parametrize("args", READERS)
def test_reading_a_sqlite_store_in_a_read_only_directory_works(
    tmp_path: Path, args: list[str]
) -> None:
    directory = tmp_path / "ro"
    directory.mkdir()
    path, before, files = _closed_store_in(directory)
    directory.chmod(0o555)
    try:
        result = subprocess.run(
            [
                *_without_write_permission(),
                sys.executable,
                "-m",
                "checkpointdb",
                "--db",
                str(path),
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        directory.chmod(0o755)
    assert result.returncode == 0, result.stderr
    assert sha256(path) == before
    assert sorted(p.name for p in directory.iterdir()) == files


def test_sql_reads_consistent_snapshots_while_a_writer_works(sqlite_path: Path) -> None:
    CheckpointStore(sqlite_path).close()
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\n"
            "from checkpointdb import CheckpointStore\n"
            "with CheckpointStore(sys.argv[1]) as store:\n"
            "    mgr = store.manager('w', keep='all')\n"
            "    for i in range(400):\n"
            "        mgr.create('step', {'i': i})\n",
            str(sqlite_path),
        ]
    )
    query = (
        "SELECT (SELECT count(*) FROM checkpoints WHERE session_id = 'w'), "
        "(SELECT coalesce(max(checkpoint_count), 0) FROM sessions WHERE id = 'w')"
    )
    seen: list[int] = []
    while writer.poll() is None:
        result = invoke("--db", str(sqlite_path), "sql", query, "--json")
        assert result.exit_code == 0, result.stderr
        [[counted, recorded]] = json.loads(result.stdout)["rows"]
        assert counted == recorded  # both from one snapshot
        seen.append(counted)
    assert writer.wait() == 0
    assert seen == sorted(seen)
    with CheckpointStore(sqlite_path, read_only=True) as reader:
        assert len(reader.manager("w")) == 400


@pytest.mark.parametrize(
    "statement",
    [
        "PRAGMA user_version",
        "PRAGMA table_info(checkpoints)",
        "PRAGMA journal_mode",
        "SELECT name FROM pragma_table_info('checkpoints') ORDER BY cid LIMIT 1",
        "PRAGMA integrity_check",
    ],
)
def test_sql_allows_pragmas_that_only_read(sqlite_path: Path, statement: str) -> None:
    CheckpointStore(sqlite_path).close()
    result = invoke("--db", str(sqlite_path), "sql", statement)
    assert result.exit_code == 0, result.stderr


POSTGRES_WRITES = [
    "INSERT INTO sessions (id, created_at, updated_at, last_seq, checkpoint_count, metadata) "
    "VALUES ('x', now(), now(), 0, 0, '{}')",
    "UPDATE checkpoints SET name = 'hacked'",
    "DELETE FROM checkpoints",
    "DROP TABLE checkpoints",
    "TRUNCATE checkpoints",
    "CREATE TABLE extra (x int)",
    "ALTER TABLE sessions ADD COLUMN y int",
    "SET TRANSACTION READ WRITE",
    "SELECT set_config('transaction_read_only', 'off', false)",
    "COMMIT; DELETE FROM checkpoints",
    "ROLLBACK; DROP TABLE checkpoints",
    "WITH gone AS (DELETE FROM checkpoints RETURNING 1) SELECT count(*) FROM gone",
    "DO $$ BEGIN DELETE FROM checkpoints; END $$",
]


@pytest.mark.parametrize("statement", POSTGRES_WRITES)
def test_sql_cannot_change_a_postgresql_database(postgres_url: str, statement: str) -> None:
    with CheckpointStore(postgres_url) as store:
        populate(store, "s", HOURLY)
        snapshot = "SELECT session_id, seq, name, data::text FROM checkpoints ORDER BY seq"
        tables = (
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema() ORDER BY 1"
        )
        before = run_read_only(store, snapshot)
        tables_before = run_read_only(store, tables)
        assert {"alembic_version", "checkpoints", "sessions"} <= {
            row[0] for row in tables_before[1]
        }
        result = invoke("--db", postgres_url, "sql", statement)
        assert result.exit_code == 1, result.stdout
        one_error_line(result)
        assert run_read_only(store, snapshot) == before
        assert run_read_only(store, tables) == tables_before  # nothing created or dropped
        assert len(store.manager("s")) == 6


# -- db ---------------------------------------------------------------------------------------


def previous_revision() -> str:
    known = migrate.known_revisions()
    return known[-2] if len(known) > 1 else "base"


def test_db_commands_upgrade_an_out_of_date_database(backend_url: str) -> None:
    with CheckpointStore(backend_url) as store:
        populate(store, "s", HOURLY)
        before = store.manager("s").export()
    database = Database(resolve_url(backend_url))
    migrate.downgrade(database, Repository(database.engine.dialect), previous_revision())
    database.dispose()
    head = migrate.head_revision()

    if previous_revision() != "base":
        # Reading commands refuse an old schema (they never migrate) and say what to run.
        refused = invoke("--db", backend_url, "sessions")
        assert refused.exit_code == 1
        assert "db upgrade" in one_error_line(refused)
    check = invoke("--db", backend_url, "db", "check")
    assert check.exit_code == 1
    assert "db upgrade" in one_error_line(check)
    checked = invoke("--db", backend_url, "db", "check", "--json")
    assert checked.exit_code == 1
    assert json.loads(checked.stdout)["at_head"] is False
    current = json.loads(invoke("--db", backend_url, "db", "current", "--json").stdout)
    assert current["current"] == (None if previous_revision() == "base" else previous_revision())
    assert current["head"] == head

    upgraded = invoke("--db", backend_url, "db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.stderr
    assert head in upgraded.stdout
    assert invoke("--db", backend_url, "db", "check").exit_code == 0
    again = invoke("--db", backend_url, "db", "upgrade", "--json")
    assert json.loads(again.stdout) == {"database": current["database"], "from": head, "to": head}
    assert "already at schema revision" in invoke("--db", backend_url, "db", "upgrade").stdout
    with CheckpointStore(backend_url, auto_upgrade=False) as store:
        assert store.schema_revision() == head
        if previous_revision() != "base":
            assert store.manager("s").export() == before


def test_db_current_and_history_name_the_revisions(backend_url: str) -> None:
    CheckpointStore(backend_url).close()
    head = migrate.head_revision()
    current = invoke("--db", backend_url, "db", "current")
    assert f"at schema revision {head}, the newest" in current.stdout
    history = json.loads(invoke("--db", backend_url, "db", "history", "--json").stdout)
    assert [entry["revision"] for entry in history] == list(migrate.known_revisions())
    assert [entry["current"] for entry in history][-1] is True
    table = invoke("--db", backend_url, "db", "history").stdout
    assert "current, head" in table


def test_db_history_works_without_a_database(tmp_path: Path) -> None:
    result = invoke("--db", str(tmp_path / "none.db"), "db", "history")
    assert result.exit_code == 0
    assert migrate.head_revision() in result.stdout
    assert "no database at" in result.stdout
    assert not (tmp_path / "none.db").exists()


def test_db_upgrade_creates_a_new_database(sqlite_path: Path) -> None:
    result = invoke("--db", str(sqlite_path), "db", "upgrade")
    assert result.exit_code == 0
    assert "created the schema" in result.stdout
    assert invoke("--db", str(sqlite_path), "db", "check").exit_code == 0


def test_a_database_from_a_newer_checkpointdb_is_refused_untouched(sqlite_path: Path) -> None:
    CheckpointStore(sqlite_path).close()
    with sqlite3.connect(sqlite_path) as raw:
        raw.execute("UPDATE alembic_version SET version_num = '9999'")
    raw.close()
    before = sha256(sqlite_path)
    for args in (["sessions"], ["db", "upgrade"], ["db", "check"]):
        result = invoke("--db", str(sqlite_path), *args)
        assert result.exit_code == 1, args
        assert "newer" in one_error_line(result)
    assert "does not know" in invoke("--db", str(sqlite_path), "db", "current").stdout
    assert sha256(sqlite_path) == before


# -- known bugs elsewhere -----------------------------------------------------------------


def test_list_since_excludes_a_checkpoint_from_before_the_year_1000(sqlite_path: Path) -> None:
    with CheckpointStore(sqlite_path) as store:
        populate(
            store,
            "s",
            [("ancient", "0999-12-31T00:00:00+00:00"), ("modern", "2026-01-01T00:00:00+00:00")],
        )
    result = invoke(
        "--db", str(sqlite_path), "list", "s", "--since", "1000-01-01T00:00:00Z", "--json"
    )
    assert [cp["name"] for cp in json.loads(result.stdout)] == ["modern"]
