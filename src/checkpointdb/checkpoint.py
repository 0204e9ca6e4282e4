"""Value objects handed to callers: :class:`Checkpoint` and :class:`SessionInfo`.

``Checkpoint`` keeps the fields and the ``to_dict`` / ``from_dict`` format of
the in-memory ``CheckpointManager``, so its exports import here unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Generic, Literal

# typing_extensions for a TypeVar with a default (PEP 696, in typing from 3.13):
# a bare ``Checkpoint`` is ``Checkpoint[JSONDict]``.
from typing_extensions import TypeVar

JSONDict = dict[str, Any]
# The type of a checkpoint's data: a JSON object, or the model a typed manager reads into.
DataT = TypeVar("DataT", default=JSONDict)
# The largest seq a BIGINT column holds; larger ids cannot exist.
MAX_SEQ = 2**63 - 1

# A session's retention policy when none was ever set for it.
DEFAULT_MAX_CHECKPOINTS = 100
DEFAULT_COMPRESS_AFTER = 50
DEFAULT_KEEP_RECENT = 20
# How a session row stores "no cap" / "never compact" (NULL means the default).
STORED_OFF = -1


class _Stored(Enum):
    STORED = "stored"


# A policy argument left out: apply the session's stored setting, and write nothing.
STORED = _Stored.STORED
Limit = int | None | Literal[_Stored.STORED]
KeepRecent = int | Literal[_Stored.STORED]


@dataclass(frozen=True)
class RetentionPolicy:
    """The retention policy a session's managers apply (see CheckpointManager).

    Attributes:
        max_checkpoints: unpinned live checkpoints kept at most (None: no cap).
        compress_after: compact when the live count exceeds this (None: never).
        keep_recent: how many of the newest checkpoints compaction always keeps.
    """

    max_checkpoints: int | None = DEFAULT_MAX_CHECKPOINTS
    compress_after: int | None = DEFAULT_COMPRESS_AFTER
    keep_recent: int = DEFAULT_KEEP_RECENT

    @classmethod
    @lru_cache(maxsize=64)  # every create reads the stored columns; policies rarely change
    def from_stored(cls, stored: tuple[int | None, int | None, int | None]) -> RetentionPolicy:
        """The policy a session row's columns mean (NULL: the default; -1: off)."""
        max_checkpoints, compress_after, keep_recent = stored

        def limit(value: int | None, default: int) -> int | None:
            if value is None:
                return default
            return None if value == STORED_OFF else int(value)

        return cls(
            limit(max_checkpoints, DEFAULT_MAX_CHECKPOINTS),
            limit(compress_after, DEFAULT_COMPRESS_AFTER),
            DEFAULT_KEEP_RECENT if keep_recent is None else int(keep_recent),
        )


def format_id(session_id: str, seq: int) -> str:
    """The public id of checkpoint ``seq`` of ``session_id``."""
    return f"{session_id}:{seq}"


def parse_id(checkpoint_id: object) -> tuple[str, int] | None:
    """Split a public id into ``(session_id, seq)``, or None when it is malformed.

    The id is split at its last ':' so that session ids may contain ':' themselves.
    """
    if not isinstance(checkpoint_id, str):
        return None
    session_id, sep, seq_text = checkpoint_id.rpartition(":")
    if not sep or not session_id or not seq_text.isascii() or not seq_text.isdigit():
        return None
    seq = int(seq_text)
    if not 1 <= seq <= MAX_SEQ or str(seq) != seq_text:
        return None
    return session_id, seq


