"""checkpointdb: a durable, SQL-queryable checkpoint store for long-running agents.

>>> from checkpointdb import CheckpointStore
>>> store = CheckpointStore("agent.db")            # doctest: +SKIP
>>> mgr = store.manager("session-42")              # doctest: +SKIP
>>> cp = mgr.create("task_started", {"step": 1})   # doctest: +SKIP

The store, the manager and the asyncio API (``AsyncCheckpointStore`` and
``AsyncCheckpointManager``, which needs the ``async`` extra) are imported on
first use, which ``checkpointdb --help`` and the error classes need not pay.
SQLAlchemy (about 0.3 s of imports) is imported only for what needs it:
PostgreSQL, schema migrations, ``store.engine``, ``find()`` with JSON
filters; an SQLite store at the current schema runs without it.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .checkpoint import Checkpoint, RetentionPolicy, SessionInfo
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

if TYPE_CHECKING:
    from .aio import AsyncCheckpointManager as AsyncCheckpointManager
    from .aio import AsyncCheckpointStore as AsyncCheckpointStore
    from .manager import CheckpointManager as CheckpointManager
    from .manager import CompactionReport as CompactionReport
    from .store import CheckpointStore as CheckpointStore
    from .store import ExpiryReport as ExpiryReport
    from .store import VacuumReport as VacuumReport
    from .store import default_store as default_store

# The module each name is imported from on first use. The async names are not
# in __all__: a star import must work without the async extra.
_LAZY = {
    "CheckpointManager": "manager",
    "CompactionReport": "manager",
    "CheckpointStore": "store",
    "ExpiryReport": "store",
    "VacuumReport": "store",
    "default_store": "store",
    "AsyncCheckpointManager": "aio",
    "AsyncCheckpointStore": "aio",
}

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
    "RetentionPolicy",
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
    """Import the store, the manager and the asyncio API on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
