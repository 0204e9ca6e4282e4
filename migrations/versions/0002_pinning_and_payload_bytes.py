"""Pinning and storage accounting: checkpoints.pinned, payload_bytes on both tables.

Existing rows are unpinned; their sizes are computed from the stored JSON the
same way new rows are measured (UTF-8 bytes of the compact JSON text of data
plus metadata), in batches, and each session's total is their sum.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 1000


def _json_bytes(value: Any) -> int:
    # The same text checkpointdb.types.dumps_json writes for new rows.
    if isinstance(value, str | bytes):
        value = json.loads(value)
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return len(text.encode("utf-8"))


def _backfill_sizes() -> None:
    bind = op.get_bind()
    checkpoints = sa.table(
        "checkpoints",
        sa.column("session_id", sa.String),
        sa.column("seq", sa.BigInteger),
        sa.column("data", sa.Text),
        sa.column("metadata", sa.Text),
        sa.column("payload_bytes", sa.Integer),
    )
    page = (
        sa.select(
            checkpoints.c.session_id, checkpoints.c.seq, checkpoints.c.data, checkpoints.c.metadata
        )
        .where(
            sa.tuple_(checkpoints.c.session_id, checkpoints.c.seq)
            > sa.tuple_(sa.bindparam("after_session"), sa.bindparam("after_seq"))
        )
        .order_by(checkpoints.c.session_id, checkpoints.c.seq)
        .limit(_BATCH)
    )
    update = (
        sa.update(checkpoints)
        .where(
            checkpoints.c.session_id == sa.bindparam("b_session"),
            checkpoints.c.seq == sa.bindparam("b_seq"),
        )
        .values(payload_bytes=sa.bindparam("b_bytes"))
    )
    after: tuple[str, int] = ("", 0)
    while True:
        rows = bind.execute(page, {"after_session": after[0], "after_seq": after[1]}).all()
        if not rows:
            break
        bind.execute(
            update,
            [
                {
                    "b_session": session_id,
                    "b_seq": seq,
                    "b_bytes": _json_bytes(data) + _json_bytes(meta),
                }
                for session_id, seq, data, meta in rows
            ],
        )
        after = (rows[-1][0], rows[-1][1])
    op.execute(
        "UPDATE sessions SET payload_bytes = (SELECT coalesce(sum(c.payload_bytes), 0) "
        "FROM checkpoints c WHERE c.session_id = sessions.id)"
    )


def upgrade() -> None:
    with op.batch_alter_table("checkpoints") as batch:
        batch.add_column(
            sa.Column("pinned", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch.add_column(
            sa.Column("payload_bytes", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(
            sa.Column("payload_bytes", sa.BigInteger(), server_default=sa.text("0"), nullable=False)
        )
    _backfill_sizes()


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("payload_bytes")
    with op.batch_alter_table("checkpoints") as batch:
        batch.drop_column("payload_bytes")
        batch.drop_column("pinned")
