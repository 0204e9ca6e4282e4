"""Tables: sessions and their checkpoints.

These tables are the schema's source of truth for autogenerate: a test
checks that the Alembic history produces exactly these tables. Constraint
names come from the naming convention, so a migration can drop or alter any
of them on SQLite in batch mode. They are Core tables, not ORM classes:
nothing here queries through the ORM, and importing ``sqlalchemy.orm``
would add a tenth of a second or more to every process that opens a store.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
    text,
)

from .types import JSONDocument, UTCDateTime
from .validate import MAX_NAME_LENGTH

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Every table of the schema, with the naming convention for their constraints.
metadata = MetaData(naming_convention=NAMING_CONVENTION)

# One agent session: the id counter and the live checkpoint count.
sessions_table = Table(
    "sessions",
    metadata,
    Column("id", String(MAX_NAME_LENGTH), primary_key=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    # The counter behind checkpoint ids; it never goes back, not even on clear().
    Column("last_seq", BigInteger, nullable=False, server_default=text("0")),
    # Live rows, kept in the same transaction as every insert and delete.
    Column("checkpoint_count", Integer, nullable=False, server_default=text("0")),
    Column("metadata", JSONDocument(), nullable=False),
    # Revision 0002: bytes of the live checkpoints' payloads, kept like checkpoint_count.
    Column("payload_bytes", BigInteger, nullable=False, server_default=text("0")),
    # Revision 0004: the id of the checkpoint a fork copied this session from.
    Column("forked_from", Text),
    # Revision 0004: the session's retention policy (NULL: the default; -1: off).
    Column("max_checkpoints", Integer),
    Column("compress_after", Integer),
    Column("keep_recent", Integer),
    CheckConstraint("last_seq >= 0", name="last_seq_not_negative"),
    CheckConstraint("checkpoint_count >= 0", name="count_not_negative"),
)

# One checkpoint; its public id is f"{session_id}:{seq}".
checkpoints_table = Table(
    "checkpoints",
    metadata,
    Column(
        "session_id",
        String(MAX_NAME_LENGTH),
        ForeignKey("sessions.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("name", String(MAX_NAME_LENGTH), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("data", JSONDocument(), nullable=False),
    Column("metadata", JSONDocument(), nullable=False),
    # Revision 0002: pinned rows survive compaction, the cap and expiry.
    Column("pinned", Boolean, nullable=False, server_default=false()),
    # Revision 0002: UTF-8 bytes of the data JSON plus the metadata JSON.
    Column("payload_bytes", Integer, nullable=False, server_default=text("0")),
    # Revision 0004: the seq of the checkpoint this one was created from (same
    # session); it may name a checkpoint deleted since. Lookups walk links
    # upwards through the primary key, so no index.
    Column("parent_seq", BigInteger),
    CheckConstraint("seq > 0", name="seq_positive"),
    # get_by_name / get_latest(name): newest of a name without a scan.
    Index(None, "session_id", "name", "seq"),
    # get_since / get_between: a range of one session's times.
    Index(None, "session_id", "created_at"),
)
