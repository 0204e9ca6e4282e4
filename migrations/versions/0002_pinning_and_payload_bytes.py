"""Pinning and storage accounting: checkpoints.pinned, payload_bytes on both tables.

Existing rows are unpinned; their sizes are computed from the stored JSON the
same way new rows are measured (UTF-8 bytes of the compact JSON text of data
plus metadata), in batches, and each session's total is their sum.

Offline (``alembic upgrade --sql``) there is no database to reflect or read:
SQLite's table rebuilds use the table definitions below, and the sizes are
computed by SQL. On SQLite that is the length of the stored text, which
checkpointdb writes compact; on PostgreSQL it is the length of the jsonb text
less the blanks jsonb prints after each ':' and ','. Both equal the online
figure except for numbers Python would print in exponent form (1e-07).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import context, op

from checkpointdb.sqltypes import JSONDocument, UTCDateTime

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


# Compact JSON length of a jsonb value: its text, minus the blank jsonb
# prints after every ':' (one per key) and every ',' (one per element or key
# after the first), summed over every object and array inside it.
_PG_COMPACT_BYTES = """octet_length({0}::text) - coalesce((
    SELECT sum(CASE jsonb_typeof(node)
        WHEN 'object' THEN greatest(2 * (SELECT count(*) FROM jsonb_object_keys(node)) - 1, 0)
        WHEN 'array' THEN greatest(jsonb_array_length(node) - 1, 0)
        ELSE 0 END)
    FROM jsonb_path_query({0}, 'strict $.**') AS node), 0)"""

_OFFLINE_SIZES = {
    "sqlite": "UPDATE checkpoints SET payload_bytes = "
    "length(CAST(data AS BLOB)) + length(CAST(metadata AS BLOB))",
    "postgresql": "UPDATE checkpoints SET payload_bytes = "
    f"{_PG_COMPACT_BYTES.format('data')} + {_PG_COMPACT_BYTES.format('metadata')}",
}


def _tables_at_0001() -> tuple[sa.Table, sa.Table]:
    """checkpoints and sessions as revision 0001 made them (offline batch mode)."""
    metadata = sa.MetaData()
    sessions = sa.Table(
        "sessions",
        metadata,
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("checkpoint_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("metadata", JSONDocument(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sessions"),
        sa.CheckConstraint("checkpoint_count >= 0", name="ck_sessions_count_not_negative"),
        sa.CheckConstraint("last_seq >= 0", name="ck_sessions_last_seq_not_negative"),
    )
    checkpoints = sa.Table(
        "checkpoints",
        metadata,
        sa.Column("session_id", sa.String(length=255), nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("data", JSONDocument(), nullable=False),
        sa.Column("metadata", JSONDocument(), nullable=False),
        sa.PrimaryKeyConstraint("session_id", "seq", name="pk_checkpoints"),
        sa.CheckConstraint("seq > 0", name="ck_checkpoints_seq_positive"),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name="fk_checkpoints_session_id_sessions",
            ondelete="CASCADE",
        ),
        sa.Index("ix_checkpoints_session_id_name_seq", "session_id", "name", "seq"),
        sa.Index("ix_checkpoints_session_id_created_at", "session_id", "created_at"),
    )
    return checkpoints, sessions


def _pinned() -> sa.Column[bool]:
    return sa.Column("pinned", sa.Boolean(), server_default=sa.false(), nullable=False)


def _checkpoint_bytes() -> sa.Column[int]:
    return sa.Column("payload_bytes", sa.Integer(), server_default=sa.text("0"), nullable=False)


def _session_bytes() -> sa.Column[int]:
    return sa.Column("payload_bytes", sa.BigInteger(), server_default=sa.text("0"), nullable=False)


def _tables_at_0002() -> tuple[sa.Table, sa.Table]:
    """checkpoints and sessions as this revision leaves them (offline downgrade)."""
    checkpoints, sessions = _tables_at_0001()
    checkpoints.append_column(_pinned())
    checkpoints.append_column(_checkpoint_bytes())
    sessions.append_column(_session_bytes())
    return checkpoints, sessions


def _backfill_sizes() -> None:
    if context.is_offline_mode():
        op.execute(_OFFLINE_SIZES[op.get_context().dialect.name])
        _sum_sessions()
        return
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
    _sum_sessions()


def _sum_sessions() -> None:
    op.execute(
        "UPDATE sessions SET payload_bytes = (SELECT coalesce(sum(c.payload_bytes), 0) "
        "FROM checkpoints c WHERE c.session_id = sessions.id)"
    )


def upgrade() -> None:
    # Online, batch mode reflects the tables; offline it copies these.
    checkpoints, sessions = _tables_at_0001() if context.is_offline_mode() else (None, None)
    with op.batch_alter_table("checkpoints", copy_from=checkpoints) as batch:
        batch.add_column(_pinned())
        batch.add_column(_checkpoint_bytes())
    with op.batch_alter_table("sessions", copy_from=sessions) as batch:
        batch.add_column(_session_bytes())
    _backfill_sizes()


def downgrade() -> None:
    checkpoints, sessions = _tables_at_0002() if context.is_offline_mode() else (None, None)
    with op.batch_alter_table("sessions", copy_from=sessions) as batch:
        batch.drop_column("payload_bytes")
    with op.batch_alter_table("checkpoints", copy_from=checkpoints) as batch:
        batch.drop_column("payload_bytes")
        batch.drop_column("pinned")