@dataclass
class Checkpoint(Generic[DataT]):
    """One recovery point: a named, timestamped JSON state of a session.

    ``Checkpoint`` is ``Checkpoint[dict[str, Any]]``; a manager made with
    ``model=State`` returns ``Checkpoint[State]``, whose ``data`` is a ``State``.

    Attributes:
        id: ``"{session_id}:{seq}"``; seq never repeats within a session.
        name: the semantic name given at creation, e.g. ``"task_started"``.
        timestamp: when it was created, timezone-aware UTC.
        data: the JSON state (an instance of the manager's model, if it has one).
        metadata: extra JSON the caller attached.
        pinned: pinned checkpoints survive compaction, the cap and expiry.
        parent_id: the checkpoint of the same session this one was created
            from (None for a root). It may name a checkpoint deleted since.
    """

    id: str
    name: str
    timestamp: datetime
    data: DataT
    metadata: JSONDict = field(default_factory=dict)
    pinned: bool = False
    parent_id: str | None = None

    if not TYPE_CHECKING:  # hidden from type checkers: it would make any attribute valid

        def __getattr__(self, attribute: str) -> Any:
            # Only reached for attributes missing from the instance: ``data`` of
            # a checkpoint built by ``fresh_checkpoint``, decoded on first use.
            if attribute == "data":
                state = self.__dict__
                text = state.get("_data_json")
                if text is not None:
                    # setdefault: threads reading it first at once all get one copy.
                    value = state.setdefault("data", json.loads(text))
                    state.pop("_data_json", None)
                    return value
                if "data" in state:  # another thread decoded it meanwhile
                    return state["data"]
            raise AttributeError(
                f"{type(self).__name__!r} object has no attribute {attribute!r}"
            )

    @property
    def session_id(self) -> str:
        """The session this checkpoint belongs to (the id up to its last ':')."""
        return self.id.rpartition(":")[0]

    @property
    def seq(self) -> int:
        """The checkpoint's position in its session (the id after its last ':')."""
        return int(self.id.rpartition(":")[2])

    def to_dict(self) -> JSONDict:
        """The export format: id, name, ISO 8601 timestamp (with +00:00), data, metadata, parent_id.

        ``parent_id`` is null for a root. A pinned checkpoint also carries
        ``"pinned": true``, so pins survive an export and import.
        """
        exported: JSONDict = {
            "id": self.id,
            "name": self.name,
            "timestamp": self.timestamp.isoformat(),
            "data": self.data,
            "metadata": self.metadata,
            "parent_id": self.parent_id,
        }
        if self.pinned:
            exported["pinned"] = True
        return exported

    @classmethod
    def from_dict(cls, data: JSONDict) -> Checkpoint:
        """Build a checkpoint from :meth:`to_dict` output (metadata and parent_id optional)."""
        return Checkpoint(
            id=data["id"],
            name=data["name"],
            timestamp=datetime.fromisoformat(data["timestamp"]),
            data=data["data"],
            metadata=data.get("metadata", {}),
            pinned=bool(data.get("pinned", False)),
            parent_id=data.get("parent_id"),
        )


def fresh_checkpoint(
    checkpoint_id: str,
    name: str,
    timestamp: datetime,
    data_json: str,
    metadata: JSONDict,
    pinned: bool,
    parent_id: str | None,
) -> Checkpoint:
    """A checkpoint just written, whose ``data`` is decoded from ``data_json`` on first use.

    A create must hand back a copy of the state independent of the caller's
    dict, exactly as ``get`` would return it (tuples become lists): decoding
    the stored text makes one. Done eagerly, that cost about a sixth of a
    create (23 of 149 µs per ~1 KB state on SQLite), mostly for callers that
    keep only the id; the first read of ``data`` pays it instead. Equality,
    ``repr``, ``to_dict``, copies and pickling read ``data`` like any other field.
    """
    checkpoint: Checkpoint = Checkpoint.__new__(Checkpoint)
    checkpoint.__dict__.update(
        id=checkpoint_id,
        name=name,
        timestamp=timestamp,
        _data_json=data_json,
        metadata=metadata,
        pinned=pinned,
        parent_id=parent_id,
    )
    return checkpoint


@dataclass(frozen=True)
class SessionInfo:
    """What the store knows about one session.

    Attributes:
        id: the session id.
        created_at: when its first checkpoint was written (UTC).
        updated_at: when it was last written to (UTC).
        checkpoint_count: live checkpoints (after compaction and clear).
        last_seq: the highest seq ever issued; the next checkpoint gets ``last_seq + 1``.
        payload_bytes: UTF-8 bytes of the live checkpoints' data and metadata JSON.
        metadata: the session's own JSON metadata (``set_session_metadata``).
        forked_from: the id of the checkpoint this session was forked from, or None.
        policy: the retention policy its managers apply.
    """

    id: str
    created_at: datetime
    updated_at: datetime
    checkpoint_count: int
    last_seq: int
    payload_bytes: int = 0
    metadata: JSONDict = field(default_factory=dict)
    forked_from: str | None = None
    policy: RetentionPolicy = RetentionPolicy()


# What fork copies: the checkpoint, its live ancestors, or every live one up to it.
FORK_HISTORIES = ("latest", "lineage", "all")
