"""Fixtures: every test gets its own database, on every backend.

The backend is a parameter, not a copy of the suite: tests that take
``backend_url`` / ``store`` / ``new_url`` run on SQLite always and on
PostgreSQL when ``CHECKPOINTDB_TEST_POSTGRES_URL`` points at a server (each
test in a schema of its own, dropped afterwards). With
``CHECKPOINTDB_REQUIRE_POSTGRES=1`` (CI) a missing server fails instead of skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from checkpointdb import CheckpointStore

POSTGRES_URL = os.environ.get("CHECKPOINTDB_TEST_POSTGRES_URL", "")
REQUIRE_POSTGRES = os.environ.get("CHECKPOINTDB_REQUIRE_POSTGRES") == "1"
BACKENDS = ["sqlite", "postgresql"]
# How many PostgreSQL tests a run without a server left out.
_LEFT_OUT = pytest.StashKey[int]()


def _driver_url(url: str) -> str:
    """The admin connection string for psycopg (no SQLAlchemy driver suffix)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _postgres_or_skip() -> str:
    reason = ""
    if not POSTGRES_URL:
        reason = "CHECKPOINTDB_TEST_POSTGRES_URL is not set"
    else:
        try:
            import psycopg

            with psycopg.connect(_driver_url(POSTGRES_URL), connect_timeout=5):
                pass
        except Exception as exc:
            reason = f"PostgreSQL at CHECKPOINTDB_TEST_POSTGRES_URL is unreachable: {exc}"
    if reason:
        if REQUIRE_POSTGRES:
            pytest.fail(f"CHECKPOINTDB_REQUIRE_POSTGRES=1 but {reason}")
        pytest.skip(reason)
    return POSTGRES_URL


class PostgresSchemas:
    """Creates a schema per database a test asks for; drops them all afterwards."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.created: list[str] = []

    def new_url(self) -> str:
        import psycopg

        schema = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(_driver_url(self.base_url), autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        self.created.append(schema)
        separator = "&" if "?" in self.base_url else "?"
        return f"{self.base_url}{separator}options={quote(f'-csearch_path={schema}')}"

    def drop_all(self) -> None:
        import psycopg

        with psycopg.connect(_driver_url(self.base_url), autocommit=True) as conn:
            for schema in self.created:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def _needs_postgres(item: pytest.Item) -> bool:
    """True for a test that runs only against the PostgreSQL server."""
    callspec = getattr(item, "callspec", None)
    if callspec is not None and callspec.params.get("backend") == "postgresql":
        return True
    return "postgres_url" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without a PostgreSQL server (and outside CI), leave its tests out in one line.

    Skipping them one by one buried the run's result under a line per test.
    """
    if POSTGRES_URL or REQUIRE_POSTGRES:
        return
    kept = [item for item in items if not _needs_postgres(item)]
    left_out = [item for item in items if _needs_postgres(item)]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = kept
        config.stash[_LEFT_OUT] = len(left_out)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say once why the PostgreSQL tests did not run, and how to run them."""
    count = terminalreporter.config.stash.get(_LEFT_OUT, 0)
    if count:
        terminalreporter.write_line(
            f"{count} PostgreSQL tests left out: CHECKPOINTDB_TEST_POSTGRES_URL is not set "
            '(start a server with: eval "$(bash .ci/postgres.sh)")'
        )



@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The backend under test: "sqlite" or "postgresql"."""
    name: str = request.param
    if name == "postgresql":
        _postgres_or_skip()
    return name


@pytest.fixture
def new_url(backend: str, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """A factory of fresh, empty databases on the backend under test."""
    if backend == "sqlite":
        counter = iter(range(1_000_000))
        yield lambda: str(tmp_path / f"db{next(counter)}.db")
        return
    schemas = PostgresSchemas(POSTGRES_URL)
    try:
        yield schemas.new_url
    finally:
        schemas.drop_all()


@pytest.fixture
def backend_url(new_url: Callable[[], str]) -> str:
    """One fresh, empty database on the backend under test."""
    return new_url()


@pytest.fixture
def store(backend_url: str) -> Iterator[CheckpointStore]:
    """An open store on a fresh database of the backend under test."""
    with CheckpointStore(backend_url) as opened:
        yield opened


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    """A path for a new SQLite database (for SQLite-only behaviour)."""
    return tmp_path / "checkpoints.db"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh schema on the PostgreSQL server (skips, or fails in CI, without one)."""
    schemas = PostgresSchemas(_postgres_or_skip())
    try:
        yield schemas.new_url()
    finally:
        schemas.drop_all()
