"""pytest-alembic's built-in migration tests, run on SQLite and PostgreSQL.

The tests and the ``alembic_runner`` fixture are pytest-alembic's own (a test
dependency), imported here so that they run with the suite; its plugin is not
loaded (see pyproject.toml). This module only wires them to our migrations
and to a fresh database of each backend. As its
fixtures do by default, an Engine is handed to migrations/env.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pytest_alembic.config import Config
from pytest_alembic.plugin.fixtures import alembic_runner
from pytest_alembic.tests import (
    test_model_definitions_match_ddl,
    test_single_head_revision,
    test_up_down_consistency,
    test_upgrade,
)
from pytest_alembic.tests.experimental import test_downgrade_leaves_no_trace
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from checkpointdb.engine import resolve_url
from checkpointdb.migrate import alembic_config as checkpointdb_alembic_config
from checkpointdb.models import metadata

__all__ = [
    "alembic_runner",
    "test_downgrade_leaves_no_trace",
    "test_model_definitions_match_ddl",
    "test_single_head_revision",
    "test_up_down_consistency",
    "test_upgrade",
]


@pytest.fixture
def alembic_config() -> Config:
    """Our packaged migrations; the target metadata named, not discovered."""
    return Config(
        alembic_config=checkpointdb_alembic_config(),
        config_options={"target_metadata": metadata},
    )


@pytest.fixture
def alembic_engine(backend_url: str) -> Iterator[Engine]:
    """A plain SQLAlchemy engine on a fresh database of the backend under test."""
    engine = create_engine(resolve_url(backend_url))
    try:
        yield engine
    finally:
        engine.dispose()
