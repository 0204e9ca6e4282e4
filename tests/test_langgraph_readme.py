"""README's "Use with LangGraph" runs as printed, and its SQL returns the printed rows."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest
from test_readme_sql import FENCE, LANGGRAPH_MARKER, _parse_table, shown

from checkpointdb import CheckpointStore
from checkpointdb.readonly import run_read_only

README = Path(__file__).resolve().parents[1] / "README.md"
TEXT = README.read_text(encoding="utf-8")
EXAMPLE = re.search(r"<!-- langgraph-example -->\n```python\n(.*?)^```", TEXT, re.S | re.M)


def _sql_examples() -> list[tuple[str, str, list[str], list[list[str]]]]:
    blocks = list(FENCE.finditer(TEXT))
    found = []
    for index, block in enumerate(blocks):
        before = TEXT[: block.start()].rstrip().splitlines()
        marker = LANGGRAPH_MARKER.match(before[-1].strip()) if before else None
        if block.group(1) == "sql" and marker:
            result = next(b for b in blocks[index + 1 :] if b.group(1) == "text")
            columns, rows = _parse_table(result.group(2), marker.group(1))
            found.append((marker.group(1), block.group(2), columns, rows))
    return found


SQL_EXAMPLES = _sql_examples()


def test_the_readme_shows_the_example_and_queries() -> None:
    assert EXAMPLE is not None
    assert {name for name, *_ in SQL_EXAMPLES} == {"thread-steps", "thread-values"}


@pytest.mark.parametrize("example", SQL_EXAMPLES, ids=lambda e: e[0])
def test_readme_langgraph_example_and_query(
    backend_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, example: tuple
) -> None:
    assert EXAMPLE is not None
    monkeypatch.chdir(tmp_path)
    code = EXAMPLE.group(1).replace('"agent.db"', repr(backend_url))
    # A module LangGraph can find by name: it reads the state's type hints from it.
    module = types.ModuleType("readme_langgraph_example")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(code, str(README), "exec"), module.__dict__)
    name, sql, columns, rows = example
    with CheckpointStore(backend_url) as store:
        got_columns, got_rows = run_read_only(store, sql)
    assert got_columns == columns, name
    assert [[shown(cell) for cell in row] for row in got_rows] == rows, name
