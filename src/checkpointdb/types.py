"""Column types: UTC timestamps and JSON documents, identical on every backend.

The encode/decode functions here are the only place values are converted
between Python and the database; the TypeDecorators use them for ORM and Core
statements, and the repository's compiled hot paths call them directly.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from .errors import InvalidDataError, NaiveDatetimeError


def require_aware(value: object, what: str = "datetime") -> datetime:
    """Return ``value`` as UTC, refusing anything but a timezone-aware datetime.

    Raises:
        NaiveDatetimeError: ``value`` has no timezone (we never guess one).
        InvalidDataError: ``value`` is not a datetime at all, or it has no UTC
            equivalent (a time on 0001-01-01 east of UTC, say).
    """
    if not isinstance(value, datetime):
        raise InvalidDataError(f"{what} must be a timezone-aware datetime, got {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise NaiveDatetimeError(
            f"{what} {value.isoformat()} has no timezone; pass an aware datetime "
            "such as datetime.now(timezone.utc)"
        )
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise InvalidDataError(
            f"{what} {value.isoformat()} is outside the range of UTC datetimes "
            "(0001-01-01 to 9999-12-31)"
        ) from None


def encode_time_text(value: datetime) -> str:
    """An aware datetime as the fixed-width UTC text stored on SQLite."""
    # isoformat, not strftime: strftime does not zero-pad years before 1000
    # on Linux, which would break the text order time-range queries rely on.
    if type(value) is not datetime or value.tzinfo is not UTC:  # UTC already: every create
        value = require_aware(value)
    return value.isoformat(timespec="microseconds")[:-6] + "Z"


def decode_time(value: datetime | str) -> datetime:
    """A stored timestamp (SQLite text or PostgreSQL timestamptz) as aware UTC."""
    if isinstance(value, str):
        moment = datetime.fromisoformat(value)
        # Our stored text ends in Z, which parses to UTC itself: no conversion.
        return moment if moment.tzinfo is UTC else moment.astimezone(UTC)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _mapping_as_object(value: object) -> dict[Any, Any]:
    # Validation let only mappings through besides plain JSON values.
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def dumps_json(value: Any) -> str:
    """Serialise validated JSON as compact, human-readable text (no NaN).

    Mappings other than dicts (``MappingProxyType``...) are written as JSON objects.
    """
    return json.dumps(
        value,
        ensure_ascii=False,
        separators=(",", ":"),
        allow_nan=False,
        default=_mapping_as_object,
    )


def _validated_json_encoder() -> Callable[[Any], str]:
    """:func:`dumps_json` for values validation has walked, so known to hold no cycle.

    It skips json.dumps's layers (a new encoder object per call) and its
    bookkeeping of every container against cycles: about 3 µs of a 1 KB
    state on every create. The text is exactly :func:`dumps_json`'s.
    """
    make_encoder = getattr(json.encoder, "c_make_encoder", None)
    if make_encoder is None:  # a Python without the C accelerator
        return dumps_json
    # The arguments json.JSONEncoder.iterencode passes for dumps_json's options,
    # with no dict of containers seen (markers=None): no cycle check.
    chunks = make_encoder(
        None,  # markers
        _mapping_as_object,  # default
        json.encoder.encode_basestring,  # ensure_ascii=False
        None,  # indent
        ":",
        ",",
        False,  # sort_keys
        False,  # skipkeys
        False,  # allow_nan
    )

    def dumps_validated(value: Any) -> str:
        return "".join(chunks(value, 0))

    return dumps_validated


dumps_validated_json = _validated_json_encoder()


# A JSON string, or a number in exponent form (the only tokens that matter here).
_STRING_OR_EXPONENT_NUMBER = re.compile(r'"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?[eE][+-]?\d+')
# Every number in exponent form has this inside; most texts have none at all.
_MAYBE_EXPONENT = re.compile(r"\d[eE][+-]?\d")


def _positional(match: re.Match[str]) -> str:
    token = match.group(0)
    if token.startswith('"'):
        return token
    text = format(Decimal(token), "f")
    return text if "." in text else text + ".0"


def jsonb_text(text: str) -> str:
    """JSON text that PostgreSQL's JSONB hands back with the same Python types.

    JSONB stores numbers as ``numeric`` and prints ``1e+16`` as
    ``10000000000000000``, which would come back as an int (and, for most
    such floats, a different value). Writing exponent-form floats in
    positional notation with a decimal point keeps them floats, exactly.
    """
    if _MAYBE_EXPONENT.search(text) is None:  # skips the token walk (~70 µs per 1 KB)
        return text
    return _STRING_OR_EXPONENT_NUMBER.sub(_positional, text)


def dumps_jsonb(value: Any) -> str:
    """:func:`dumps_json` for a PostgreSQL JSONB column (see :func:`jsonb_text`)."""
    return jsonb_text(dumps_json(value))


# The C scanner behind json.loads. Called directly on stored text, which we
# wrote compact (no surrounding whitespace), it skips json.loads's Python
# layers and its two whitespace matches: about 2 of the 3 µs json.loads takes
# for a small document, paid twice per row read.
_scan_json: Callable[[str, int], tuple[Any, int]]
_scan_json = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def decode_json(value: Any) -> Any:
    """A stored JSON value (SQLite text, or already parsed by the PostgreSQL driver)."""
    if type(value) is str:
        try:
            decoded, end = _scan_json(value, 0)
        except StopIteration:  # nothing JSON at the start: json.loads names the problem
            pass
        else:
            if end == len(value):
                return decoded
        # Whitespace around the value, or something after it: json.loads decides.
        return json.loads(value)
    if isinstance(value, str | bytes):
        return json.loads(value)
    return value
