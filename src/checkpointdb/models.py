"""ORM tables: sessions and their checkpoints.

These classes are the schema's source of truth for autogenerate: a test
checks that the Alembic history produces exactly these tables. Constraint
names come from the naming convention, so a migration can drop or alter any
of them on SQLite in batch mode.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from .sqltypes import JSONDocument, UTCDateTime
from .validate import MAX_NAME_LENGTH

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base whose metadata names every constraint by convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSONDocument(),
    }


class SessionRecord(Base):
    """One agent session: the id counter and the live checkpoint count."""

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH), primary_key=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # The counter behind checkpoint ids; it never goes back, not even on clear().
    last_seq: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    # Live rows, kept in the same transaction as every insert and delete.
    checkpoint_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    meta: Mapped[dict[str, Any]] = mapped_column("metadata")
    # Revision 0002: bytes of the live checkpoints' payloads, kept like checkpoint_count.
    payload_bytes: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    # Revision 0004: the id of the checkpoint a fork copied this session from.
    forked_from: Mapped[str | None] = mapped_column(Text)
    # Revision 0004: the session's retention policy (NULL: the default; -1: off).
    max_checkpoints: Mapped[int | None] = mapped_column(Integer)
    compress_after: Mapped[int | None] = mapped_column(Integer)
    keep_recent: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (
        CheckConstraint("last_seq >= 0", name="last_seq_not_negative"),
        CheckConstraint("checkpoint_count >= 0", name="count_not_negative"),
    )


class CheckpointRecord(Base):
    """One checkpoint; its public id is ``f"{session_id}:{seq}"``."""

    __tablename__ = "checkpoints"

    session_id: Mapped[str] = mapped_column(
        String(MAX_NAME_LENGTH),
        ForeignKey("sessions.id", ondelete="CASCADE"),
        primary_key=True,
    )
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH))
    created_at: Mapped[datetime]
    data: Mapped[dict[str, Any]]
    meta: Mapped[dict[str, Any]] = mapped_column("metadata")
    # Revision 0002: pinned rows survive compaction, the cap and expiry.
    pinned: Mapped[bool] = mapped_column(Boolean, server_default=false())
    # Revision 0002: UTF-8 bytes of the data JSON plus the metadata JSON.
    payload_bytes: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # Revision 0004: the seq of the checkpoint this one was created from (same
    # session); it may name a checkpoint deleted since. Lookups walk links
    # upwards through the primary key, so no index.
    parent_seq: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        CheckConstraint("seq > 0", name="seq_positive"),
        # get_by_name / get_latest(name): newest of a name without a scan.
        Index(None, "session_id", "name", "seq"),
        # get_since / get_between: a range of one session's times.
        Index(None, "session_id", "created_at"),
    )


class LangGraphCheckpointRecord(Base):
    """Revision 0005: a LangGraph checkpoint's namespace and id, for one checkpoints row.

    A LangGraph thread is a session; each of its checkpoints is a checkpoints
    row (its channel values in langgraph_blobs, its pending writes in
    langgraph_writes), found by (thread, namespace, LangGraph id) here.
    """

    __tablename__ = "langgraph_checkpoints"

    session_id: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    checkpoint_ns: Mapped[str] = mapped_column(Text)
    checkpoint_id: Mapped[str] = mapped_column(Text)

    __table_args__ = (
        ForeignKeyConstraint(
            ["session_id", "seq"],
            ["checkpoints.session_id", "checkpoints.seq"],
            ondelete="CASCADE",
        ),
        # get_tuple by id, the latest of a namespace, list newest first.
        UniqueConstraint("session_id", "checkpoint_ns", "checkpoint_id"),
        # SQLite: the primary key is the table's only B-tree (fewer pages per put).
        {"sqlite_with_rowid": False},
    )


class LangGraphWriteRecord(Base):
    """Revision 0005: one pending write of a LangGraph checkpoint, the serializer's bytes."""

    __tablename__ = "langgraph_writes"

    session_id: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    task_id: Mapped[str] = mapped_column(Text, primary_key=True)
    idx: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    channel: Mapped[str] = mapped_column(Text)
    type: Mapped[str | None] = mapped_column(Text)
    value: Mapped[bytes | None] = mapped_column(LargeBinary)
    task_path: Mapped[str] = mapped_column(Text, server_default=text("''"))

    __table_args__ = (
        ForeignKeyConstraint(
            ["session_id", "seq"],
            ["checkpoints.session_id", "checkpoints.seq"],
            ondelete="CASCADE",
        ),
        {"sqlite_with_rowid": False},
    )


class LangGraphBlobRecord(Base):
    """Revision 0005: one channel's value at one version, stored once per thread and namespace."""

    __tablename__ = "langgraph_blobs"

    session_id: Mapped[str] = mapped_column(
        String(MAX_NAME_LENGTH),
        ForeignKey("sessions.id", ondelete="CASCADE"),
        primary_key=True,
    )
    checkpoint_ns: Mapped[str] = mapped_column(Text, primary_key=True)
    channel: Mapped[str] = mapped_column(Text, primary_key=True)
    version: Mapped[str] = mapped_column(Text, primary_key=True)
    type: Mapped[str] = mapped_column(Text)
    value: Mapped[bytes | None] = mapped_column(LargeBinary)

    __table_args__ = ({"sqlite_with_rowid": False},)


sessions_table = cast(Table, SessionRecord.__table__)
checkpoints_table = cast(Table, CheckpointRecord.__table__)
langgraph_checkpoints_table = cast(Table, LangGraphCheckpointRecord.__table__)
langgraph_writes_table = cast(Table, LangGraphWriteRecord.__table__)
langgraph_blobs_table = cast(Table, LangGraphBlobRecord.__table__)

# Every table of the schema, with the naming convention for their constraints.
metadata = Base.metadata
