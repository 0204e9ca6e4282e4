"""Fixtures: every test gets its own database, on every backend.

The backend is a parameter, not a copy of the suite: tests that take
``backend_url`` / ``store`` / ``new_url`` run on SQLite always and on
PostgreSQL when ``CHECKPOINTDB_TEST_POSTGRES_URL`` points at a server (each
test in a schema of its own, dropped afterwards). A test can also ask for
"pgbouncer" as its backend (or its ``postgres_url``): the same server through
PgBouncer in transaction pooling mode, each test in a database of its own.
With ``CHECKPOINTDB_REQUIRE_POSTGRES=1`` (CI) a missing server or a missing
pgbouncer fails instead of skipping.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import pytest

from checkpointdb import CheckpointStore

if TYPE_CHECKING:
    from pooler import PgBouncer

POSTGRES_URL = os.environ.get("CHECKPOINTDB_TEST_POSTGRES_URL", "")
REQUIRE_POSTGRES = os.environ.get("CHECKPOINTDB_REQUIRE_POSTGRES") == "1"
BACKENDS = ["sqlite", "postgresql"]
# Backends on the PostgreSQL server: directly, and through PgBouncer.
POSTGRES_BACKENDS = ("postgresql", "pgbouncer")
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


class PooledDatabases:
    """Creates a database per URL a test asks for, reached through PgBouncer; drops them after.

    Databases, not schemas: a schema is chosen with a startup ``options``
    parameter, which PgBouncer refuses.
    """

    def __init__(self, base_url: str, bouncer: PgBouncer) -> None:
        self.base_url = base_url
        self.bouncer = bouncer
        self.created: list[str] = []

    def new_url(self) -> str:
        import psycopg

        database = f"pooled_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(_driver_url(self.base_url), autocommit=True) as conn:
            # FILE_COPY: a third of the time of the default strategy here.
            conn.execute(f"CREATE DATABASE {database} TEMPLATE template0 STRATEGY FILE_COPY")
        self.created.append(database)
        return self.bouncer.url(database)

    def drop_all(self) -> None:
        import psycopg

        with psycopg.connect(_driver_url(self.base_url), autocommit=True) as conn:
            for database in self.created:
                # FORCE: PgBouncer keeps its idle server connections open. A
                # process of another role (autovacuum) cannot be ended by the
                # test user: it finishes on its own, so try again shortly.
                for attempt in range(50):
                    try:
                        conn.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
                        break
                    except psycopg.errors.InsufficientPrivilege:
                        if attempt == 49:
                            raise
                        time.sleep(0.1)


def _needs_postgres(item: pytest.Item) -> bool:
    """True for a test that runs only against the PostgreSQL server."""
    callspec = getattr(item, "callspec", None)
    if callspec is not None and callspec.params.get("backend") in POSTGRES_BACKENDS:
        return True
    return bool({"postgres_url", "pgbouncer"} & set(getattr(item, "fixturenames", ())))


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


@pytest.fixture(scope="session")
def pgbouncer() -> Iterator[PgBouncer]:
    """PgBouncer in transaction pooling mode in front of the test server, for the whole run.

    Skips without a server or without pgbouncer; with
    ``CHECKPOINTDB_REQUIRE_POSTGRES=1`` either is a failure.
    """
    server = _postgres_or_skip()
    from pooler import PgBouncer, find_pgbouncer

    executable = find_pgbouncer()
    if executable is None:
        reason = "pgbouncer is not installed (apt-get install pgbouncer)"
        if REQUIRE_POSTGRES:
            pytest.fail(f"CHECKPOINTDB_REQUIRE_POSTGRES=1 but {reason}")
        pytest.skip(reason)
    bouncer = PgBouncer(executable, server)
    try:
        yield bouncer
    finally:
        bouncer.stop()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The backend under test: "sqlite" or "postgresql" ("pgbouncer" when a test asks)."""
    name: str = request.param
    if name in POSTGRES_BACKENDS:
        _postgres_or_skip()
    return name


@pytest.fixture
def new_url(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[[], str]]:
    """A factory of fresh, empty databases on the backend under test."""
    if backend == "sqlite":
        counter = iter(range(1_000_000))
        yield lambda: str(tmp_path / f"db{next(counter)}.db")
        return
    databases: PostgresSchemas | PooledDatabases
    if backend == "pgbouncer":
        databases = PooledDatabases(POSTGRES_URL, request.getfixturevalue("pgbouncer"))
    else:
        databases = PostgresSchemas(POSTGRES_URL)
    try:
        yield databases.new_url
    finally:
        databases.drop_all()


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
def postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh schema on the PostgreSQL server (skips, or fails in CI, without one).

    Parametrized indirectly with "pgbouncer", a fresh database reached through PgBouncer.
    """
    base = _postgres_or_skip()
    databases: PostgresSchemas | PooledDatabases
    if getattr(request, "param", "direct") == "pgbouncer":
        databases = PooledDatabases(base, request.getfixturevalue("pgbouncer"))
    else:
        databases = PostgresSchemas(base)
    try:
        yield databases.new_url()
    finally:
        databases.drop_all()
