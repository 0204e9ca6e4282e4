"""Every script in examples/ runs; every Python snippet of README.md and docs/SQL.md runs.

A ```python block may be left out by the HTML comment on the line before it,
``<!-- not-run: REASON -->`` (it needs PostgreSQL, or runs forever); the
reason is required.
"""

from __future__ import annotations

import os
import re
import runpy
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from checkpointdb import CheckpointStore

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = REPO_ROOT / "examples"
DOCUMENTS = [REPO_ROOT / "README.md", REPO_ROOT / "docs" / "SQL.md"]

PYTHON_BLOCK = re.compile(r"^([ \t]*)```python[ \t]*\n(.*?)^\1```[ \t]*$", re.DOTALL | re.MULTILINE)
NOT_RUN = re.compile(r"<!--\s*not-run:(.*?)-->\s*$")


def run_script(path: Path, *args: str, cwd: Path, url: str | None = None) -> str:
    """Run a script with this interpreter in ``cwd``; its output, or a failure showing it."""
    env = {key: value for key, value in os.environ.items() if key != "CHECKPOINTDB_URL"}
    if url is not None:
        env["CHECKPOINTDB_URL"] = url
    result = subprocess.run(
        [sys.executable, str(path), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"{path.name} {args}: {result.stdout}{result.stderr}"
    return result.stdout


# -- examples/ ----------------------------------------------------------------------


def test_every_example_has_a_test() -> None:
    # openai_agents_chat.py is run by tests/test_openai_agents.py.
    tested = {
        "sync_agent",
        "async_agent",
        "postgres_agent",
        "docs_store",
        "sql_queries",
        "openai_agents_chat",
    }
    assert {path.stem for path in EXAMPLES.glob("*.py")} == tested


def test_sync_agent_resumes_after_an_interruption(backend_url: str, tmp_path: Path) -> None:
    script = EXAMPLES / "sync_agent.py"
    first = run_script(script, "--stop-after", "2", cwd=tmp_path, url=backend_url)
    assert "stopping before 'read'" in first
    second = run_script(script, cwd=tmp_path, url=backend_url)
    assert "resuming after 'search'" in second and "plan:" not in second
    with CheckpointStore(backend_url) as store:
        steps = [cp.name for cp in store.manager("sync-agent")]
    assert steps == ["plan", "search", "read", "write_report"]


def test_async_agent_runs_three_typed_agents(backend_url: str, tmp_path: Path) -> None:
    output = run_script(EXAMPLES / "async_agent.py", cwd=tmp_path, url=backend_url)
    assert "bees: plan, search, read, write_report" in output
    assert "bees after 'plan': State(topic='bees', done=['plan'])" in output
    with CheckpointStore(backend_url) as store:
        assert sorted(info.id for info in store.sessions()) == [
            "research-bees",
            "research-ink",
            "research-tides",
        ]
        assert all(info.checkpoint_count == 4 for info in store.sessions())


def test_postgres_example(postgres_url: str, tmp_path: Path) -> None:
    for _ in range(2):  # a rerun starts over
        output = run_script(EXAMPLES / "postgres_agent.py", cwd=tmp_path, url=postgres_url)
        assert "200 checkpoints from 8 threads, ids 1..200" in output
        assert "40 steps had ok=false" in output


def test_postgres_example_says_it_needs_a_server(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "postgres_agent.py")],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "CHECKPOINTDB_URL"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "set CHECKPOINTDB_URL to a postgresql+psycopg:// URL" in result.stdout


def test_docs_store_builds_the_store_docs_sql_queries(tmp_path: Path) -> None:
    run_script(EXAMPLES / "docs_store.py", cwd=tmp_path)
    with sqlite3.connect(tmp_path / "docs-example.db") as connection:
        rows = connection.execute(
            "SELECT id, payload_bytes FROM checkpoint_view ORDER BY session_id, seq"
        ).fetchall()
    # The first rows of docs/SQL.md's example-data table.
    assert rows[:4] == [("agent-1:1", 78), ("agent-1:2", 66), ("agent-1:3", 65), ("agent-1:4", 277)]
    assert len(rows) == 7


def test_sql_queries_example(backend_url: str, tmp_path: Path) -> None:
    output = run_script(EXAMPLES / "sql_queries.py", backend_url, cwd=tmp_path)
    assert "agent-1:4 | tool_done | 2026-01-05T10:10:00.000000Z | 277" in output
    assert "agent-2 | 2 | 161 | 2026-01-05T10:30:00.000000Z" in output


# -- the documents' Python snippets ---------------------------------------------------


def python_blocks() -> list[tuple[str, str, str | None]]:
    """(where, code, reason it is not run or None) for each ```python block."""
    blocks = []
    for document in DOCUMENTS:
        text = document.read_text(encoding="utf-8")
        for match in PYTHON_BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            before = text[: match.start()].rstrip().splitlines()
            mark = NOT_RUN.match(before[-1].strip()) if before else None
            reason = mark.group(1).strip() if mark else None
            code = textwrap.dedent(match.group(2))
            blocks.append((f"{document.name}:{line}", code, reason))
    return blocks


BLOCKS = python_blocks()


def test_documents_have_python_snippets_and_every_skip_gives_a_reason() -> None:
    assert len(BLOCKS) >= 6
    for where, _code, reason in BLOCKS:
        assert reason != "", f"{where}: <!-- not-run: ... --> needs a reason"


@pytest.mark.parametrize(
    ("where", "code"),
    [(where, code) for where, code, reason in BLOCKS if reason is None],
    ids=[where for where, _code, reason in BLOCKS if reason is None],
)
def test_python_snippet_runs_as_pasted(
    where: str, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In this process, in a fresh directory, as its own __main__: no interpreter
    # start-up per snippet, and names from other snippets are not visible.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CHECKPOINTDB_URL", raising=False)
    snippet = tmp_path / "snippet.py"
    snippet.write_text(code, encoding="utf-8")
    runpy.run_path(str(snippet), run_name="__main__")
