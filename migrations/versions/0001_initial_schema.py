"""Initial schema: sessions and checkpoints.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from checkpointdb.sqltypes import JSONDocument, UTCDateTime

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("checkpoint_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("metadata", JSONDocument(), nullable=False),
        sa.CheckConstraint("last_seq >= 0", name=op.f("ck_sessions_last_seq_not_negative")),
        sa.CheckConstraint("checkpoint_count >= 0", name=op.f("ck_sessions_count_not_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sessions")),
    )
    op.create_table(
        "checkpoints",
        sa.Column("session_id", sa.String(length=255), nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("data", JSONDocument(), nullable=False),
        sa.Column("metadata", JSONDocument(), nullable=False),
        sa.CheckConstraint("seq > 0", name=op.f("ck_checkpoints_seq_positive")),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_checkpoints_session_id_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("session_id", "seq", name=op.f("pk_checkpoints")),
    )
    op.create_index(
        op.f("ix_checkpoints_session_id_name_seq"),
        "checkpoints",
        ["session_id", "name", "seq"],
    )
    op.create_index(
        op.f("ix_checkpoints_session_id_created_at"),
        "checkpoints",
        ["session_id", "created_at"],
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_checkpoints_session_id_created_at"), table_name="checkpoints")
    op.drop_index(op.f("ix_checkpoints_session_id_name_seq"), table_name="checkpoints")
    op.drop_table("checkpoints")
    op.drop_table("sessions")
