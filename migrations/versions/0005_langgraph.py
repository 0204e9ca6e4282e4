"""LangGraph checkpointer tables: checkpoint ids, pending writes, channel values.

A LangGraph thread is a session and each LangGraph checkpoint a checkpoints
row (name: the metadata's source; data: the checkpoint without its channel
values; metadata: LangGraph's metadata; parent_seq: its parent). Three new
tables hold the rest:

* langgraph_checkpoints: (session, namespace, LangGraph checkpoint id),
  unique, for each checkpoints row; deleted with it (ON DELETE CASCADE).
* langgraph_writes: pending writes, the serializer's type and bytes; deleted
  with their checkpoint (ON DELETE CASCADE).
* langgraph_blobs: each channel's value once per (session, namespace,
  channel, version), as the serializer's type and bytes; deleted with the
  session.

On SQLite the three are WITHOUT ROWID tables: their primary keys are their
only B-trees, which makes a put write fewer pages. Plain CREATE TABLE on both backends, so ``alembic upgrade 0004:0005 --sql``
writes a script that runs as is.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NAME = sa.String(length=255)


def _checkpoint_link(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["session_id", "seq"],
        ["checkpoints.session_id", "checkpoints.seq"],
        name=op.f(f"fk_{table}_session_id_checkpoints"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "langgraph_checkpoints",
        sa.Column("session_id", _NAME, nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("checkpoint_ns", sa.Text(), nullable=False),
        sa.Column("checkpoint_id", sa.Text(), nullable=False),
        _checkpoint_link("langgraph_checkpoints"),
        sa.PrimaryKeyConstraint("session_id", "seq", name=op.f("pk_langgraph_checkpoints")),
        sa.UniqueConstraint(
            "session_id",
            "checkpoint_ns",
            "checkpoint_id",
            name=op.f("uq_langgraph_checkpoints_session_id_checkpoint_ns_checkpoint_id"),
        ),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "langgraph_writes",
        sa.Column("session_id", _NAME, nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("task_id", sa.Text(), nullable=False),
        sa.Column("idx", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=True),
        sa.Column("value", sa.LargeBinary(), nullable=True),
        sa.Column("task_path", sa.Text(), server_default=sa.text("''"), nullable=False),
        _checkpoint_link("langgraph_writes"),
        sa.PrimaryKeyConstraint(
            "session_id", "seq", "task_id", "idx", name=op.f("pk_langgraph_writes")
        ),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "langgraph_blobs",
        sa.Column("session_id", _NAME, nullable=False),
        sa.Column("checkpoint_ns", sa.Text(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("version", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_langgraph_blobs_session_id_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "session_id", "checkpoint_ns", "channel", "version", name=op.f("pk_langgraph_blobs")
        ),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("langgraph_blobs")
    op.drop_table("langgraph_writes")
    op.drop_table("langgraph_checkpoints")
