"""Read a JSON array one element at a time, in bounded memory.

``json.load`` holds the whole document and every parsed element at once: an
export of 200k checkpoints (108 MB) took over 600 MB that way. This reader
keeps one chunk of text and the element being decoded, so an import's memory
stays flat however long the file is.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable, Iterator
from typing import IO, Any

from .errors import ImportFormatError

# Text read per call to the stream; an element longer than the buffer doubles it.
CHUNK_CHARS = 1 << 16

_WHITESPACE = " \t\n\r"
# What a top-level value that is not an array was, named as Python names its type.
_KIND_BY_FIRST_CHAR = {"{": "dict", '"': "str", "t": "bool", "f": "bool", "n": "NoneType"}


def unreadable_json(exc: RecursionError | ValueError, where: int) -> ImportFormatError:
    """Why valid-looking JSON text cannot be read: too deep, or a number too long."""
    if isinstance(exc, RecursionError):
        reason = "nested too deeply to read"
    else:  # Python refuses to convert integers of more than 4300 digits
        reason = f"a number that cannot be read ({str(exc).split(';')[0]})"
    return ImportFormatError(f"import data is not valid JSON: {reason}, at character {where}")


class JSONArrayReader:
    """Iterate over the elements of the JSON array in a text or binary stream.

    Binary streams are decoded as UTF-8. ``progress``, if given, is called
    with the number of characters (text) or bytes (binary) read by each read.

    Raises (while iterating):
        ImportFormatError: the stream is not UTF-8, not JSON, or not an array.
    """

    def __init__(
        self,
        stream: IO[Any],
        *,
        progress: Callable[[int], object] | None = None,
        chunk_chars: int = CHUNK_CHARS,
    ) -> None:
        self._stream = stream
        self._progress = progress
        self._chunk = chunk_chars
        self._decoder = json.JSONDecoder()
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._buffer = ""
        self._pos = 0
        # Characters dropped from the front of the buffer, to name error positions.
        self._dropped = 0
        self._eof = False

    def _read(self, size: int) -> bool:
        """Append up to ``size`` more characters to the buffer; False at the end."""
        if self._eof:
            return False
        chunk = self._stream.read(size)
        if self._progress is not None and chunk:
            self._progress(len(chunk))
        if isinstance(chunk, bytes):
            try:
                text = self._utf8.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                raise ImportFormatError(f"import data is not UTF-8 text: {exc}") from None
        else:
            text = chunk
        if not chunk:
            self._eof = True
            return False
        self._buffer = self._buffer[self._pos :] + text
        self._dropped += self._pos
        self._pos = 0
        return True

    def _next_char(self) -> str:
        """The next character that is not whitespace (consumed), or "" at the end."""
        while True:
            while self._pos < len(self._buffer):
                char = self._buffer[self._pos]
                self._pos += 1
                if char not in _WHITESPACE:
                    return char
            if not self._read(self._chunk):
                return ""

    def _value(self) -> Any:
        """Decode the value starting at the buffer's position, reading more as needed."""
        want = self._chunk
        while True:
            try:
                value, end = self._decoder.raw_decode(self._buffer, self._pos)
            except json.JSONDecodeError as exc:
                # Incomplete so far: read more (doubling, so a huge element costs O(n)).
                if self._read(max(want, len(self._buffer) - self._pos)):
                    want *= 2
                    continue
                raise ImportFormatError(
                    f"import data is not valid JSON: {exc.msg} at character "
                    f"{exc.pos + self._dropped}"
                ) from None
            except (RecursionError, ValueError) as exc:
                raise unreadable_json(exc, self._dropped + self._pos) from None
            # A number may continue in the next chunk: decode it again with more text.
            if end == len(self._buffer) and self._read(want):
                continue
            self._pos = end
            return value

    def _fail(self, message: str) -> ImportFormatError:
        where = self._dropped + self._pos - 1
        return ImportFormatError(f"import data is not valid JSON: {message} at character {where}")

    def __iter__(self) -> Iterator[Any]:
        """Yield each element of the array, then check nothing follows it."""
        first = self._next_char()
        if first != "[":
            if not first:
                raise ImportFormatError("import data is not valid JSON: it is empty")
            kind = _KIND_BY_FIRST_CHAR.get(first, "number")
            raise ImportFormatError(f"import data must be a JSON list of checkpoints, got {kind}")
        char = self._next_char()
        if char != "]":
            while True:
                if not char:
                    raise self._fail("unexpected end")
                self._pos -= 1
                yield self._value()
                char = self._next_char()
                if char == "]":
                    break
                if char != ",":
                    raise self._fail("expected ',' or ']'" if char else "unexpected end")
                char = self._next_char()
        if self._next_char():
            raise self._fail("extra data after the list")
