"""checkpointdb: a durable, SQL-queryable checkpoint store for long-running agents.

>>> from checkpointdb import CheckpointStore
>>> store = CheckpointStore("agent.db")            # doctest: +SKIP
>>> mgr = store.manager("session-42")              # doctest: +SKIP
>>> cp = mgr.create("task_started", {"step": 1})   # doctest: +SKIP

The asyncio API, ``AsyncCheckpointStore`` and ``AsyncCheckpointManager``
(:mod:`checkpointdb.aio`), needs the ``async`` extra; it is imported on first
use, so the sync API works without it.
"""

from typing import TYPE_CHECKING, Any

from .checkpoint import Checkpoint, SessionInfo
from .errors import (
    CheckpointDBError,
    CorruptDatabaseError,
    ForeignDatabaseError,
    ImportFormatError,
    InvalidDataError,
    MissingDriverError,
    NaiveDatetimeError,
    NoStoreError,
    NotFoundError,
    PayloadTooLargeError,
    ReadOnlyStoreError,
    SchemaError,
    SchemaOutOfDateError,
    SchemaTooNewError,
    StoreBusyError,
    StoreClosedError,
    StoreFullError,
)
from .manager import CheckpointManager, CompactionReport
from .store import CheckpointStore, ExpiryReport, VacuumReport, default_store

if TYPE_CHECKING:
    from .aio import AsyncCheckpointManager as AsyncCheckpointManager
    from .aio import AsyncCheckpointStore as AsyncCheckpointStore

# Not in __all__: a star import must work without the async extra.
_ASYNC_NAMES = ("AsyncCheckpointManager", "AsyncCheckpointStore")

__all__ = [
    "Checkpoint",
    "CheckpointDBError",
    "CheckpointManager",
    "CheckpointStore",
    "CompactionReport",
    "CorruptDatabaseError",
    "ExpiryReport",
    "ForeignDatabaseError",
    "ImportFormatError",
    "InvalidDataError",
    "MissingDriverError",
    "NaiveDatetimeError",
    "NoStoreError",
    "NotFoundError",
    "PayloadTooLargeError",
    "ReadOnlyStoreError",
    "SchemaError",
    "SchemaOutOfDateError",
    "SchemaTooNewError",
    "SessionInfo",
    "StoreBusyError",
    "StoreClosedError",
    "StoreFullError",
    "VacuumReport",
    "default_store",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """Import the asyncio API on first use (it needs the async extra)."""
    if name in _ASYNC_NAMES:
        from . import aio

        return getattr(aio, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
