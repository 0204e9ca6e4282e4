"""Input checks that run before anything is written.

Every refusal names the bad value or the path to it inside the payload
(``data["steps"][3]["score"]``), so a caller can find it in a large state.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping
from typing import Any

from .errors import InvalidDataError, PayloadTooLargeError
from .types import dumps_validated_json

# Names and session ids are identifiers people type and read in tables.
MAX_NAME_LENGTH = 255
# Deeper than any real agent state; far below the recursion limits of
# Python's json module, SQLite's JSON functions and PostgreSQL's JSONB.
DEFAULT_MAX_DEPTH = 100
# A checkpoint is state, not a blob store; the limit is per store and settable.
DEFAULT_MAX_PAYLOAD_BYTES = 16 * 1024 * 1024

_SCALARS = (str, int, float, bool, type(None))

# What an identifier may not hold: anything that breaks it across lines or
# cannot be encoded. Other Unicode (spaces, joiners, marks) is fine.
_REFUSED_IN_IDENTIFIERS = {
    "Cc": "a control character",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
    "Cs": "a lone surrogate, which is not valid Unicode",
}


def check_identifier(value: object, what: str) -> str:
    """Return ``value`` if it is a usable session id or checkpoint name.

    Raises:
        InvalidDataError: not a string, empty, longer than MAX_NAME_LENGTH, or
            holding a control character, a line break or a lone surrogate.
    """
    if type(value) is not str:
        raise InvalidDataError(f"{what} must be a string, got {type(value).__name__} {value!r}")
    if not value:
        raise InvalidDataError(f"{what} must not be empty")
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidDataError(
            f"{what} is {len(value)} characters long; the limit is {MAX_NAME_LENGTH}: "
            f"{value[:40]!r}..."
        )
    if value.isprintable():  # the common case, checked at C speed
        return value
    for char in value:
        kind = _REFUSED_IN_IDENTIFIERS.get(unicodedata.category(char))
        if kind is not None:
            raise InvalidDataError(f"{what} {value!r} contains {char!r}, {kind}")
    return value


def _describe(path: str, problem: str) -> InvalidDataError:
    return InvalidDataError(f"{path}: {problem}")


def check_json(value: Any, path: str, max_depth: int) -> None:
    """Refuse anything that would not come back from the database exactly as given.

    Accepted: dicts and other mappings (``MappingProxyType``...) with string
    keys, which come back as dicts; lists, tuples (they come back as lists),
    strings without NUL, ints, finite floats, bools and None.

    Raises:
        InvalidDataError: with the path to the first offending value.
    """
    active: set[int] = set()

    def walk(node: Any, where: str, depth: int) -> None:
        kind = type(node)
        if kind is str:
            if "\x00" in node:
                raise _describe(where, "strings may not contain NUL characters")
            return
        if kind is float:
            if not math.isfinite(node):
                raise _describe(where, f"{node!r} is not valid JSON (NaN and Infinity are refused)")
            return
        if kind in _SCALARS:
            return
        if depth >= max_depth:
            raise _describe(where, f"nested deeper than the limit of {max_depth} levels")
        mapping = kind is dict or isinstance(node, Mapping)
        if mapping or kind is list or kind is tuple:
            ident = id(node)
            if ident in active:
                raise _describe(where, "circular reference")
            active.add(ident)
            if mapping:
                for key, item in node.items():
                    if type(key) is not str:
                        raise _describe(
                            where,
                            f"key {key!r} is a {type(key).__name__}; JSON object keys must be "
                            "strings",
                        )
                    if "\x00" in key:
                        raise _describe(where, f"key {key!r} contains a NUL character")
                    walk(item, f"{where}[{key!r}]", depth + 1)
            else:
                for index, item in enumerate(node):
                    walk(item, f"{where}[{index}]", depth + 1)
            active.discard(ident)
            return
        raise _describe(
            where,
            f"{kind.__name__} {_short_repr(node)} is not JSON; store only dict, list, str, "
            "int, float, bool and None",
        )

    walk(value, path, 0)


def _unprintable_int_path(value: Any, path: str) -> str:
    """The path to the first int that ``str()`` refuses to convert."""
    if type(value) is int:
        try:
            str(value)
        except ValueError:
            return path
        return ""
    items: Any = value.items() if type(value) is dict else enumerate(value)
    if type(value) in (dict, list, tuple):
        for key, item in items:
            found = _unprintable_int_path(item, f"{path}[{key!r}]")
            if found:
                return found
    return ""


def _plain_shape(node: dict[Any, Any] | list[Any] | tuple[Any, ...], levels: int) -> bool:
    """True when ``node`` holds only JSON types, with string keys, at most ``levels`` deep.

    The fast path of :func:`encode_payload` (it runs on every create): no
    path strings, no cycle bookkeeping (a cycle runs out of levels). It
    leaves two checks to the encoded text, where C code does them at once:
    NaN and infinity (``json.dumps`` refuses them) and NUL characters.
    """
    if levels <= 0:
        return False
    items: Any
    if type(node) is dict:
        for key in node:
            if type(key) is not str:
                return False
        items = node.values()
    else:
        items = node
    for item in items:
        kind = type(item)
        if kind is str or kind is int or kind is float or kind is bool or item is None:
            continue
        if kind is not dict and kind is not list and kind is not tuple:
            return False
        if not _plain_shape(item, levels - 1):
            return False
    return True


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def encode_payload(value: Any, what: str, max_depth: int, max_bytes: int) -> tuple[str, int]:
    """Validate a top-level JSON object and return its stored text and UTF-8 size.

    Args:
        value: the ``data`` or ``metadata`` dict (or another mapping).
        what: its name in error messages (``"data"``).
        max_depth: deepest nesting accepted.
        max_bytes: largest UTF-8 size accepted.

    Raises:
        InvalidDataError: not a mapping, or something inside cannot round-trip.
        PayloadTooLargeError: the encoded text is larger than ``max_bytes``.
    """
    if type(value) is not dict and not isinstance(value, Mapping):
        raise InvalidDataError(f"{what} must be a dict, got {type(value).__name__}")
    if not value:
        return "{}", 2
    if type(value) is not dict or not _plain_shape(value, max_depth):
        # Other mappings (a TypedDict is a dict; MappingProxyType is not) take
        # the full walk, which also says what and where anything is wrong.
        check_json(value, what, max_depth)
    try:
        text = dumps_validated_json(value)  # checked above: no cycle
    except ValueError as exc:  # NaN or infinity, or an int too long to print
        check_json(value, what, max_depth)
        raise InvalidDataError(f"{_unprintable_int_path(value, what)}: {exc}") from None
    if "\\u0000" in text:
        # A NUL somewhere, or a backslash stored before "u0000": look closer.
        check_json(value, what, max_depth)
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidDataError(
            f"{what}: contains a lone surrogate {text[exc.start : exc.end]!r}, which is not "
            "valid Unicode"
        ) from exc
    if size > max_bytes:
        raise PayloadTooLargeError(
            f"{what} is {size} bytes as JSON; the store's limit (max_payload_bytes) is "
            f"{max_bytes} bytes"
        )
    return text, size
