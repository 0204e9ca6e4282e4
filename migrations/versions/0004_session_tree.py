"""A session is a tree: parent links, fork origin, per-session policy, views extended.

checkpoints.parent_seq: the seq of the checkpoint this one was created from,
in the same session (the public parent id is "{session_id}:{parent_seq}"). It
may name a checkpoint that retention or delete removed since; nothing
cascades. Existing rows get as parent the next lower live seq of their
session, as if each had been created on top of the one before. No index:
every lookup walks links upwards, through the primary key.

sessions: forked_from (the id of the checkpoint a fork copied), and the
retention policy every manager of the session applies: max_checkpoints,
compress_after, keep_recent (NULL: the default; -1: off, for the first two).

Plain ADD COLUMN and one UPDATE on both backends, so ``alembic upgrade
0003:0004 --sql`` writes a script that runs as is. The views are recreated
with parent_id (checkpoint_view) and the fork origin and policy (session_view).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from collections.abc import Sequence
from types import ModuleType

import sqlalchemy as sa
from alembic import context, op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _revision_3() -> ModuleType:
    # Revision 0003's view text is what a downgrade restores; one copy of it.
    module: ModuleType = context.script.get_revision("0003").module
    return module


def _checkpoint_view(dialect: str) -> str:
    time = _revision_3()._time
    return f"""
CREATE VIEW checkpoint_view AS
SELECT
    c.session_id || ':' || c.seq AS id,
    c.session_id AS session_id,
    c.seq AS seq,
    c.session_id || ':' || c.parent_seq AS parent_id,
    c.name AS name,
    {time(dialect, "c.created_at")} AS created_at,
    c.payload_bytes AS payload_bytes,
    c.pinned AS pinned,
    c.data AS data,
    c.metadata AS metadata
FROM checkpoints AS c
"""


def _session_view(dialect: str) -> str:
    time = _revision_3()._time
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
    {time(dialect, "s.created_at")} AS created_at,
    {time(dialect, "s.updated_at")} AS updated_at,
    {time(dialect, first)} AS first_checkpoint_at,
    {time(dialect, last)} AS last_checkpoint_at,
    s.metadata AS metadata,
    s.forked_from AS forked_from,
    s.max_checkpoints AS max_checkpoints,
    s.compress_after AS compress_after,
    s.keep_recent AS keep_recent
FROM sessions AS s
"""


def _drop_views() -> None:
    op.execute("DROP VIEW IF EXISTS session_view")
    op.execute("DROP VIEW IF EXISTS checkpoint_view")


def upgrade() -> None:
    dialect = op.get_context().dialect.name
    _drop_views()
    op.add_column("checkpoints", sa.Column("parent_seq", sa.BigInteger(), nullable=True))
    op.add_column("sessions", sa.Column("forked_from", sa.Text(), nullable=True))
    op.add_column("sessions", sa.Column("max_checkpoints", sa.Integer(), nullable=True))
    op.add_column("sessions", sa.Column("compress_after", sa.Integer(), nullable=True))
    op.add_column("sessions", sa.Column("keep_recent", sa.Integer(), nullable=True))
    # Each row's parent: the next lower live seq of its session (primary key lookups).
    op.execute(
        "UPDATE checkpoints SET parent_seq = (SELECT max(p.seq) FROM checkpoints AS p "
        "WHERE p.session_id = checkpoints.session_id AND p.seq < checkpoints.seq)"
    )
    op.execute(_checkpoint_view(dialect).strip())
    op.execute(_session_view(dialect).strip())


def downgrade() -> None:
    dialect = op.get_context().dialect.name
    _drop_views()
    for column in ("keep_recent", "compress_after", "max_checkpoints", "forked_from"):
        op.drop_column("sessions", column)
    op.drop_column("checkpoints", "parent_seq")
    previous = _revision_3()
    op.execute(previous._checkpoint_view(dialect).strip())
    op.execute(previous._session_view(dialect).strip())
