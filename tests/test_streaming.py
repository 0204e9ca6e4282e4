"""Export, import and timelines that stream: the library calls the CLI is a thin layer on."""

from __future__ import annotations

import io
import json
import resource
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from checkpointdb import CheckpointStore, ImportFormatError, cli
from checkpointdb.cli import output
from checkpointdb.jsonstream import JSONArrayReader
from checkpointdb.repository import Repository

START = datetime(2026, 1, 1, tzinfo=UTC)


def entries(count: int, session: str = "x", start: int = 1) -> list[dict[str, Any]]:
    return [
        {
            "id": f"{session}:{seq}",
            "name": f"step-{seq % 3}",
            "timestamp": (START + timedelta(minutes=seq)).isoformat(),
            "data": {"seq": seq, "text": "é" * (seq % 50)},
            "metadata": {"run": "r1"},
        }
        for seq in range(start, start + count)
    ]


class CountingReader(io.BytesIO):
    """A binary stream that records how much each read asked for."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.sizes: list[int] = []

    def read(self, size: int | None = -1) -> bytes:
        self.sizes.append(-1 if size is None else size)
        return super().read(size)


# -- the JSON array reader --------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 3, 64, 1 << 16])
def test_reader_yields_what_json_loads_gives_whatever_the_chunk_size(chunk: int) -> None:
    document = [*entries(20), 12345678901234567890, -2.5e-3, "tail", None, [1, [2]], {}]
    for text in (json.dumps(document), json.dumps(document, indent=2), " [ ] ".strip()):
        expected = json.loads(text)
        assert list(JSONArrayReader(io.StringIO(text), chunk_chars=chunk)) == expected
        assert list(JSONArrayReader(io.BytesIO(text.encode()), chunk_chars=chunk)) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("{}", "must be a JSON list of checkpoints, got dict"),
        ("[1, 2", "unexpected end"),
        ("[1 2]", "expected ','"),
        ("[1] [2]", "extra data"),
        ("[1,]", "Expecting value"),
        ('[{"a": tru}]', "Expecting value"),
    ],
)
def test_reader_names_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ImportFormatError, match=message):
        list(JSONArrayReader(io.StringIO(text), chunk_chars=2))


def test_reader_refuses_bytes_that_are_not_utf8() -> None:
    with pytest.raises(ImportFormatError, match="not UTF-8"):
        list(JSONArrayReader(io.BytesIO(b'["ok", "\xff"]'), chunk_chars=4))


def test_reader_reads_in_chunks_not_the_whole_stream() -> None:
    data = json.dumps(entries(2000)).encode()
    stream = CountingReader(data)
    assert len(list(JSONArrayReader(stream, chunk_chars=4096))) == 2000
    assert max(stream.sizes) <= 8192  # no read(-1), no read of the whole file
    assert len(stream.sizes) > len(data) // 8192


# -- export_to / import_from -------------------------------------------------------------


def test_export_to_writes_exactly_export(store: CheckpointStore) -> None:
    mgr = store.manager("s", max_checkpoints=None, compress_after=None)
    assert_export_equal(mgr)  # empty
    mgr.import_checkpoints(json.dumps(entries(1200, "s")))
    mgr.pin("s:7")
    progress: list[int] = []
    buffer = io.StringIO()
    assert mgr.export_to(buffer, progress=progress.append) == 1200
    assert buffer.getvalue() == mgr.export()
    assert progress == [1] * 1200


def assert_export_equal(mgr: Any) -> None:
    buffer = io.StringIO()
    mgr.export_to(buffer)
    assert buffer.getvalue() == mgr.export()


@pytest.mark.parametrize("binary", [False, True], ids=["text", "bytes"])
def test_import_from_matches_import_checkpoints(store: CheckpointStore, binary: bool) -> None:
    document = json.dumps(entries(700, "a"))
    store.manager("a").create("first", {})
    store.manager("b").create("first", {})
    stream: Any = io.BytesIO(document.encode()) if binary else io.StringIO(document)
    read: list[int] = []
    streamed = store.manager("a", max_checkpoints=None).import_from(stream, progress=read.append)
    listed = store.manager("b", max_checkpoints=None).import_checkpoints(document)
    assert streamed == listed == 700
    assert sum(read) == (len(document.encode()) if binary else len(document))

    def rows(session: str) -> list[tuple[Any, ...]]:
        return [
            (cp.seq, cp.name, cp.timestamp, cp.data, cp.metadata, cp.pinned)
            for cp in store.manager(session)
        ]

    assert rows("a")[1:] == rows("b")[1:]  # after the "first" each made by hand
    assert len(rows("a")) == 701


@pytest.mark.parametrize("where", ["first", "last"])
def test_a_bad_entry_anywhere_in_a_stream_imports_nothing(
    store: CheckpointStore, where: str
) -> None:
    mgr = store.manager("s")
    mgr.create("existing", {"keep": True})
    document = entries(1500, "s", start=10)
    bad = 0 if where == "first" else len(document) - 1
    document[bad]["timestamp"] = "2026-01-01T00:00:00"  # naive: refused
    with pytest.raises(ImportFormatError, match=f"entry {bad}"):
        mgr.import_from(io.StringIO(json.dumps(document)))
    assert [cp.name for cp in mgr] == ["existing"]
    info = store.session("s")
    assert info is not None and info.last_seq == 1 and info.checkpoint_count == 1
    with pytest.raises(ImportFormatError):
        store.manager("new").import_from(io.StringIO(json.dumps(document)))
    assert store.session("new") is None


def test_a_truncated_stream_imports_nothing(store: CheckpointStore) -> None:
    text = json.dumps(entries(300))
    with pytest.raises(ImportFormatError, match="not valid JSON"):
        store.manager("t").import_from(io.StringIO(text[: len(text) // 2]))
    assert store.session("t") is None


@pytest.mark.slow
def test_importing_200k_checkpoints_stays_under_150_mb(tmp_path: Path) -> None:
    script = Path(__file__).parent.parent / "benchmarks" / "import_rss.py"
    done = subprocess.run(
        [sys.executable, str(script), "--checkpoints", "200000"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    peak = float(done.stdout.split("peak RSS ")[1].split()[0])
    assert peak < 150, done.stdout
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 0


# -- timeline and spans ------------------------------------------------------------------


def test_timeline_counts_every_checkpoint_into_equal_slices(store: CheckpointStore) -> None:
    store.manager("a", max_checkpoints=None).import_checkpoints(json.dumps(entries(100, "a")))
    store.manager("b").import_checkpoints(json.dumps(entries(5, "b", start=200)))
    whole = store.timeline(slices=10)
    assert whole.count == 105
    assert whole.first == START + timedelta(minutes=1)
    assert whole.last == START + timedelta(minutes=204)
    assert len(whole.slices) == 10
    assert sum(part.count for part in whole.slices) == 105
    width = (whole.last - whole.first) / 10
    for part in whole.slices:
        assert part.end - part.start == width
        expected = sum(
            1
            for seq in [*range(1, 101), *range(200, 205)]
            if part.start <= START + timedelta(minutes=seq) < part.end
            or (part is whole.slices[-1] and START + timedelta(minutes=seq) == part.end)
        )
        assert part.count == expected
    one = store.timeline("b", slices=10)
    assert (one.count, len(one.slices)) == (5, 5)


def test_timeline_of_nothing_and_of_one_instant(store: CheckpointStore) -> None:
    assert store.timeline().slices == []
    assert store.timeline().first is None
    document = [{**entry, "timestamp": START.isoformat()} for entry in entries(3)]
    store.manager("s").import_checkpoints(json.dumps(document))
    same = store.timeline("s")
    assert [(part.start, part.end, part.count) for part in same.slices] == [(START, START, 3)]


def test_checkpoint_spans_are_per_session_first_and_last(store: CheckpointStore) -> None:
    store.manager("a").import_checkpoints(json.dumps(entries(4, "a")))
    store.manager("b").create("now", {})
    store.manager("empty").create("x", {})
    store.manager("empty").clear()
    spans = {span.session_id: span for span in store.checkpoint_spans()}
    assert set(spans) == {"a", "b"}
    assert spans["a"].checkpoint_count == 4
    assert spans["a"].first == START + timedelta(minutes=1)
    assert spans["a"].last == START + timedelta(minutes=4)
    assert [span.session_id for span in store.checkpoint_spans("a")] == ["a"]


# -- the CLI reads no more than it shows ---------------------------------------------------


@pytest.fixture
def rows_read(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every checkpoint row turned into a Checkpoint (payload decoded) during a test."""
    seen: list[str] = []
    original = Repository._row_to_checkpoint

    def counting(self: Repository, session_id: str, row: Any) -> Any:
        seen.append(session_id)
        return original(self, session_id, row)

    monkeypatch.setattr(Repository, "_row_to_checkpoint", counting)
    return seen


