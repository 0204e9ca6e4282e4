"""docs/SQL.md and README.md cannot rot: the schema they describe, what their SQL returns.

A block is marked by the HTML comment on the line before it::

    <!-- sql-example: latest-per-session sqlite postgresql -->

naming the recipe and the backends it runs on. Its expected result is the
first ```text block after it: a header of column names, a line of dashes,
then one line per row, cells separated by ``|``. An empty cell is NULL; the
cell ``<now>`` is a time within the last hour (the example's live session).
The rows come from the example store that examples/docs_store.py builds, which
docs/SQL.md describes (the recipes of :data:`OWN_STORES` read their own). The
column tables under docs/SQL.md's "### `name`" headings and its index table
are compared with the live schema.
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from sqlalchemy import inspect

from checkpointdb import CheckpointStore
from checkpointdb.engine import Database, resolve_url
from checkpointdb.readonly import run_read_only

REPO_ROOT = Path(__file__).resolve().parents[1]
SQL_DOC = REPO_ROOT / "docs" / "SQL.md"
DOCUMENTS = [SQL_DOC, REPO_ROOT / "README.md"]
BACKENDS = ("sqlite", "postgresql")
# docs/SQL.md promises these recipes, each on both backends.
PROMISED_RECIPES = {
    "latest-per-session",
    "per-name-per-hour",
    "idle-sessions",
    "biggest-payloads",
    "json-field-filter",
}

FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)
MARKER = re.compile(r"<!--\s*sql-example:\s*([\w-]+)((?:\s+\w+)+)\s*-->\s*$")
# Queries on a LangGraph thread: tests/test_langgraph_readme.py runs them.
LANGGRAPH_MARKER = re.compile(r"<!--\s*langgraph-sql-example:\s*([\w-]+)\s*-->\s*$")
NOW = "<now>"
SECTION = re.compile(r"^### `(\w+)`\n(.*?)(?=^#|\Z)", re.DOTALL | re.MULTILINE)
FIRST_CELL = re.compile(r"^\| `(\w+)` \|", re.MULTILINE)


def _load_docs_store() -> ModuleType:
    """examples/docs_store.py, which builds the store every documented result comes from."""
    path = REPO_ROOT / "examples" / "docs_store.py"
    spec = importlib.util.spec_from_file_location("docs_store", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build_example: Callable[[CheckpointStore], None] = _load_docs_store().build_example


# The conversation README's OpenAI Agents SDK section reads, as the SDK adds it.
AGENTS_TURNS: list[list[dict[str, Any]]] = [
    [{"role": "user", "content": "My name is Ana."}],
    [
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [
                {"type": "output_text", "text": "Nice to meet you, Ana.", "annotations": []}
            ],
        }
    ],
    [{"role": "user", "content": "What is the weather in Lisbon?"}],
    [
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city": "Lisbon"}',
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny, 24 C"},
        {
            "id": "msg_2",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [
                {"type": "output_text", "text": "Sunny and 24 C in Lisbon, Ana.", "annotations": []}
            ],
        },
    ],
]


def build_agents_conversation(store: CheckpointStore) -> None:
    """Session chat-42, written by an OpenAI Agents SDK session."""
    from checkpointdb.openai_agents import CheckpointDBSession  # needs the openai-agents extra

    async def fill() -> None:
        async with CheckpointDBSession("chat-42", store.url) as session:
            for turn in AGENTS_TURNS:
                await session.add_items(turn)

    asyncio.run(fill())


# Recipes that read a store of their own, and what fills it.
OWN_STORES = {"openai-agents-transcript": build_agents_conversation}


@dataclass(frozen=True)
class Example:
    """One marked SQL block and the result printed for it."""

    where: str
    recipe: str
    backends: tuple[str, ...]
    sql: str
    columns: list[str]
    rows: list[list[str]]

    def __str__(self) -> str:
        return f"{self.where} {self.recipe}"


def _parse_table(text: str, where: str) -> tuple[list[str], list[list[str]]]:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) >= 2 and set(lines[1].strip()) <= {"-", "+", "|", " "}, (
        f"{where}: the result block needs a header line and a line of dashes"
    )
    columns = [cell.strip() for cell in lines[0].split("|")]
    rows = [[cell.strip() for cell in line.split("|")] for line in lines[2:]]
    for row in rows:
        assert len(row) == len(columns), f"{where}: row {row} does not have {len(columns)} cells"
    return columns, rows


def examples_in(document: Path) -> list[Example]:
    """Every ```sql block of ``document``, with its marker and printed result."""
    text = document.read_text(encoding="utf-8")
    blocks = list(FENCE.finditer(text))
    found = []
    for index, block in enumerate(blocks):
        if block.group(1) != "sql":
            continue
        line = text.count("\n", 0, block.start()) + 1
        where = f"{document.name}:{line}"
        before = text[: block.start()].rstrip().splitlines()
        if before and LANGGRAPH_MARKER.match(before[-1].strip()):
            continue
        marker = MARKER.match(before[-1].strip()) if before else None
        assert marker, f"{where}: a ```sql block needs <!-- sql-example: NAME BACKENDS --> above"
        backends = tuple(marker.group(2).split())
        assert backends and set(backends) <= set(BACKENDS), f"{where}: unknown backend {backends}"
        result = next((b for b in blocks[index + 1 :] if b.group(1) == "text"), None)
        assert result is not None, f"{where}: no ```text result block follows"
        columns, rows = _parse_table(result.group(2), where)
        found.append(Example(where, marker.group(1), backends, block.group(2), columns, rows))
    return found


