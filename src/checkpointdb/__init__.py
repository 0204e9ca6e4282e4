"""checkpointdb: a durable, SQL-queryable checkpoint store for long-running agents.

>>> from checkpointdb import CheckpointStore
>>> store = CheckpointStore("agent.db")            # doctest: +SKIP
>>> mgr = store.manager("session-42")              # doctest: +SKIP
>>> cp = mgr.create("task_started", {"step": 1})   # doctest: +SKIP
"""

from .checkpoint import Checkpoint, SessionInfo
from .errors import (
    CheckpointDBError,
    CorruptDatabaseError,
    ImportFormatError,
    InvalidDataError,
    NaiveDatetimeError,
    NotFoundError,
    PayloadTooLargeError,
    SchemaError,
    SchemaOutOfDateError,
    SchemaTooNewError,
    StoreBusyError,
    StoreClosedError,
    StoreFullError,
)
from .manager import CheckpointManager, CompactionReport
from .store import CheckpointStore, ExpiryReport, VacuumReport, default_store

__all__ = [
    "Checkpoint",
    "CheckpointDBError",
    "CheckpointManager",
    "CheckpointStore",
    "CompactionReport",
    "CorruptDatabaseError",
    "ExpiryReport",
    "ImportFormatError",
    "InvalidDataError",
    "NaiveDatetimeError",
    "NotFoundError",
    "PayloadTooLargeError",
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