def test_stats_does_not_read_every_payload(
    store: CheckpointStore, backend_url: str, rows_read: list[str]
) -> None:
    for session in ("a", "b"):
        store.manager(session, max_checkpoints=None).import_checkpoints(
            json.dumps(entries(300, session))
        )
    rows_read.clear()
    result = CliRunner().invoke(cli.cli, ["--db", backend_url, "stats", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["total_count"] == 600
    assert len(rows_read) <= 4  # the first and last of each session, for the summary


def test_list_since_reads_only_what_it_shows(
    store: CheckpointStore, backend_url: str, rows_read: list[str]
) -> None:
    store.manager("s", max_checkpoints=None).import_checkpoints(json.dumps(entries(600, "s")))
    rows_read.clear()
    args = ["--db", backend_url, "list", "s", "--since", "2026-01-01T00:00:00Z", "--name"]
    result = CliRunner().invoke(cli.cli, [*args, "step-1", "--limit", "5", "--json"])
    assert result.exit_code == 0, result.output
    assert [cp["id"] for cp in json.loads(result.stdout)] == [
        f"s:{seq}" for seq in (598, 595, 592, 589, 586)
    ]
    assert len(rows_read) == 6  # the 5 shown and one that says there are more


def test_import_draws_progress_on_a_terminal(
    backend_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    export = tmp_path / "e.json"
    export.write_text(json.dumps(entries(50)))
    run: Callable[[], Any] = lambda: CliRunner().invoke(  # noqa: E731
        cli.cli, ["--db", backend_url, "import", "s", str(export)]
    )
    monkeypatch.setattr(output, "PROGRESS_MIN_BYTES", 1)
    assert "Importing" not in run().stderr
    monkeypatch.setattr(output, "stderr_is_terminal", lambda: True)
    shown = run()
    assert shown.exit_code == 0, shown.output
    assert "Importing" in shown.stderr
    assert "Importing" not in shown.stdout
