"""The golden SQL files: every statement the repository compiles, per dialect, kept in the repo.

A change to a statement shows up as a diff of tests/sql/*.sql in review;
these tests fail, with the diff and the command that rewrites the files,
until the files match the code.
"""

from __future__ import annotations

import difflib

import pytest
from regenerate_sql import (
    DIALECT_URLS,
    REGENERATE,
    SQLITE_MODULE,
    compiled,
    dialect_for,
    golden_path,
    render,
    sqlite_module,
)

from checkpointdb import CheckpointStore
from checkpointdb.repository import Repository


def _differences(expected: str, actual: str, name: str) -> str:
    return "".join(
        difflib.unified_diff(
            expected.splitlines(keepends=True),
            actual.splitlines(keepends=True),
            fromfile=f"{name} (in the repository)",
            tofile=f"{name} (compiled from the code)",
        )
    )


@pytest.mark.parametrize("dialect_name", list(DIALECT_URLS))
def test_golden_sql_file_matches_the_compiled_statements(dialect_name: str) -> None:
    path = golden_path(dialect_name)
    assert path.exists(), f"{path} is missing: run `{REGENERATE}`"
    kept = path.read_text(encoding="utf-8")
    current = compiled(dialect_name)
    if kept != current:
        pytest.fail(
            f"the SQL the repository compiles for {dialect_name} changed; if that is "
            f"intended, run `{REGENERATE}` and commit the new file:\n"
            + _differences(kept, current, str(path)),
            pytrace=False,
        )


def test_the_precompiled_sqlite_statements_match_the_code() -> None:
    kept = SQLITE_MODULE.read_text(encoding="utf-8")
    current = sqlite_module()
    if kept != current:
        pytest.fail(
            f"the SQLite statements compiled in advance are out of date; run `{REGENERATE}` "
            "and commit the new file:\n" + _differences(kept, current, str(SQLITE_MODULE)),
            pytrace=False,
        )


def test_an_sqlite_repository_by_name_runs_what_the_dialect_compiles() -> None:
    by_name = Repository("sqlite")
    by_dialect = Repository(dialect_for("sqlite"))
    assert by_name.statements() == by_dialect.statements()
    for name, value in vars(by_dialect).items():
        if type(value).__name__ == "_Compiled":
            assert getattr(by_name, name) == value, name
    for shape, found in by_name._find_statements.items():
        sql, names, _constants = by_dialect.sqlite_find_entry(shape)
        assert found.sql == sql, shape
        # Each value lands on the mark the dialect puts it at.
        values = {name: f"value of {name}" for name in names}
        assert found.in_order is not None
        assert found.in_order(values) == by_dialect._compile_find(shape).in_order(values), shape
    assert len(by_name._find_statements) == 64


def test_an_open_store_runs_the_statements_of_the_golden_file(store: CheckpointStore) -> None:
    # Compiled on a live connection (server version known) they are the same text.
    opened = render(store.context().repo.statements(), store.dialect)
    assert opened == compiled(store.dialect)


def test_the_golden_files_name_the_core_statements() -> None:
    text = golden_path("sqlite").read_text(encoding="utf-8")
    for statement in ("INSERT INTO checkpoints", "INSERT INTO sessions", "DELETE FROM checkpoints"):
        assert statement in text
    assert "-- fork_copy[lineage]\nWITH RECURSIVE" in text
