"""The exceptions checkpointdb raises: one root, a few precise subclasses.

Driver errors never escape the package raw: :func:`checkpointdb.engine.translate_error`
turns them into one of these, with the database named in the message.
"""

from __future__ import annotations


class CheckpointDBError(Exception):
    """Root of every error this package raises on purpose."""


class InvalidDataError(CheckpointDBError, ValueError):
    """A name, id, payload or argument cannot be stored exactly; nothing was written."""


class NaiveDatetimeError(InvalidDataError, TypeError):
    """A datetime without a timezone was given where an instant is needed."""


class PayloadTooLargeError(InvalidDataError):
    """The serialised payload is larger than the store's ``max_payload_bytes``."""


class ImportFormatError(InvalidDataError):
    """An import file is not a valid export; nothing was imported."""


class NotFoundError(CheckpointDBError, LookupError):
    """A session or checkpoint that was asked for does not exist."""


class StoreBusyError(CheckpointDBError):
    """Another writer held the database lock for longer than the busy timeout."""


class StoreFullError(CheckpointDBError):
    """The disk (or the database's size limit) is full; the write was rolled back."""


class CorruptDatabaseError(CheckpointDBError):
    """The file is not a checkpointdb/SQLite database, or it is damaged."""


class StoreClosedError(CheckpointDBError):
    """The store was closed and cannot be used any more."""


class ReadOnlyStoreError(CheckpointDBError):
    """A write was asked of a store opened with ``read_only=True``; nothing was touched."""


class MissingDriverError(CheckpointDBError, ImportError):
    """The database driver for the URL is not installed (an extra is missing)."""


class SchemaError(CheckpointDBError):
    """The database schema is not the one this version of checkpointdb uses."""


class SchemaTooNewError(SchemaError):
    """The database was written by a newer checkpointdb; it is left untouched."""


class SchemaOutOfDateError(SchemaError):
    """The database is at an older schema revision and automatic upgrade is off."""


class NoStoreError(SchemaError, NotFoundError):
    """There is no checkpointdb store there (no file, or no schema); nothing was created."""


class ForeignDatabaseError(SchemaError):
    """The database holds other tables and no checkpointdb schema; it was left untouched."""