ALL_EXAMPLES = [example for document in DOCUMENTS for example in examples_in(document)]


def shown(value: Any) -> str:
    """A cell as the result tables print it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return str(value)


def matches(actual: str, expected: str) -> bool:
    if expected != NOW:
        return actual == expected
    try:
        moment = datetime.fromisoformat(actual)
    except ValueError:
        return False
    return timedelta(0) <= datetime.now(UTC) - moment < timedelta(hours=1)


def test_docs_promise_every_recipe_on_both_backends() -> None:
    recipes: dict[str, set[str]] = {}
    for example in ALL_EXAMPLES:
        recipes.setdefault(example.recipe, set()).update(example.backends)
    assert set(recipes) >= PROMISED_RECIPES
    for recipe, backends in recipes.items():
        assert backends == set(BACKENDS), f"{recipe} runs only on {sorted(backends)}"


@pytest.mark.parametrize(
    ("backend", "example"),
    [(backend, example) for example in ALL_EXAMPLES for backend in example.backends],
    indirect=["backend"],
    ids=str,
)
def test_documented_query_returns_the_documented_rows(
    store: CheckpointStore, backend: str, example: Example
) -> None:
    OWN_STORES.get(example.recipe, build_example)(store)
    columns, rows = run_read_only(store, example.sql)
    assert columns == example.columns, f"{example}: columns"
    actual = [[shown(cell) for cell in row] for row in rows]
    assert len(actual) == len(example.rows), f"{example}: {actual}"
    for got, want in zip(actual, example.rows, strict=True):
        assert all(matches(a, e) for a, e in zip(got, want, strict=True)), (
            f"{example}: got {got}, documented {want}"
        )


def test_the_documented_schema_is_the_schema(backend_url: str) -> None:
    text = SQL_DOC.read_text(encoding="utf-8")
    documented = {m.group(1): FIRST_CELL.findall(m.group(2)) for m in SECTION.finditer(text)}
    CheckpointStore(backend_url).close()
    db = Database(resolve_url(backend_url))
    try:
        with db.connect() as connection:
            inspector = inspect(connection)
            tables = set(inspector.get_table_names()) - {"alembic_version"}
            assert set(documented) == tables | set(inspector.get_view_names())
            for name, columns in documented.items():
                assert [c["name"] for c in inspector.get_columns(name)] == columns, name
            indexes = {ix["name"] for table in tables for ix in inspector.get_indexes(table)}
            constraints = {inspector.get_pk_constraint(table)["name"] for table in tables}
            for table in tables:
                constraints |= {fk["name"] for fk in inspector.get_foreign_keys(table)}
                constraints |= {ck["name"] for ck in inspector.get_check_constraints(table)}
                constraints |= {uq["name"] for uq in inspector.get_unique_constraints(table)}
    finally:
        db.dispose()
    index_table = text.split("### Constraints and indexes", 1)[1].split("\n#", 1)[0]
    assert set(FIRST_CELL.findall(index_table)) == (indexes | constraints) - {None}


# `checkpointdb sql "..."` command lines in the documents (placeholders with
# "..." aside): each query must run on both backends.
CLI_QUERY = re.compile(r'checkpointdb(?: --db \S+)? sql "([^"]+)"')
CLI_QUERIES = sorted(
    {
        query
        for document in DOCUMENTS
        for query in CLI_QUERY.findall(document.read_text())
        if "..." not in query
    }
)


def test_the_documents_show_command_line_queries() -> None:
    assert CLI_QUERIES


@pytest.mark.parametrize("query", CLI_QUERIES)
def test_documented_command_line_query_runs(store: CheckpointStore, query: str) -> None:
    build_example(store)
    columns, rows = run_read_only(store, query)
    assert columns and rows, query
