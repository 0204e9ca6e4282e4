"""The SQLAlchemy column types of the schema: UTC datetimes and JSON documents.

Apart from :mod:`checkpointdb.types` because they need SQLAlchemy, which an
SQLite store that only runs its precompiled statements never imports.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, String, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from .errors import InvalidDataError
from .types import decode_json, decode_time, dumps_json, encode_time_text, require_aware


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes with microseconds intact; naive values are refused.

    PostgreSQL stores ``timestamptz``; SQLite stores fixed-width ISO-8601 text
    ending in ``Z``, which sorts in time order and works with ``julianday()``.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """Text on SQLite (whose DateTime drops offsets), timestamptz elsewhere."""
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(27))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        """Refuse naive datetimes; encode aware ones as UTC."""
        if value is None:
            return None
        if dialect.name == "sqlite":
            return encode_time_text(value)
        return require_aware(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        """Always hand back an aware UTC datetime."""
        if value is None:
            return None
        return decode_time(value)


class JSONDocument(TypeDecorator[Any]):
    """JSON stored as readable text on SQLite and as JSONB on PostgreSQL.

    Values are serialised with :func:`dumps_json`, which refuses NaN and
    Infinity (one NaN would make ``json_extract`` fail for the whole table).
    """

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """JSONB on PostgreSQL (queried with ``->>``), text elsewhere."""
        if dialect.name == "postgresql":
            # Imported here: an SQLite store never loads the PostgreSQL dialect.
            from sqlalchemy.dialects.postgresql import JSONB

            return dialect.type_descriptor(JSONB(none_as_null=True))
        return dialect.type_descriptor(Text())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        """Serialise on SQLite; let the JSONB type serialise on PostgreSQL."""
        if value is None:
            return None
        try:
            text = dumps_json(value)
        except (TypeError, ValueError) as exc:
            raise InvalidDataError(f"value cannot be stored as JSON: {exc}") from exc
        if dialect.name == "postgresql":
            # The JSONB type serialises again, with the engine's json_serializer
            # (dumps_jsonb), so the same number rules apply.
            return value
        return text

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        """Parse stored JSON back into Python values."""
        if value is None:
            return None
        return decode_json(value)
