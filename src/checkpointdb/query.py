"""``find()``: its arguments checked once, and JSON filters turned into SQL per dialect.

A JSON filter is a dict of key paths to JSON scalars, for example
``{"run": "r1", "agent.role": "planner"}``. Every entry must hold, and each
means "the object at this path has this key, and its value equals this JSON
scalar":

* A path is a string of keys joined by ``.``, walking nested objects (never
  into lists), or a tuple of keys taken literally, for keys that contain
  ``.`` themselves or anything else: ``("a.b", 'say "hi"')``. A dotted
  string whose keys hold ``"``, ``$``, ``[`` or ``]`` is refused, since it
  reads like JSON-path syntax that is not supported here; so is an empty key.
* Values compare as JSON: a string matches only a string, ``True`` only
  ``true``, a number any equal number (``1`` matches ``1`` and ``1.0``, not
  ``"1"`` or ``true``), and ``None`` a JSON ``null`` stored under the key (a
  missing key never matches).

Keys and values are always bound parameters; no key is ever spliced into SQL
or into a JSON-path string. So the SQL text depends only on the query's
*shape* (which filters are set; each match's column, number of keys and JSON
type), and the repository compiles it once per shape:

* PostgreSQL: ``column @> CAST(:document AS JSONB)``, the document being the
  path nested into objects around the value (``{"agent": {"role":
  "planner"}}``). Containment means exactly the rules above, and a GIN index
  on the column can serve it. (``#>`` with a text[] path was rejected: it
  reads a key like ``"0"`` as a list index.)
* SQLite: ``EXISTS`` over ``json_each`` at every level, comparing each key
  (a bound parameter) with the decoded key. SQLite's JSON-path strings cannot
  carry every key: up to 3.44 a quoted key ends at the first ``"`` and is
  compared with the key's escaped JSON text, and from 3.45 on the rules
  differ again, so the same path string finds different keys on different
  SQLite versions. A path whose keys are all plain identifiers
  (``[A-Za-z_][A-Za-z0-9_]*``) reads the same on every version unquoted, so
  it is bound as one path string (``$.agent.role``) and tested with
  ``json_type`` and ``json_extract``: the same rules, at about half the cost
  of the ``json_each`` joins for a match near the newest checkpoints. The
  ``json_type`` test is left out where ``json_extract``'s value alone
  decides (any number but 0 and 1; any string not starting with ``{`` or
  ``[``).
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Concatenate, NamedTuple, ParamSpec, TypeVar

from .checkpoint import MAX_SEQ
from .errors import InvalidDataError
from .types import dumps_jsonb, require_aware
from .validate import check_identifier

if TYPE_CHECKING:
    from sqlalchemy import ColumnElement

S = TypeVar("S")
R = TypeVar("R")
P = ParamSpec("P")

KeyPath = str | tuple[str, ...]
JSONScalar = str | int | float | bool | None
JSONFilter = Mapping[KeyPath, JSONScalar]

# SQLite joins one json_each per key, and a join holds at most 64 tables.
MAX_PATH_KEYS = 32
# Characters of JSON-path syntax: in a dotted path they would be taken
# literally, which is never what someone writing "$.a" or "a[0]" means.
_PATH_SYNTAX = ('"', "$", "[", "]")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# Keys that an unquoted SQLite JSON path names exactly, on every SQLite version.
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PATH_HINT = 'pass the path as a tuple of keys to use them literally, e.g. ("a.b", "c")'



class JSONMatch(NamedTuple):
    """One filter entry: ``column`` holds ``value`` at ``path`` (JSON equality).

    ``json_path`` is the path as one SQLite JSON-path string (``$.agent.role``)
    when every key is a plain identifier, else None (see the module docstring).
    """

    column: str
    path: tuple[str, ...]
    value: JSONScalar
    json_path: str | None


def _check_key(key: object, where: str) -> str:
    if type(key) is not str:
        raise InvalidDataError(f"{where}: keys must be strings, got {type(key).__name__} {key!r}")
    if "\x00" in key:
        raise InvalidDataError(f"{where}: key {key!r} contains NUL, which no stored key can")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidDataError(f"{where}: key {key!r} is not valid Unicode") from None
    return key


def parse_path(path: object, what: str) -> tuple[str, ...]:
    """The keys of a filter path: a dotted string or a tuple of literal keys.

    Args:
        path: ``"agent.role"`` or ``("agent", "role")``.
        what: the filter's name in error messages (``"metadata"``).

    Raises:
        InvalidDataError: an empty path or key, a dotted string holding
            ``"``, ``$``, ``[`` or ``]``, a key that is not a string, or more
            than MAX_PATH_KEYS keys.
    """
    where = f"{what} filter path {path!r}"
    if isinstance(path, str):
        keys = tuple(path.split("."))
        if "" in keys:
            raise InvalidDataError(
                f"{where} has an empty key (a leading, trailing or doubled '.'); {_PATH_HINT}"
            )
        for symbol in _PATH_SYNTAX:
            if symbol in path:
                raise InvalidDataError(
                    f"{where} contains {symbol!r}: dotted paths are plain keys joined by '.', "
                    f"not JSON-path syntax; {_PATH_HINT}"
                )
    elif type(path) is tuple:
        keys = path
        if not keys:
            raise InvalidDataError(f"{where} is empty; give at least one key")
    else:
        raise InvalidDataError(
            f"{where} must be a dotted string or a tuple of keys, got {type(path).__name__}"
        )
    if len(keys) > MAX_PATH_KEYS:
        raise InvalidDataError(f"{where} has {len(keys)} keys; at most {MAX_PATH_KEYS} are allowed")
    return tuple(_check_key(key, where) for key in keys)


def check_value(value: object, column: str, path: object) -> JSONScalar:
    """Return ``value`` if it is a JSON scalar a filter can compare exactly.

    ``column`` and ``path`` name the filter entry in the error message (built
    only for a bad value: this runs for every entry of every find()).

    Raises:
        InvalidDataError: a list, dict or other object; NaN or infinity; an
            int outside 64 bits (SQLite's integers); a string holding NUL or
            a lone surrogate.
    """
    if value is None or type(value) is bool:
        return value
    if type(value) is int:
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise _bad_value(column, path, f"{value!r} does not fit in 64 bits")
        return value
    if type(value) is str:
        if "\x00" in value:
            raise _bad_value(column, path, f"{value!r} contains NUL, which no stored string can")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _bad_value(column, path, f"{value!r} is not valid Unicode") from None
        return value
    if type(value) is float:
        if not math.isfinite(value):
            raise _bad_value(column, path, f"{value!r} is not a JSON number")
        return value
    raise _bad_value(
        column,
        path,
        "filter values are JSON scalars (str, int, float, bool, None), "
        f"got {type(value).__name__} {value!r}",
    )


def _bad_value(column: str, path: object, problem: str) -> InvalidDataError:
    return InvalidDataError(f"{column} filter {path!r}: {problem}")


def parse_filter(spec: object, column: str) -> tuple[JSONMatch, ...]:
    """Check a ``metadata`` / ``data`` argument; one match per entry (None: none).

    Raises:
        InvalidDataError: not a dict, or a bad path or value (named in the message).
    """
    if spec is None:
        return ()
    if type(spec) is not dict and not isinstance(spec, Mapping):  # a dict: no ABC check
        raise InvalidDataError(
            f"{column} filter must be a dict of key paths to values, got {type(spec).__name__}"
        )
    matches = []
    for path, value in spec.items():
        parsed = _parsed_paths.get(path) if type(path) is str else None
        if parsed is None:
            keys = parse_path(path, column)
            parsed = (keys, "$." + ".".join(keys) if _plain(keys) else None)
            if type(path) is str:
                if len(_parsed_paths) >= _PARSED_PATHS_KEPT:
                    _parsed_paths.clear()
                _parsed_paths[path] = parsed
        matches.append(JSONMatch(column, parsed[0], check_value(value, column, path), parsed[1]))
    return tuple(matches)


# Dotted paths already checked, with their keys and JSON-path string: find()
# is mostly called with the same few paths, and checking one again costs a
# few microseconds a call. Whether a path is valid depends on its text alone.
_parsed_paths: dict[str, tuple[tuple[str, ...], str | None]] = {}
_PARSED_PATHS_KEPT = 1024


class FindQuery(NamedTuple):
    """The checked arguments of ``find()``: a shape and the values to bind (see :meth:`bind`).

    Within one session results come in creation (seq) order; across
    sessions, by ``created_at`` then session id and seq, since sessions have
    no common counter. A NamedTuple: one is built per call, and that costs
    a third of a frozen dataclass.
    """

    session_id: str | None
    name: str | None
    since: datetime | None
    until: datetime | None
    matches: tuple[JSONMatch, ...]
    limit: int | None
    newest_first: bool

    @classmethod
    def build(
        cls,
        name: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        metadata: JSONFilter | None = None,
        data: JSONFilter | None = None,
        limit: int | None = None,
        newest_first: bool = True,
        session_id: str | None = None,
    ) -> FindQuery:
        """Check every argument of ``find()`` before anything runs.

        This is the one declaration of ``find()``'s filters: the store's
        ``find`` takes exactly these arguments (see :func:`takes_filters`),
        a manager's all but ``session_id`` (see :func:`session_filters`).

        Raises:
            NaiveDatetimeError: ``since`` or ``until`` has no timezone.
            InvalidDataError: any other bad argument, named in the message.
        """
        if limit is not None and (type(limit) is not int or not 0 <= limit <= MAX_SEQ):
            raise InvalidDataError(
                f"limit must be an int from 0 to {MAX_SEQ} or None, got {limit!r}"
            )
        if type(newest_first) is not bool:
            raise InvalidDataError(f"newest_first must be True or False, got {newest_first!r}")
        return cls(
            None if session_id is None else check_identifier(session_id, "session_id"),
            None if name is None else check_identifier(name, "name"),
            None if since is None else require_aware(since, "since"),
            None if until is None else require_aware(until, "until"),
            parse_filter(metadata, "metadata") + parse_filter(data, "data"),
            limit,
            newest_first,
        )

    def bind(
        self, encode_time: Callable[[datetime], Any], dialect_name: str
    ) -> tuple[FindShape, dict[str, Any]]:
        """The query's shape, and the values to bind to its statement (of :func:`find_clauses`).

        The shape is what decides the SQL text: the filters set; each match's
        column, depth, kind and plainness. Two queries of one shape run the
        same compiled statement with different bound values. Both come from
        one walk over the query: this runs on every find().

        Args:
            encode_time: how the repository binds an aware datetime on its dialect.
            dialect_name: ``"sqlite"`` or ``"postgresql"``.
        """
        session_id, name, since, until, matches, limit, newest_first = self
        params: dict[str, Any] = {}
        if session_id is not None:
            params["session_id"] = session_id
        if name is not None:
            params["name"] = name
        if since is not None:
            params["since"] = encode_time(since)
        if until is not None:
            params["until"] = encode_time(until)
        if limit is not None:
            params["limit"] = limit
        match_shapes = []
        for index, (column, path, value, json_path) in enumerate(matches):
            kind = _kind(value)
            if dialect_name == "postgresql":
                match_shapes.append((column, len(path), kind, json_path is not None))
                document: Any = value
                for key in reversed(path):
                    document = {key: document}
                params[f"doc{index}"] = dumps_jsonb(document)
                continue
            if json_path is not None:
                params[f"path{index}"] = json_path
                if kind in _TYPED_KINDS and _equal_means_same_json(value):
                    kind = "equal"
            else:
                for depth, key in enumerate(path):
                    params[f"key{index}_{depth}"] = key
            if type(value) in (str, int, float):
                params[f"value{index}"] = value
            match_shapes.append((column, len(path), kind, json_path is not None))
        shape = (
            session_id is not None,
            name is not None,
            since is not None,
            until is not None,
            limit is not None,
            newest_first,
            tuple(match_shapes),
        )
        return shape, params


# Which filters a find() sets and how each JSON match looks (see FindQuery.bind).
FindShape = tuple[bool, bool, bool, bool, bool, bool, tuple[tuple[str, int, str, bool], ...]]


def _plain(path: tuple[str, ...]) -> bool:
    """Whether every key of ``path`` is a plain identifier (see the module docstring)."""
    return all(_PLAIN_KEY.fullmatch(key) for key in path)


# Kinds whose match tests the JSON type beside the value (see _value_test).
_TYPED_KINDS = ("text", "number")


def _equal_means_same_json(value: JSONScalar) -> bool:
    """Whether ``json_extract(...) = value`` alone already means the same JSON type.

    json_extract gives a JSON string as its text, a number as itself, true
    and false as 1 and 0, and an object or array as its JSON text; SQL never
    finds text equal to a number. So only a number equal to 0 or 1 can meet a
    boolean, and only a string starting with ``{`` or ``[`` an object's or
    array's text: any other value skips the type test, about 2 µs of a
    find() near the newest checkpoints.
    """
    if type(value) is str:
        return not value.startswith(("{", "["))
    return value != 0 and value != 1


def _kind(value: JSONScalar) -> str:
    """The JSON type a filter value matches (bool before int: True is an int in Python)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    return "text" if type(value) is str else "number"


def find_clauses(
    shape: FindShape, dialect_name: str
) -> tuple[list[ColumnElement[bool]], list[ColumnElement[Any]]]:
    """The WHERE conditions and ORDER BY of every query of ``shape``, on the checkpoints table.

    Every value is a bound parameter named as :meth:`FindQuery.bind` names it,
    so the compiled statement serves every query of the shape. Within one
    session the order is seq; across sessions created_at, session id, seq.
    """
    # SQLAlchemy is imported by the first find() of a shape only: opening a
    # store and the everyday calls run precompiled SQL (about 300 ms of imports).
    from sqlalchemy import bindparam

    from .models import checkpoints_table

    _cp = checkpoints_table.c
    session_set, name_set, since_set, until_set, _, newest_first, matches = shape
    conditions: list[ColumnElement[bool]] = []
    if session_set:
        conditions.append(_cp.session_id == bindparam("session_id"))
    if name_set:
        conditions.append(_cp.name == bindparam("name"))
    if since_set:
        conditions.append(_cp.created_at > bindparam("since"))
    if until_set:
        conditions.append(_cp.created_at <= bindparam("until"))
    for index, (column, depth, kind, plain) in enumerate(matches):
        if dialect_name == "postgresql":
            conditions.append(_postgresql_match(column, index))
        elif plain:
            conditions.append(_sqlite_path_match(column, kind, index))
        else:
            conditions.append(_sqlite_match(column, depth, kind, index))
    columns: Sequence[ColumnElement[Any]] = (
        [_cp.seq] if session_set else [_cp.created_at, _cp.session_id, _cp.seq]
    )
    order: list[ColumnElement[Any]] = [
        column.desc() if newest_first else column.asc() for column in columns
    ]
    return conditions, order


def _postgresql_match(column: str, index: int) -> ColumnElement[bool]:
    # Imported here: an SQLite store never loads the PostgreSQL dialect.
    from sqlalchemy import Text, bindparam, cast
    from sqlalchemy.dialects.postgresql import JSONB

    from .models import checkpoints_table

    _cp = checkpoints_table.c
    bound = cast(bindparam(f"doc{index}", type_=Text), JSONB)
    return _cp[column].op("@>", is_comparison=True)(bound)


def _sqlite_match(column: str, depth: int, kind: str, index: int) -> ColumnElement[bool]:
    """EXISTS over one json_each per key: each level's key equals the next path key."""
    from sqlalchemy import bindparam, exists, func, literal_column, select

    from .models import checkpoints_table

    _cp = checkpoints_table.c
    levels: list[Any] = []
    conditions: list[ColumnElement[bool]] = []
    source: Any = _cp[column]
    for level_index in range(depth):
        if levels:
            conditions.append(levels[-1].c.type == literal_column("'object'"))
        level = (
            func.json_each(source)
            .table_valued("key", "type", "atom", "value")
            .alias(f"{column[0]}{index}_{level_index}")
        )
        conditions.append(level.c.key == bindparam(f"key{index}_{level_index}"))
        levels.append(level)
        source = level.c.value
    conditions.append(_sqlite_value_test(levels[-1], kind, index))
    return exists(select(literal_column("1")).select_from(*levels).where(*conditions))


def _sqlite_path_match(column: str, kind: str, index: int) -> ColumnElement[bool]:
    """The value at one bound path string: json_type names its JSON type (NULL if absent)."""
    from sqlalchemy import Text, bindparam, func

    from .models import checkpoints_table

    _cp = checkpoints_table.c
    path = bindparam(f"path{index}", type_=Text)
    source = _cp[column]
    return _value_test(
        func.json_type(source, path), func.json_extract(source, path), kind, index
    )


def _sqlite_value_test(level: Any, kind: str, index: int) -> ColumnElement[bool]:
    """json_each's ``type`` names the JSON type; ``atom`` holds a scalar's SQL value."""
    return _value_test(level.c.type, level.c.atom, kind, index)


def _value_test(
    json_type: ColumnElement[Any], atom: ColumnElement[Any], kind: str, index: int
) -> ColumnElement[bool]:
    """A JSON type and scalar SQL value equal to match ``index`` of this ``kind``."""
    from sqlalchemy import bindparam, literal_column

    test: ColumnElement[bool]
    if kind == "equal":  # the value alone decides (see _equal_means_same_json)
        test = atom == bindparam(f"value{index}")
        return test
    if kind in ("null", "true", "false"):
        test = json_type == literal_column(f"'{kind}'")
        return test
    # The value first: it rules out almost every row, and the type test then
    # reads the JSON that SQLite has just parsed (it keeps recent parses).
    value = atom == bindparam(f"value{index}")
    if kind == "text":
        test = value & (json_type == literal_column("'text'"))
    else:
        numbers: list[ColumnElement[str]] = [
            literal_column("'integer'"),
            literal_column("'real'"),
        ]
        test = value & json_type.in_(numbers)
    return test


def session_filters(
    name: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    metadata: JSONFilter | None = None,
    data: JSONFilter | None = None,
    limit: int | None = None,
    newest_first: bool = True,
) -> FindQuery:
    """A manager's ``find()`` arguments: :meth:`FindQuery.build`'s but the session.

    The query has no session yet; the manager adds its own.
    """
    return FindQuery.build(name, since, until, metadata, data, limit, newest_first)


def takes_filters(
    build: Callable[P, FindQuery], session_of: Callable[[S], str] | None = None
) -> Callable[[Callable[[S, FindQuery], R]], Callable[Concatenate[S, P], R]]:
    """Give a ``find(self, query)`` method the public arguments of ``build``.

    So ``find()``'s filters are declared in one place (:meth:`FindQuery.build`,
    or :func:`session_filters` for a manager) and every flavour of ``find``
    takes them positionally or by keyword; the method gets the checked query.
    ``help()`` and ``inspect.signature`` show the filters as its arguments.

    With ``session_of`` (a manager's), the method gets the query with that
    session, built in one call of :meth:`FindQuery.build`: ``build``'s
    arguments must be its first ones, in order, which they are for
    :func:`session_filters`. A session passed as well is a TypeError, as
    any argument ``build`` does not take.
    """
    arguments = inspect.signature(build)

    def decorate(method: Callable[[S, FindQuery], R]) -> Callable[Concatenate[S, P], R]:
        if session_of is None:

            def find(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
                return method(self, build(*args, **kwargs))

        else:
            in_session = session_of
            build_all: Callable[..., FindQuery] = FindQuery.build

            def find(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
                # One build and one query per call, not one without the session and a copy.
                return method(self, build_all(*args, **kwargs, session_id=in_session(self)))

        own = inspect.signature(method)
        find.__signature__ = arguments.replace(  # type: ignore[attr-defined]
            parameters=[next(iter(own.parameters.values())), *arguments.parameters.values()],
            return_annotation=own.return_annotation,
        )
        find.__name__ = method.__name__
        find.__qualname__ = method.__qualname__
        find.__doc__ = method.__doc__
        find.__module__ = method.__module__
        return find

    return decorate
