"""Views for people: checkpoint_view and session_view, the same on both backends.

checkpoint_view: one row per live checkpoint with its public id
("{session_id}:{seq}"), ISO-8601 UTC time text, size, pin, data and metadata.
session_view: one row per session with its counters, byte total, times and
the time of its first and last live checkpoint. Times are text such as
2026-11-26T18:30:00.123456Z on both backends: SQLite stores exactly that, and
PostgreSQL formats its timestamptz the same way, whatever the session's
TimeZone.

On SQLite, a later revision that rebuilds sessions or checkpoints in batch
mode needs ``PRAGMA legacy_alter_table = ON`` for the rename that ends the
rebuild (checkpointdb's migration connection sets it); otherwise SQLite
re-checks these views while the table is missing and refuses the rename.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# PostgreSQL: a timestamptz as the text SQLite stores, always in UTC.
_PG_TIME = "to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"


def _time(dialect: str, expression: str) -> str:
    return _PG_TIME.format(expression) if dialect == "postgresql" else expression


def _checkpoint_view(dialect: str) -> str:
    return f"""
CREATE VIEW checkpoint_view AS
SELECT
    c.session_id || ':' || c.seq AS id,
    c.session_id AS session_id,
    c.seq AS seq,
    c.name AS name,
    {_time(dialect, "c.created_at")} AS created_at,
    c.payload_bytes AS payload_bytes,
    c.pinned AS pinned,
    c.data AS data,
    c.metadata AS metadata
FROM checkpoints AS c
"""


def _session_view(dialect: str) -> str:
    # min/max of created_at per session read the (session_id, created_at) index.
    first = "(SELECT min(c.created_at) FROM checkpoints AS c WHERE c.session_id = s.id)"
    last = "(SELECT max(c.created_at) FROM checkpoints AS c WHERE c.session_id = s.id)"
    return f"""
CREATE VIEW session_view AS
SELECT
    s.id AS id,
    s.checkpoint_count AS checkpoint_count,
    s.last_seq AS last_seq,
    s.payload_bytes AS payload_bytes,
    {_time(dialect, "s.created_at")} AS created_at,
    {_time(dialect, "s.updated_at")} AS updated_at,
    {_time(dialect, first)} AS first_checkpoint_at,
    {_time(dialect, last)} AS last_checkpoint_at,
    s.metadata AS metadata
FROM sessions AS s
"""


def upgrade() -> None:
    dialect = op.get_context().dialect.name
    op.execute(_checkpoint_view(dialect).strip())
    op.execute(_session_view(dialect).strip())


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS session_view")
    op.execute("DROP VIEW IF EXISTS checkpoint_view")
