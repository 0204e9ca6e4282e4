"""The golden SQL files: every statement the repository compiles, per dialect, kept in the repo.

A change to a statement shows up as a diff of tests/sql/*.sql in review;
these tests fail, with the diff and the command that rewrites the files,
until the files match the code.
"""

from __future__ import annotations

import difflib

import pytest
from regenerate_sql import DIALECT_URLS, REGENERATE, compiled, golden_path, render

from checkpointdb import CheckpointStore


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


def test_an_open_store_runs_the_statements_of_the_golden_file(store: CheckpointStore) -> None:
    # Compiled on a live connection (server version known) they are the same text.
    opened = render(store.context().repo.statements(), store.dialect)
    assert opened == compiled(store.dialect)


def test_the_golden_files_name_the_core_statements() -> None:
    text = golden_path("sqlite").read_text(encoding="utf-8")
    for statement in ("INSERT INTO checkpoints", "INSERT INTO sessions", "DELETE FROM checkpoints"):
        assert statement in text
    assert "-- fork_copy[lineage]\nWITH RECURSIVE" in text
