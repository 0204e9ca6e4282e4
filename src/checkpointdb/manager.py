"""CheckpointManager: checkpoints of one session in the database, with retention policy.

The manager decides *what* happens (validation, when to compact, how many
to keep, how ids are assigned on import); the repository runs the SQL.
Every write is one short transaction; callbacks run after its COMMIT.

The policy lives in :class:`ManagerBase`, once for both flavours of the API:
each operation is a plan (checks, then an :class:`~checkpointdb.operations.Operation`
whose body runs in one transaction and whose finish builds the answer).
:class:`CheckpointManager` runs plans with :func:`~checkpointdb.operations.perform`;
the asyncio :class:`~checkpointdb.aio.AsyncCheckpointManager` awaits the same
function on a worker thread. A manager knows its store only through the
:class:`~checkpointdb.operations.Context` the store hands it; the store sits
above the manager and is never imported here.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from operator import attrgetter
from typing import IO, Any, Generic, Literal, Protocol, TypeVar, cast, overload

import jsonpatch

from .checkpoint import (
    FORK_HISTORIES,
    MAX_SEQ,
    STORED,
    STORED_OFF,
    Checkpoint,
    DataT,
    JSONDict,
    KeepRecent,
    Limit,
    RetentionPolicy,
    format_id,
    fresh_checkpoint,
    parse_id,
)
from .engine import Cursor
from .errors import ImportFormatError, InvalidDataError, NaiveDatetimeError, NotFoundError
from .jsonstream import JSONArrayReader, unreadable_json
from .operations import (
    Context,
    Operation,
    Plan,
    Ready,
    find_body,
    find_stream,
    perform,
    read,
    stream,
    unchanged,
)
from .query import FindQuery, session_filters, takes_filters
from .repository import (
    END_OF_TIME,
    PAGE_SIZE,
    NameCount,
    NewRow,
    Removed,
    Repository,
    StoredPolicy,
)
from .typed import StateModel
from .types import require_aware
from .validate import check_identifier

logger = logging.getLogger(__name__)

M = TypeVar("M")


class ContextSource(Protocol):
    """A store, as a manager sees it: the source of its :class:`Context`."""

    def context(self) -> Context:
        """The database, repository and payload encoder the store's managers use."""


# The store that ``CheckpointManager(session_id)`` with no store uses. The
# store module registers its ``default_store`` here when it is imported (the
# package imports it first): the manager sits below the store, so it cannot
# import the store to find it.
_default_store: Callable[[], ContextSource] | None = None


def use_default_store(factory: Callable[[], ContextSource]) -> None:
    """Make ``factory`` give the store of managers created without one."""
    global _default_store
    _default_store = factory

CheckpointCallback = Callable[[Checkpoint[DataT]], None]

# What a create accepts as data: any mapping, or an instance of the manager's model.
StateInput = Mapping[str, Any]

# keep="all": no cap and no compaction, stored on the session row like any policy.
KEEP_ALL = "all"
Keep = Literal["all"] | None

# (database, session id) of the sessions whose first retention deletion this
# process has logged: the log says once what the defaults delete.
_deletions_logged: set[tuple[str, str]] = set()
_deletions_lock = threading.Lock()

# An imported id keeps its seq only up to this (2**53: exact in every JSON
# reader); a larger one would leave too few ids for later checkpoints.
MAX_IMPORTED_SEQ = 2**53

# Paging through a session: the seq bound before the first page, oldest or newest first.
FIRST_PAGE_AFTER = 0
FIRST_PAGE_BEFORE = 2**62


# A create_many entry: (name, data) or (name, data, metadata).
BatchEntry = (
    tuple[str, Mapping[str, Any]]
    | tuple[str, Mapping[str, Any], Mapping[str, Any] | None]
)


@dataclass(frozen=True)
class CompactionReport:
    """What an explicit :meth:`CheckpointManager.compact` removed (or would remove).

    Attributes:
        removed: ids of the deleted checkpoints, oldest first.
        bytes_removed: payload bytes of the deleted checkpoints.
        remaining: live checkpoints afterwards.
        kept: why the remaining checkpoints stay, as counts by reason:
            ``first``, ``pinned``, ``recent`` (among the newest keep_recent),
            ``too_recent`` (younger than older_than), ``newest_of_name``.
        dry_run: True if nothing was deleted.
    """

    removed: list[str]
    bytes_removed: int
    remaining: int
    kept: dict[str, int]
    dry_run: bool

    @property
    def rows_removed(self) -> int:
        """How many checkpoints were (or would be) deleted."""
        return len(self.removed)


class _Absent(Enum):
    ABSENT = "absent"


@dataclass(frozen=True)
class _ImportEntry:
    """A validated import entry; its seq is decided inside the import transaction."""

    id: str
    row: NewRow
    # The entry's parent_id; ABSENT in exports written before parent links.
    parent_id: str | Literal[_Absent.ABSENT] | None


_SummaryParts = tuple[list[NameCount], Checkpoint | None, Checkpoint | None, int]


def _check_age(value: object) -> timedelta:
    if not isinstance(value, timedelta) or value < timedelta(0):
        raise InvalidDataError(f"older_than must be a non-negative timedelta, got {value!r}")
    return value


def _check_limit(value: object, label: str, minimum: int, optional: bool) -> None:
    if value is None and optional:
        return
    if type(value) is not int or not minimum <= value <= MAX_SEQ:
        allowed = f"an int from {minimum} to {MAX_SEQ}" + (" or None" if optional else "")
        raise InvalidDataError(f"{label} must be {allowed}, got {value!r}")


def _bound(value: object, label: str) -> datetime:
    if not isinstance(value, datetime):
        # A TypeError subclass, so code that caught TypeError for a bad bound still does.
        raise NaiveDatetimeError(f"{label} must be a timezone-aware datetime, got {value!r}")
    return require_aware(value, label)


def _import_time(value: object) -> datetime:
    if not isinstance(value, str):
        raise InvalidDataError(f"field 'timestamp' must be an ISO-8601 string, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidDataError(f"field 'timestamp' is not ISO-8601: {value!r}") from None
    return require_aware(parsed, "field 'timestamp'")


def _stored_limit(value: Limit) -> int | None:
    """A limit argument as the session row stores it (None: leave the column alone)."""
    if value is STORED:
        return None
    return STORED_OFF if value is None else value


def _retain(
    repo: Repository,
    cursor: Cursor,
    session_id: str,
    policy: RetentionPolicy,
    count: int,
    now: datetime,
) -> int:
    """Compact, then cap, as the policy says for a session of ``count`` live rows.

    Returns:
        How many checkpoints were deleted.
    """
    removed = 0
    if policy.compress_after is not None and count > policy.compress_after:
        removed = len(repo.compact(cursor, session_id, policy.keep_recent, now))
    if policy.max_checkpoints is not None and count - removed > policy.max_checkpoints:
        removed += len(repo.cap(cursor, session_id, policy.max_checkpoints, now))
    return removed


def _log_first_deletion(where: str, session_id: str, removed: int, policy: RetentionPolicy) -> None:
    """Log, once per session and process, that retention deleted checkpoints."""
    if not removed:
        return
    with _deletions_lock:
        if (where, session_id) in _deletions_logged:
            return
        _deletions_logged.add((where, session_id))
    logger.info(
        "session %s: retention deleted %d checkpoint(s) (max_checkpoints=%s, "
        "compress_after=%s, keep_recent=%s); to keep every checkpoint, open the manager "
        "with keep='all'. Logged once per session.",
        session_id,
        removed,
        policy.max_checkpoints,
        policy.compress_after,
        policy.keep_recent,
    )


def _found(checkpoint: Checkpoint | None, checkpoint_id: str) -> Checkpoint:
    if checkpoint is None:
        raise NotFoundError(
            f"no checkpoint {checkpoint_id!r}: it was never created or has been deleted"
        )
    return checkpoint


def next_page(page: list[Checkpoint]) -> int | None:
    """The seq bound of the page after ``page``, or None if ``page`` was the last."""
    return page[-1].seq if len(page) == PAGE_SIZE else None


def export_json(checkpoints: Iterable[Checkpoint]) -> str:
    """The export document: a JSON list of ``Checkpoint.to_dict()``, indented by 2."""
    return json.dumps([cp.to_dict() for cp in checkpoints], indent=2, ensure_ascii=False)


def json_patch(a: JSONDict, b: JSONDict) -> list[dict[str, Any]]:
    """The RFC 6902 JSON Patch that turns ``a`` into ``b`` (``[]`` when they are equal)."""
    patch: list[dict[str, Any]] = jsonpatch.make_patch(a, b).patch
    return patch


def log_callback_failure(checkpoint: Checkpoint[Any]) -> None:
    """Log the exception an on_checkpoint callback raised, with its traceback."""
    logger.exception(
        "on_checkpoint callback failed for %s; the checkpoint is stored", checkpoint.id
    )


def _imported_parent(
    parent_id: str | Literal[_Absent.ABSENT] | None,
    new_seqs: dict[str, int],
    previous: int | None,
    session_id: str,
    seq: int,
) -> int | None:
    """The parent seq of an imported entry that gets ``seq``.

    A parent earlier in the file follows that entry to its new seq; an
    earlier checkpoint of this session stays; any other parent makes the
    entry a root. An export without parent links chains each entry to the
    one before it (the first to the session's newest), as creates would.
    """
    if parent_id is _Absent.ABSENT:
        return previous
    if parent_id is None:
        return None
    if parent_id in new_seqs:
        return new_seqs[parent_id]
    parsed = parse_id(parent_id)
    if parsed is not None and parsed[0] == session_id and parsed[1] < seq:
        return parsed[1]
    return None


def _summary(parts: _SummaryParts) -> dict[str, Any]:
    counts, first, last, payload_bytes = parts
    if first is None or last is None:
        return {
            "total_count": 0,
            "unique_names": 0,
            "names": {},
            "first_checkpoint": None,
            "last_checkpoint": None,
            "duration_seconds": 0,
            "payload_bytes": payload_bytes,
        }
    names = {entry.name: entry.count for entry in counts}
    return {
        "total_count": sum(names.values()),
        "unique_names": len(names),
        "names": names,
        "first_checkpoint": first.to_dict(),
        "last_checkpoint": last.to_dict(),
        "duration_seconds": (last.timestamp - first.timestamp).total_seconds(),
        "payload_bytes": payload_bytes,
    }


class ManagerBase(ABC, Generic[DataT]):
    """The policy of one session's manager, whichever flavour of the API runs it.

    Each method here checks its arguments and returns a plan; it touches no
    database. The subclasses run the plans and add what differs between the
    flavours: callbacks, iteration, and the public signatures. ``DataT`` is
    the type of the data the manager's reads return: a JSON dict, or the
    instances of its ``model``.
    """

    def __init__(
        self,
        session_id: str,
        max_checkpoints: Limit,
        compress_after: Limit,
        keep_recent: KeepRecent,
        keep: Keep = None,
        strict: bool = False,
        model: type[DataT] | None = None,
    ) -> None:
        check_identifier(session_id, "session_id")
        if keep is not None:
            if keep != KEEP_ALL:
                raise InvalidDataError(f"keep must be 'all' or None, got {keep!r}")
            if max_checkpoints is not STORED or compress_after is not STORED:
                raise InvalidDataError(
                    "keep='all' switches max_checkpoints and compress_after off; "
                    f"pass either, not both (got max_checkpoints={max_checkpoints!r}, "
                    f"compress_after={compress_after!r})"
                )
            max_checkpoints = compress_after = None
        if type(strict) is not bool:
            raise InvalidDataError(f"strict must be True or False, got {strict!r}")
        self.strict = strict
        self._state: StateModel[DataT] | None = None if model is None else StateModel(model)
        if max_checkpoints is not STORED:
            _check_limit(max_checkpoints, "max_checkpoints", 0, optional=True)
        if compress_after is not STORED:
            _check_limit(compress_after, "compress_after", 0, optional=True)
        if keep_recent is not STORED:
            _check_limit(keep_recent, "keep_recent", 0, optional=False)
        self.session_id = session_id
        # What this manager writes to the session row with each create (None: nothing).
        self._policy_to_store: StoredPolicy = (
            _stored_limit(max_checkpoints),
            _stored_limit(compress_after),
            None if keep_recent is STORED else keep_recent,
        )
        # The policy as this manager last applied it; before its first write,
        # its arguments, and the defaults for those left out.
        self._note_policy(RetentionPolicy.from_stored(self._policy_to_store))

    def _note_policy(self, policy: RetentionPolicy) -> None:
        self.max_checkpoints = policy.max_checkpoints
        self.compress_after = policy.compress_after
        self.keep_recent = policy.keep_recent

    @property
    def model(self) -> type[DataT] | None:
        """The class the manager's reads return the data as (None: JSON dicts)."""
        return None if self._state is None else self._state.model

    # -- typed reads and strict lookups ------------------------------------------

    def _typed(self, checkpoint: Checkpoint) -> Checkpoint[DataT]:
        """A checkpoint as this manager returns it: its data as the model, if there is one."""
        if self._state is None:
            return cast(Checkpoint[DataT], checkpoint)
        return self._state.checkpoint(checkpoint)

    def _typed_list(self, checkpoints: list[Checkpoint]) -> list[Checkpoint[DataT]]:
        if self._state is None:
            return cast(list[Checkpoint[DataT]], checkpoints)
        return [self._state.checkpoint(checkpoint) for checkpoint in checkpoints]

    def _maybe(self, checkpoint: Checkpoint | None) -> Checkpoint[DataT] | None:
        return None if checkpoint is None else self._typed(checkpoint)

    def _by_id(self, checkpoint: Checkpoint | None, checkpoint_id: str) -> Checkpoint[DataT] | None:
        """A lookup's answer: None for an unknown id, or NotFoundError if the manager is strict."""
        if checkpoint is None:
            self._missing(checkpoint_id)
            return None
        return self._typed(checkpoint)

    def _missing(self, checkpoint_id: str) -> None:
        """Raise NotFoundError for an unknown id if this manager is strict."""
        if self.strict:
            raise NotFoundError(
                f"no checkpoint {checkpoint_id!r} in session {self.session_id!r}: it was "
                "never created, has been deleted, or belongs to another session"
            )

    def _done(self, done: bool, checkpoint_id: str) -> bool:
        """A by-id write's answer: False for an unknown id, or NotFoundError if strict."""
        if not done:
            self._missing(checkpoint_id)
        return done

    def _data_in(self, data: object) -> Any:
        """What a create validates and stores: a model instance as its JSON, else ``data``."""
        return data if self._state is None else self._state.dump(data)

    def _typed_stream(
        self, checkpoints: Generator[Checkpoint, None, None]
    ) -> Generator[Checkpoint[DataT], None, None]:
        """A stream of typed checkpoints that, closed, closes the query's stream."""
        if self._state is None:
            # A string: subscripting the generic types would run on every call.
            return cast("Generator[Checkpoint[DataT], None, None]", checkpoints)
        return self._map_stream(checkpoints)

    def _map_stream(
        self, checkpoints: Generator[Checkpoint, None, None]
    ) -> Generator[Checkpoint[DataT], None, None]:
        with closing(checkpoints):
            for checkpoint in checkpoints:
                yield self._typed(checkpoint)

    def _parent_seq(self, parent: object) -> int | None:
        """The seq a ``parent=`` argument names (None: the default parent)."""
        if parent is None:
            return None
        seq = self._seq_of(parent)
        if seq is None:
            raise NotFoundError(
                f"parent {parent!r} is not a checkpoint id of session {self.session_id!r}"
            )
        return seq

    @abstractmethod
    def _context(self) -> Context:
        """The store's database, repository and encoder (the store must be open)."""

    def _find(self, query: FindQuery) -> Callable[[Cursor], Iterable[Checkpoint]]:
        return find_body(self._context().repo, query._replace(session_id=self.session_id))

    def _everything(self) -> Callable[[Cursor], Iterable[Checkpoint]]:
        """Every live checkpoint of the session, oldest first, in one query."""
        return self._find(session_filters(newest_first=False))

    def _all_at_once(self) -> Operation[list[Checkpoint], list[Checkpoint]]:
        """Every live checkpoint as one moment saw them (one snapshot)."""
        body = self._everything()
        return read(lambda cursor: list(body(cursor)), snapshot=True)

    # -- writing ----------------------------------------------------------------

    def _create(
        self, name: str, data: object, metadata: object, pin: bool, parent: object
    ) -> Operation[tuple[int, int | None, RetentionPolicy, int], Checkpoint[DataT]]:
        check_identifier(name, "name")
        context = self._context()
        data_json, meta_json, size = context.encode(self._data_in(data), metadata)
        parent_seq = self._parent_seq(parent)
        pinned = bool(pin)
        now = datetime.now(UTC)
        repo, session_id = context.repo, self.session_id
        to_store = self._policy_to_store
        # This manager writes the cap and compaction off with the row: nothing
        # to decide after the insert, so it can end the write (one round trip).
        appends_only = parent_seq is None and to_store[0] == to_store[1] == STORED_OFF

        def body(cursor: Cursor) -> tuple[int, int | None, RetentionPolicy, int]:
            if appends_only:
                row = NewRow(0, name, now, data_json, meta_json, size, pinned)
                (seq, _, stored), parent = repo.append(cursor, session_id, now, row, to_store)
                return seq, parent, RetentionPolicy.from_stored(stored), 0
            if parent_seq is not None and not repo.exists(cursor, session_id, parent_seq):
                raise NotFoundError(
                    f"parent {format_id(session_id, parent_seq)!r} is not a live checkpoint"
                )
            if parent_seq is None:
                row = NewRow(0, name, now, data_json, meta_json, size, pinned)
                (seq, count, stored), parent_of_row = repo.append(
                    cursor, session_id, now, row, to_store, last=False
                )
            else:
                seq, count, stored = repo.allocate(cursor, session_id, now, size, policy=to_store)
                row = NewRow(seq, name, now, data_json, meta_json, size, pinned, parent_seq)
                repo.insert(cursor, session_id, row)
                parent_of_row = parent_seq
            policy = RetentionPolicy.from_stored(stored)
            removed = _retain(repo, cursor, session_id, policy, count, now)
            return seq, parent_of_row, policy, removed

        def finish(result: tuple[int, int | None, RetentionPolicy, int]) -> Checkpoint[DataT]:
            seq, parent_of_row, policy, removed = result
            self._note_policy(policy)
            _log_first_deletion(context.db.where, session_id, removed, policy)
            checkpoint = fresh_checkpoint(
                format_id(session_id, seq),
                name,
                now,
                data_json,
                {} if meta_json == "{}" else json.loads(meta_json),
                pinned,
                None if parent_of_row is None else format_id(session_id, parent_of_row),
            )
            logger.debug("session %s: created checkpoint %r (#%d)", session_id, name, seq)
            return self._typed(checkpoint)

        return Operation(body, finish, write=True)

    def _create_many(self, entries: object) -> Plan[list[Checkpoint[DataT]]]:
        now = datetime.now(UTC)
        rows = self._parse_batch(entries, now)
        if not rows:
            return Ready([])
        context = self._context()
        repo, session_id = context.repo, self.session_id
        to_store = self._policy_to_store
        total = sum(row.payload_bytes for row in rows)

        def body(cursor: Cursor) -> tuple[int, int | None, RetentionPolicy, int]:
            last, count, stored = repo.allocate(
                cursor, session_id, now, total, rows=len(rows), policy=to_store
            )
            first = last - len(rows) + 1
            parent = repo.insert_on_newest(cursor, session_id, rows[0]._replace(seq=first))
            for offset, row in enumerate(rows[1:], start=1):
                repo.insert(
                    cursor,
                    session_id,
                    row._replace(seq=first + offset, parent_seq=first + offset - 1),
                )
            policy = RetentionPolicy.from_stored(stored)
            removed = _retain(repo, cursor, session_id, policy, count, now)
            return first, parent, policy, removed

        def finish(
            result: tuple[int, int | None, RetentionPolicy, int],
        ) -> list[Checkpoint[DataT]]:
            first, parent, policy, removed = result
            self._note_policy(policy)
            _log_first_deletion(context.db.where, session_id, removed, policy)
            created = []
            for offset, row in enumerate(rows):
                seq = first + offset
                parent_seq = parent if offset == 0 else seq - 1
                created.append(
                    fresh_checkpoint(
                        format_id(session_id, seq),
                        row.name,
                        now,
                        row.data_json,
                        json.loads(row.metadata_json),
                        False,
                        None if parent_seq is None else format_id(session_id, parent_seq),
                    )
                )
            logger.debug("session %s: created %d checkpoints", session_id, len(created))
            return self._typed_list(created)

        return Operation(body, finish, write=True)

    def _create_many_keeping(
        self, entries: object, keep_newest: int | None
    ) -> Plan[list[Checkpoint[DataT]]]:
        """``create_many``; then, in its transaction, all but the newest ``keep_newest`` go."""
        if keep_newest is None:
            return self._create_many(entries)
        _check_limit(keep_newest, "keep_newest", 1, optional=False)
        plan = self._create_many(entries)
        if isinstance(plan, Ready):
            return plan
        now = datetime.now(UTC)
        repo, session_id, keep, add = self._context().repo, self.session_id, keep_newest, plan

        def body(cursor: Cursor) -> Any:
            added = add.body(cursor)
            repo.keep_newest(cursor, session_id, keep, now)
            return added

        return plan._replace(body=body)

    def _parse_batch(self, entries: object, now: datetime) -> list[NewRow]:
        """Validate every create_many entry before anything is written."""
        if isinstance(entries, str | bytes | dict) or not isinstance(entries, Iterable):
            raise InvalidDataError(
                f"entries must be a list of (name, data[, metadata]) tuples, got {entries!r:.80}"
            )
        rows = []
        for index, entry in enumerate(entries):
            if not isinstance(entry, tuple | list) or len(entry) not in (2, 3):
                raise InvalidDataError(
                    f"entry {index}: must be a (name, data) or (name, data, metadata) tuple, "
                    f"got {entry!r:.80}"
                )
            name, data, *rest = entry
            try:
                check_identifier(name, "name")
                data_json, meta_json, size = self._context().encode(
                    self._data_in(data), rest[0] if rest else None
                )
            except InvalidDataError as exc:
                raise type(exc)(f"entry {index}: {exc}") from None
            rows.append(NewRow(0, name, now, data_json, meta_json, size))
        return rows

    def _delete(self, checkpoint_id: str) -> Plan[bool]:
        seq = self._seq_of(checkpoint_id)
        if seq is None:
            return Ready(False)
        now = datetime.now(UTC)
        repo, session_id = self._context().repo, self.session_id
        def body(cursor: Cursor) -> bool:
            repo.lock_existing_session(cursor, session_id)
            return bool(repo.delete(cursor, session_id, seq, now))

        return Operation(body, unchanged, write=True)

    def _pop(self) -> Operation[Checkpoint | None, Checkpoint | None]:
        now = datetime.now(UTC)
        repo, session_id = self._context().repo, self.session_id

        def body(cursor: Cursor) -> Checkpoint | None:
            repo.lock_existing_session(cursor, session_id)
            newest = repo.latest(cursor, session_id)
            if newest is not None:
                repo.delete(cursor, session_id, newest.seq, now)
            return newest

        return Operation(body, unchanged, write=True)

    def _truncate_after(self, checkpoint_id: str) -> Operation[int, int]:
        seq = self._live_seq(checkpoint_id)
        now = datetime.now(UTC)
        repo, session_id = self._context().repo, self.session_id

        def body(cursor: Cursor) -> int:
            repo.lock_existing_session(cursor, session_id)
            self._require_live(repo, cursor, seq)
            return len(repo.delete_after(cursor, session_id, seq, now))

        return Operation(body, unchanged, write=True)

    def _fork(self, checkpoint_id: str, new_session_id: str, history: str) -> Operation[int, str]:
        seq = self._live_seq(checkpoint_id)
        check_identifier(new_session_id, "new_session_id")
        if history not in FORK_HISTORIES:
            raise InvalidDataError(
                f"history must be one of {', '.join(map(repr, FORK_HISTORIES))}, got {history!r}"
            )
        now = datetime.now(UTC)
        repo, session_id = self._context().repo, self.session_id
        to_store = self._policy_to_store

        def body(cursor: Cursor) -> int:
            # Both session rows locked first, in one order (by id), whatever the direction.
            if session_id < new_session_id:
                repo.lock_existing_session(cursor, session_id)
            target_last_seq = repo.lock_session(cursor, new_session_id, now)
            if session_id > new_session_id:
                repo.lock_existing_session(cursor, session_id)
            self._require_live(repo, cursor, seq)
            if target_last_seq > 0:
                raise InvalidDataError(
                    f"cannot fork into session {new_session_id!r}: it already has checkpoints "
                    f"(last id {format_id(new_session_id, target_last_seq)}); fork into a new one"
                )
            return repo.fork(cursor, session_id, seq, new_session_id, history, now, to_store)

        def finish(copied: int) -> str:
            logger.info(
                "session %s: forked %s into %s (%d checkpoints)",
                session_id,
                checkpoint_id,
                new_session_id,
                copied,
            )
            return new_session_id

        return Operation(body, finish, write=True)

    def _set_session_metadata(self, metadata: JSONDict) -> Operation[None, None]:
        _data, meta_json, _size = self._context().encode({}, metadata)
        now = datetime.now(UTC)
        repo, session_id = self._context().repo, self.session_id
        return Operation(
            lambda cursor: repo.set_session_metadata(cursor, session_id, meta_json, now),
            unchanged,
            write=True,
        )

    def _clear(self) -> Operation[int, int]:
        now = datetime.now(UTC)
        repo, session_id = self._context().repo, self.session_id

        def finish(count: int) -> int:
            logger.info("session %s: cleared %d checkpoints", session_id, count)
            return count

        def body(cursor: Cursor) -> int:
            repo.lock_existing_session(cursor, session_id)
            return len(repo.clear(cursor, session_id, now))

        return Operation(body, finish, write=True)

    def _compact(
        self, keep_recent: int | None, older_than: timedelta | None, dry_run: bool
    ) -> Operation[tuple[list[Removed], dict[str, int]], CompactionReport]:
        # keep_recent left out: this manager's, else the session's stored one.
        given = self._policy_to_store[2] if keep_recent is None else keep_recent
        if given is not None:
            _check_limit(given, "keep_recent", 0, optional=False)
        now = datetime.now(UTC)
        cutoff = END_OF_TIME if older_than is None else now - _check_age(older_than)
        repo, session_id = self._context().repo, self.session_id

        def body(cursor: Cursor) -> tuple[list[Removed], dict[str, int]]:
            repo.lock_existing_session(cursor, session_id)
            keep = given
            if keep is None:
                info = repo.session(cursor, session_id)
                keep = (RetentionPolicy() if info is None else info.policy).keep_recent
            removed = repo.compact(cursor, session_id, keep, now, cutoff)
            return removed, repo.keep_reasons(cursor, session_id, keep, cutoff)

        def finish(result: tuple[list[Removed], dict[str, int]]) -> CompactionReport:
            removed, kept = result
            return CompactionReport(
                removed=[format_id(session_id, r.seq) for r in removed],
                bytes_removed=sum(r.payload_bytes for r in removed),
                remaining=sum(kept.values()),
                kept=kept,
                dry_run=dry_run,
            )

        return Operation(body, finish, write=True, commit=not dry_run)

    def _set_pinned(self, checkpoint_id: str, pinned: bool) -> Plan[bool]:
        seq = self._seq_of(checkpoint_id)
        if seq is None:
            return Ready(False)
        repo, session_id = self._context().repo, self.session_id
        def body(cursor: Cursor) -> bool:
            repo.lock_existing_session(cursor, session_id)
            return repo.set_pinned(cursor, session_id, seq, pinned)

        return Operation(body, unchanged, write=True)

    def _import(self, json_data: str) -> Operation[int, int]:
        entries = self._parse_import(json_data)
        return self._insert_imported(lambda: entries)

    def _import_stream(
        self, stream: IO[Any], progress: Callable[[int], object] | None
    ) -> Operation[int, int]:
        def entries() -> Iterator[_ImportEntry]:
            seen: dict[str, int] = {}
            for index, entry in enumerate(JSONArrayReader(stream, progress=progress)):
                yield self._import_entry(index, entry, seen)

        # The stream cannot be read twice: a transaction rolled back is not run again.
        return self._insert_imported(entries)._replace(retry=False)

    def _insert_imported(
        self, entries: Callable[[], Iterable[_ImportEntry]]
    ) -> Operation[int, int]:
        """Insert checked entries in one transaction; a bad one raises and rolls all back."""
        now = datetime.now(UTC)
        repo, session_id = self._context().repo, self.session_id
        to_store = self._policy_to_store

        def rows(
            pending: Iterable[_ImportEntry], last: int, previous: int | None
        ) -> Iterator[NewRow]:
            new_seqs: dict[str, int] = {}
            for entry in pending:
                parsed = parse_id(entry.id)
                if (
                    parsed is not None
                    and parsed[0] == session_id
                    and last < parsed[1] <= MAX_IMPORTED_SEQ
                ):
                    last = parsed[1]
                else:
                    last += 1
                parent = _imported_parent(entry.parent_id, new_seqs, previous, session_id, last)
                yield entry.row._replace(seq=last, parent_seq=parent)
                new_seqs[entry.id] = previous = last

        def body(cursor: Cursor) -> int:
            pending = iter(entries())
            first = next(pending, None)
            if first is None:
                return 0  # nothing to import: no session is created
            # Takes the session's lock, and stores this manager's policy
            # arguments as a create does.
            last = repo.allocate(cursor, session_id, now, 0, rows=0, policy=to_store).last_seq
            newest = repo.page_desc(cursor, session_id, FIRST_PAGE_BEFORE, 1)
            previous = newest[0].seq if newest else None
            everything = itertools.chain((first,), pending)
            return repo.insert_many(cursor, session_id, rows(everything, last, previous), now)

        def finish(count: int) -> int:
            logger.info("session %s: imported %d checkpoints", session_id, count)
            return count

        return Operation(body, finish, write=True)

    def _parse_import(self, json_data: object) -> list[_ImportEntry]:
        if isinstance(json_data, bytes):
            raise ImportFormatError("import data must be str (decoded JSON text), got bytes")
        if not isinstance(json_data, str):
            raise ImportFormatError(
                f"import data must be a JSON string, got {type(json_data).__name__}"
            )
        try:
            document = json.loads(json_data)
        except json.JSONDecodeError as exc:
            raise ImportFormatError(f"import data is not valid JSON: {exc}") from None
        except (RecursionError, ValueError) as exc:
            raise unreadable_json(exc, 0) from None
        if not isinstance(document, list):
            raise ImportFormatError(
                f"import data must be a JSON list of checkpoints, got {type(document).__name__}"
            )
        seen: dict[str, int] = {}
        return [self._import_entry(index, entry, seen) for index, entry in enumerate(document)]

    def _import_entry(self, index: int, entry: object, seen: dict[str, int]) -> _ImportEntry:
        """Check entry ``index`` of an import; ``seen`` maps the ids so far to their entries."""
        where = f"entry {index}"
        if not isinstance(entry, dict):
            raise ImportFormatError(f"{where}: must be an object, got {type(entry).__name__}")
        missing = [key for key in ("id", "name", "timestamp", "data") if key not in entry]
        if missing:
            raise ImportFormatError(f"{where}: missing field(s) {', '.join(missing)}")
        entry_id = entry["id"]
        if not isinstance(entry_id, str) or not entry_id:
            raise ImportFormatError(f"{where}: field 'id' must be a non-empty string")
        if entry_id in seen:
            raise ImportFormatError(
                f"{where}: id {entry_id!r} already appears in entry {seen[entry_id]}"
            )
        seen[entry_id] = index
        pinned = entry.get("pinned", False)
        if not isinstance(pinned, bool):
            raise ImportFormatError(f"{where}: field 'pinned' must be true or false")
        parent_id = entry.get("parent_id", _Absent.ABSENT)
        if parent_id is not None and not isinstance(parent_id, str | _Absent):
            raise ImportFormatError(f"{where}: field 'parent_id' must be a string or null")
        try:
            name = check_identifier(entry["name"], "name")
            timestamp = _import_time(entry["timestamp"])
            encode = self._context().encode
            data_json, meta_json, size = encode(entry["data"], entry.get("metadata", {}))
        except InvalidDataError as exc:
            raise ImportFormatError(f"{where}: {exc}") from None
        row = NewRow(0, name, timestamp, data_json, meta_json, size, pinned)
        return _ImportEntry(entry_id, row, parent_id)

    # -- reading ----------------------------------------------------------------

    def _seq_of(self, checkpoint_id: object) -> int | None:
        parsed = parse_id(checkpoint_id)
        if parsed is None or parsed[0] != self.session_id:
            return None
        return parsed[1]

    def _live_seq(self, checkpoint_id: object) -> int:
        """The seq of an id that must name a checkpoint of this session."""
        seq = self._seq_of(checkpoint_id)
        if seq is None:
            raise NotFoundError(
                f"{checkpoint_id!r} is not a checkpoint id of session {self.session_id!r}"
            )
        return seq

    def _require_live(self, repo: Repository, cursor: Cursor, seq: int) -> None:
        if not repo.exists(cursor, self.session_id, seq):
            raise NotFoundError(
                f"no checkpoint {format_id(self.session_id, seq)!r}: it was never created "
                "or has been deleted"
            )

    def _lineage(self, checkpoint_id: str) -> Plan[list[Checkpoint]]:
        seq = self._seq_of(checkpoint_id)
        if seq is None:
            return Ready([])
        repo, session_id = self._context().repo, self.session_id
        return read(lambda cursor: repo.lineage(cursor, session_id, seq))

    def _recent(self, n: int) -> Plan[list[Checkpoint]]:
        _check_limit(n, "n", 0, optional=False)
        if n == 0:
            return Ready([])
        repo, session_id = self._context().repo, self.session_id
        return Operation(
            lambda cursor: repo.page_desc(cursor, session_id, FIRST_PAGE_BEFORE, n),
            lambda newest_first: newest_first[::-1],
        )

    def _diff(
        self, a_id: str, b_id: str
    ) -> Operation[tuple[Checkpoint | None, Checkpoint | None], list[dict[str, Any]]]:
        seqs = (self._live_seq(a_id), self._live_seq(b_id))
        repo, session_id = self._context().repo, self.session_id

        def body(cursor: Cursor) -> tuple[Checkpoint | None, Checkpoint | None]:
            return repo.get(cursor, session_id, seqs[0]), repo.get(cursor, session_id, seqs[1])

        def finish(pair: tuple[Checkpoint | None, Checkpoint | None]) -> list[dict[str, Any]]:
            a, b = (
                _found(cp, checkpoint_id)
                for cp, checkpoint_id in zip(pair, (a_id, b_id), strict=True)
            )
            return json_patch(a.data, b.data)

        return Operation(body, finish)

    def _get(self, checkpoint_id: str) -> Plan[Checkpoint | None]:
        seq = self._seq_of(checkpoint_id)
        if seq is None:
            return Ready(None)
        repo, session_id = self._context().repo, self.session_id
        return read(lambda cursor: repo.get(cursor, session_id, seq))

    def _by_name(
        self, name: str, limit: int | None
    ) -> Operation[list[Checkpoint], list[Checkpoint]]:
        _check_limit(limit, "limit", 0, optional=True)
        repo, session_id = self._context().repo, self.session_id
        return read(lambda cursor: repo.by_name(cursor, session_id, name, limit))

    def _latest(self, name: str | None) -> Plan[Checkpoint | None]:
        repo, session_id = self._context().repo, self.session_id
        if not name:
            return read(lambda cursor: repo.latest(cursor, session_id))
        return Operation(
            lambda cursor: repo.by_name(cursor, session_id, name, 1),
            lambda found: found[0] if found else None,
            snapshot=False,
        )

    def _page(self, after: int) -> Operation[list[Checkpoint], list[Checkpoint]]:
        repo, session_id = self._context().repo, self.session_id
        return read(lambda cursor: repo.page(cursor, session_id, after))

    def _page_rows(self, after: int) -> Operation[list[Sequence[Any]], list[Sequence[Any]]]:
        repo, session_id = self._context().repo, self.session_id
        return read(lambda cursor: repo.page_rows(cursor, session_id, after))

    def _page_desc(self, before: int) -> Operation[list[Checkpoint], list[Checkpoint]]:
        repo, session_id = self._context().repo, self.session_id
        return read(lambda cursor: repo.page_desc(cursor, session_id, before))

    def _since(self, timestamp: datetime) -> Operation[list[Checkpoint], list[Checkpoint]]:
        start = _bound(timestamp, "timestamp")
        repo, session_id = self._context().repo, self.session_id
        return read(lambda cursor: repo.since(cursor, session_id, start))

    def _between(
        self, start: datetime, end: datetime
    ) -> Operation[list[Checkpoint], list[Checkpoint]]:
        lower = _bound(start, "start")
        upper = _bound(end, "end")
        repo, session_id = self._context().repo, self.session_id
        return read(lambda cursor: repo.between(cursor, session_id, lower, upper))

    def _restore(self, checkpoint: Checkpoint[DataT] | None, checkpoint_id: str) -> DataT | None:
        """What rollback_to returns for the checkpoint it looked up."""
        if checkpoint is None:
            return None
        logger.info(
            "session %s: rollback to checkpoint %r (%s)",
            self.session_id,
            checkpoint.name,
            checkpoint_id,
        )
        return checkpoint.data

    def _resume(self, latest: Checkpoint[DataT] | None, default: DataT) -> DataT:
        """What resume returns: the newest checkpoint's data, or ``default``."""
        if latest is None:
            logger.info("session %s: no checkpoint yet, starting from the default", self.session_id)
            return default
        logger.info("session %s: resuming from %r (%s)", self.session_id, latest.name, latest.id)
        return latest.data

    def _summary(self) -> Operation[_SummaryParts, dict[str, Any]]:
        repo, session_id = self._context().repo, self.session_id

        def body(cursor: Cursor) -> _SummaryParts:
            counts = repo.name_counts(cursor, session_id)
            first = repo.first(cursor, session_id)
            last = repo.latest(cursor, session_id)
            info = repo.session(cursor, session_id)
            return counts, first, last, 0 if info is None else info.payload_bytes

        return Operation(body, _summary)

    def _count(self) -> Operation[int, int]:
        repo, session_id = self._context().repo, self.session_id
        return read(lambda cursor: repo.count(cursor, session_id))


class CheckpointManager(ManagerBase[DataT]):
    """Checkpoints of one agent session, stored in a :class:`CheckpointStore`.

    The in-memory manager's API, method for method: ``create``, ``get``, ``get_by_name``,
    ``get_latest``, ``get_all``, ``get_since``, ``get_between``,
    ``rollback_to``, ``clear``, ``get_summary``, ``on_checkpoint``, ``export``,
    ``import_checkpoints``, ``len()`` and iteration.

    Where the in-memory manager was wrong, this does the right thing:

    * ``max_checkpoints`` is enforced: after compaction, if more unpinned
      live checkpoints remain than the cap, the oldest between the first and
      the newest are deleted in the same transaction (so the first and the
      checkpoint just created always stay, whatever the cap).
    * Ordering is by seq (creation order), never by wall-clock time.
    * Compaction keeps the first checkpoint once, however small ``compress_after``.
    * Imported checkpoints never duplicate an id.

    The retention policy belongs to the session: it is stored on the
    session's row, and every create applies the policy stored there, in the
    create's transaction, whichever process or host runs it. A policy
    argument left out follows the stored setting (the defaults 100, 50 and 20
    for a session that never set one); a policy argument given is written to
    the session row by each create, ``create_many`` and import of this
    manager (not before: making a manager does no I/O). So two processes
    passing different policies each apply and store their own on their own
    writes, and the row holds whichever wrote last; pass the policy in one
    place and leave it out everywhere else. ``mgr.max_checkpoints``,
    ``compress_after`` and ``keep_recent`` show the policy the manager last
    applied (before its first write: its arguments, else the defaults);
    ``store.session(sid).policy`` shows the stored one.

    The defaults delete: a session that never set a policy keeps at most 100
    unpinned checkpoints, and once it holds more than 50, each create
    compacts it to the first, the newest 20 and the newest of each name.
    The first time retention deletes checkpoints of a session, the process
    logs it at INFO. ``keep="all"`` keeps every checkpoint (no cap, no
    compaction), stored on the session row like any policy.

    Args:
        session_id: the session's id (a non-empty printable string; may contain ':').
        max_checkpoints: unpinned live checkpoints kept at most (None: no cap);
            the first and the newest are never deleted by the cap.
        compress_after: compact when the live count exceeds this (None: never;
            0: on every create).
        keep_recent: how many of the newest checkpoints compaction always keeps.
        store: the :class:`CheckpointStore` to use; None means
            :func:`~checkpointdb.default_store`, so code written for the
            in-memory manager, ``CheckpointManager("s1")``, works unchanged.
        keep: ``"all"`` keeps every checkpoint: ``max_checkpoints`` and
            ``compress_after`` off (do not pass them too).
        strict: lookups by id (``get``, ``rollback_to``, ``lineage``, ``pin``,
            ``unpin``, ``delete``) raise :class:`NotFoundError` for an id that
            is not a live checkpoint of the session, instead of returning
            None, ``[]`` or False.
        model: a dataclass or pydantic model class: every read returns
            ``Checkpoint[model]`` whose ``data`` is an instance, ``rollback_to``
            and ``resume`` return instances, and ``create`` also takes one.
            The store keeps plain JSON either way.

    Raises:
        InvalidDataError: a bad argument.
    """

    @overload
    def __init__(
        self: CheckpointManager[JSONDict],
        session_id: str,
        max_checkpoints: Limit = STORED,
        compress_after: Limit = STORED,
        *,
        keep_recent: KeepRecent = STORED,
        store: ContextSource | None = None,
        keep: Keep = None,
        strict: bool = False,
        model: None = None,
    ) -> None: ...

    @overload
    def __init__(
        self: CheckpointManager[M],
        session_id: str,
        max_checkpoints: Limit = STORED,
        compress_after: Limit = STORED,
        *,
        keep_recent: KeepRecent = STORED,
        store: ContextSource | None = None,
        keep: Keep = None,
        strict: bool = False,
        model: type[M],
    ) -> None: ...

    @overload
    def __init__(
        self: CheckpointManager[Any],
        session_id: str,
        max_checkpoints: Limit = STORED,
        compress_after: Limit = STORED,
        *,
        keep_recent: KeepRecent = STORED,
        store: ContextSource | None = None,
        keep: Keep = None,
        strict: bool = False,
        model: type[Any] | None = None,
    ) -> None: ...

    def __init__(
        self,
        session_id: str,
        max_checkpoints: Limit = STORED,
        compress_after: Limit = STORED,
        *,
        keep_recent: KeepRecent = STORED,
        store: ContextSource | None = None,
        keep: Keep = None,
        strict: bool = False,
        model: type[Any] | None = None,
    ) -> None:
        super().__init__(
            session_id, max_checkpoints, compress_after, keep_recent, keep, strict, model
        )
        if store is None:
            if _default_store is None:
                raise AssertionError("checkpointdb.store registers the default store on import")
            store = _default_store()
        self.store = store
        self._ctx = store.context()
        self._db = self._ctx.db
        self._on_checkpoint: CheckpointCallback[DataT] | None = None

    def _context(self) -> Context:
        return self._ctx

    def __repr__(self) -> str:
        return f"CheckpointManager({self.session_id!r}, store={self.store!r})"

    # -- writing ----------------------------------------------------------------

    def create(
        self,
        name: str,
        data: StateInput | DataT,
        metadata: Mapping[str, Any] | None = None,
        *,
        pin: bool = False,
        parent: str | None = None,
    ) -> Checkpoint[DataT]:
        """Create a checkpoint; it is on disk when this returns.

        Compaction (and the ``max_checkpoints`` cap) run in the same
        transaction, so a crash leaves either all of it or none.

        Args:
            name: semantic name, e.g. ``"task_started"``.
            data: the JSON state to store: a dict or any other mapping (a
                ``TypedDict``, a ``MappingProxyType``), or an instance of the
                manager's model.
            metadata: optional extra JSON (a mapping).
            pin: keep this checkpoint through compaction, the cap and expiry.
            parent: the id of a live checkpoint of this session to branch
                from; by default the parent is the session's newest live
                checkpoint when the create runs (None for the first).

        Returns:
            The stored checkpoint, read back exactly as a later ``get`` returns it.

        Raises:
            InvalidDataError: bad name or a payload that cannot round-trip;
                nothing was written.
            NotFoundError: ``parent`` is not a live checkpoint of this
                session; nothing was written.
            StoreBusyError, StoreFullError: the database refused the write;
                nothing was written.
        """
        checkpoint = perform(self._create(name, data, metadata, pin, parent), self._db)
        self._notify([checkpoint])
        return checkpoint

    def _notify(self, checkpoints: list[Checkpoint[DataT]]) -> None:
        callback = self._on_checkpoint
        if callback is None:
            return
        for checkpoint in checkpoints:
            try:
                callback(checkpoint)
            except Exception:
                log_callback_failure(checkpoint)

    def create_many(
        self, entries: Iterable[BatchEntry], *, keep_newest: int | None = None
    ) -> list[Checkpoint[DataT]]:
        """Create several checkpoints in one transaction, in order.

        Every entry is validated before anything is written; the ids are
        taken with one counter update; each entry's parent is the entry
        before it (the first's, the session's newest live checkpoint);
        compaction and the cap run once, at the end, so they may already have
        removed some of the returned checkpoints from the middle.

        Args:
            entries: ``(name, data)`` or ``(name, data, metadata)`` tuples.
            keep_newest: after the insert, in the same transaction, delete
                every checkpoint older than the session's newest
                ``keep_newest`` (an int >= 1), the first and pinned ones
                too, unlike ``max_checkpoints``. Nothing is deleted when
                ``entries`` is empty.

        Returns:
            The created checkpoints, oldest first.

        Raises:
            InvalidDataError: an entry is malformed (the message names its
                index), or ``keep_newest`` is not an int >= 1. Nothing was written.
        """
        created = perform(self._create_many_keeping(entries, keep_newest), self._db)
        self._notify(created)
        return created

    def delete(self, checkpoint_id: str) -> bool:
        """Delete one checkpoint, pinned or not; its id is never issued again.

        Children keep their ``parent_id``, which then names a deleted checkpoint.

        Returns:
            False if this session has no live checkpoint with that id.

        Raises:
            NotFoundError: instead of returning False, if the manager is strict.
        """
        return self._done(perform(self._delete(checkpoint_id), self._db), checkpoint_id)

    def pop(self) -> Checkpoint[DataT] | None:
        """Delete the newest checkpoint and return it (None if the session is empty)."""
        return self._maybe(perform(self._pop(), self._db))

    def truncate_after(self, checkpoint_id: str) -> int:
        """Delete every checkpoint newer than this one (on every branch), pinned too.

        Returns:
            How many checkpoints were deleted.

        Raises:
            NotFoundError: the id is not a live checkpoint of this session.
        """
        return perform(self._truncate_after(checkpoint_id), self._db)

    def fork(
        self, checkpoint_id: str, new_session_id: str, *, history: str = "lineage"
    ) -> CheckpointManager[DataT]:
        """Start a new session from a checkpoint of this one, copied in the database.

        One transaction and one ``INSERT ... SELECT``: no row passes through
        Python. The copies are numbered from 1 in their old order, keep
        their names, times, payloads and pins, and their parent links point
        to the copies (a parent that was not copied becomes None). The new
        session takes this session's metadata and policy, and
        ``store.session(new_session_id).forked_from`` is ``checkpoint_id``.

        Args:
            checkpoint_id: a live checkpoint of this session.
            new_session_id: a session that has never had checkpoints.
            history: ``"latest"`` copies the checkpoint alone; ``"lineage"``
                it and its live ancestors; ``"all"`` every live checkpoint up
                to and including it.

        Returns:
            A manager of the new session (following its stored policy), with
            this one's ``strict`` and ``model``.

        Raises:
            NotFoundError: ``checkpoint_id`` is not a live checkpoint here.
            InvalidDataError: bad ``history`` or ``new_session_id``, or that
                session already has (or had) checkpoints. Nothing was written.
        """
        new_id = perform(self._fork(checkpoint_id, new_session_id, history), self._db)
        # model None gives CheckpointManager[JSONDict], which DataT then is.
        return cast(
            CheckpointManager[DataT],
            CheckpointManager(new_id, store=self.store, strict=self.strict, model=self.model),
        )

    def set_session_metadata(self, metadata: JSONDict) -> None:
        """Replace the session's own metadata (``store.session(sid).metadata``).

        Raises:
            InvalidDataError: ``metadata`` is not a JSON object that can be stored exactly.
        """
        perform(self._set_session_metadata(metadata), self._db)

    def clear(self) -> int:
        """Delete every checkpoint of the session, pinned ones too; ids continue where they were.

        Returns:
            How many checkpoints were deleted.
        """
        return perform(self._clear(), self._db)

    def compact(
        self,
        *,
        keep_recent: int | None = None,
        older_than: timedelta | None = None,
        dry_run: bool = False,
    ) -> CompactionReport:
        """Run the compaction policy now, whatever the live count.

        Keeps the first checkpoint, the newest ``keep_recent`` (default: the
        manager's), the newest of each name among the rest, every pinned
        checkpoint and, with ``older_than``, every checkpoint younger than
        that; deletes the others in one statement, in one transaction.

        Args:
            keep_recent: override the manager's ``keep_recent`` for this run.
            older_than: only checkpoints created longer ago than this may go.
            dry_run: report what would be deleted; the statements run and are
                rolled back, so the report is exactly what a real run does.
        """
        return perform(self._compact(keep_recent, older_than, dry_run), self._db)

    def pin(self, checkpoint_id: str) -> bool:
        """Pin a checkpoint so compaction, the cap and expiry never delete it.

        Returns:
            False if this session has no checkpoint with that id.

        Raises:
            NotFoundError: instead of returning False, if the manager is strict.
        """
        return self._done(perform(self._set_pinned(checkpoint_id, True), self._db), checkpoint_id)

    def unpin(self, checkpoint_id: str) -> bool:
        """Let retention delete a pinned checkpoint again; False if there is no such id.

        Raises:
            NotFoundError: instead of returning False, if the manager is strict.
        """
        return self._done(perform(self._set_pinned(checkpoint_id, False), self._db), checkpoint_id)

    # -- reading ----------------------------------------------------------------

    def get(self, checkpoint_id: str) -> Checkpoint[DataT] | None:
        """The checkpoint with this id, or None (unknown, malformed or another session's).

        Raises:
            NotFoundError: instead of returning None, if the manager is strict.
        """
        return self._by_id(perform(self._get(checkpoint_id), self._db), checkpoint_id)

    def get_by_name(self, name: str, limit: int | None = None) -> list[Checkpoint[DataT]]:
        """Checkpoints with this name, newest first (at most ``limit``)."""
        return self._typed_list(perform(self._by_name(name, limit), self._db))

    def get_latest(self, name: str | None = None) -> Checkpoint[DataT] | None:
        """The newest checkpoint, or the newest with ``name``; None if there is none."""
        return self._maybe(perform(self._latest(name), self._db))

    def resume(self, default: DataT) -> DataT:
        """The newest checkpoint's data, or ``default`` if the session has none.

        The resume-or-start line of an agent loop:
        ``state = mgr.resume({"done": []})``. ``default`` itself is returned,
        not a copy.
        """
        return self._resume(self.get_latest(), default)

    def get_all(self) -> list[Checkpoint[DataT]]:
        """Every live checkpoint, oldest first, as one moment saw them.

        For large sessions use :meth:`export_to` or :meth:`find`, which stream.
        """
        return self._typed_list(perform(self._all_at_once(), self._db))

    def get_recent(self, n: int) -> list[Checkpoint[DataT]]:
        """The newest ``n`` checkpoints, oldest first (one indexed query)."""
        return self._typed_list(perform(self._recent(n), self._db))

    def lineage(self, checkpoint_id: str) -> list[Checkpoint[DataT]]:
        """The checkpoint and its live ancestors, oldest first (one recursive query).

        The walk stops at the first parent that is not live (deleted by
        compaction, the cap, expiry, ``delete`` ...). An id that is not a live
        checkpoint of this session gives ``[]``.

        Raises:
            NotFoundError: instead of returning ``[]``, if the manager is strict.
        """
        found = perform(self._lineage(checkpoint_id), self._db)
        self._done(bool(found), checkpoint_id)
        return self._typed_list(found)

    def diff(self, a_id: str, b_id: str) -> list[dict[str, Any]]:
        """The RFC 6902 JSON Patch that turns checkpoint a's data into b's.

        Raises:
            NotFoundError: either id is not a live checkpoint of this session.
        """
        return perform(self._diff(a_id, b_id), self._db)

    def iter_newest_first(self) -> Iterator[Checkpoint[DataT]]:
        """Stream the session's checkpoints newest first, a page at a time."""
        before: int | None = FIRST_PAGE_BEFORE
        while before is not None:
            page = perform(self._page_desc(before), self._db)
            yield from self._typed_list(page)
            before = next_page(page)

    def get_since(self, timestamp: datetime) -> list[Checkpoint[DataT]]:
        """Checkpoints created strictly after ``timestamp`` (aware), in creation order.

        Raises:
            NaiveDatetimeError: ``timestamp`` has no timezone (a TypeError subclass).
        """
        return self._typed_list(perform(self._since(timestamp), self._db))

    def get_between(self, start: datetime, end: datetime) -> list[Checkpoint[DataT]]:
        """Checkpoints created in ``[start, end]`` (both aware), in creation order.

        Raises:
            NaiveDatetimeError: a bound has no timezone.
        """
        return self._typed_list(perform(self._between(start, end), self._db))

    def rollback_to(self, checkpoint_id: str) -> DataT | None:
        """The data to restore the agent to a checkpoint, or None if there is no such id.

        This changes nothing in the store: it returns the state to restore.

        Raises:
            NotFoundError: instead of returning None, if the manager is strict.
        """
        return self._restore(self.get(checkpoint_id), checkpoint_id)

    def get_summary(self) -> dict[str, Any]:
        """Counts per name, first and last checkpoint, and the time between them.

        The keys are total_count, unique_names, names, first_checkpoint,
        last_checkpoint, duration_seconds and payload_bytes, the live
        checkpoints' stored JSON size.
        """
        return perform(self._summary(), self._db)

    def on_checkpoint(self, callback: CheckpointCallback[DataT]) -> None:
        """Call ``callback(checkpoint)`` after each create, once it is committed.

        A callback that raises is logged with its traceback; the checkpoint stays.
        """
        self._on_checkpoint = callback

    # -- export / import --------------------------------------------------------

    def export(self) -> str:
        """Every checkpoint as export JSON: a list of ``Checkpoint.to_dict()``, oldest first.

        The checkpoints of one moment: read in one snapshot, whatever other
        processes write meanwhile. The stored JSON, whatever the manager's model.
        """
        checkpoints = perform(self._all_at_once(), self._db)
        return export_json(checkpoints)

    def export_to(self, stream: IO[str], progress: Callable[[int], object] | None = None) -> int:
        """Write :meth:`export`'s exact text to a text stream, reading rows a page at a time.

        Memory stays bounded however large the session. The rows are read in
        one read transaction (PostgreSQL: ``REPEATABLE READ READ ONLY``,
        through a server-side cursor), so the file is the session as it was
        at one moment, whatever other processes write meanwhile.

        Args:
            stream: where to write (a file opened for text, ``sys.stdout``...).
            progress: called with 1 after each checkpoint written.

        Returns:
            How many checkpoints were written.
        """
        count = 0
        stream.write("[")
        for checkpoint in self._snapshot():
            entry = json.dumps(checkpoint.to_dict(), indent=2, ensure_ascii=False)
            # Indented as a list item; JSON text has no raw newline inside strings.
            stream.write(("\n  " if count == 0 else ",\n  ") + entry.replace("\n", "\n  "))
            count += 1
            if progress is not None:
                progress(1)
        stream.write("\n]" if count else "]")
        return count

    def import_from(self, stream: IO[Any], progress: Callable[[int], object] | None = None) -> int:
        """Import :meth:`export` JSON read from a file, in bounded memory, all or nothing.

        The same rules as :meth:`import_checkpoints`, but the document is read
        a chunk at a time and each entry is checked and inserted as it is
        read, all in one transaction: a bad entry anywhere rolls back every
        row, so nothing is written.

        Args:
            stream: a text stream, or a binary one holding UTF-8.
            progress: called with the characters (text) or bytes (binary) of
                each chunk read.

        Returns:
            How many checkpoints were imported.

        Raises:
            ImportFormatError: the JSON is malformed; names the entry and field.
        """
        return perform(self._import_stream(stream, progress), self._db)

    def import_checkpoints(self, json_data: str) -> int:
        """Import checkpoints from :meth:`export` JSON, all or nothing.

        Every entry is validated before anything is written. Entries keep
        their order and timestamps. An entry whose id belongs to this session
        with a seq above every seq the session has issued keeps its id; every
        other entry gets the next fresh id, so no id is ever duplicated.

        Returns:
            How many checkpoints were imported.

        Raises:
            ImportFormatError: the JSON is malformed; names the entry and field.
        """
        return perform(self._import(json_data), self._db)

    # -- container protocol -------------------------------------------------------

    def __len__(self) -> int:
        """Live checkpoints (one row read, whatever the session's size)."""
        return perform(self._count(), self._db)

    def __iter__(self) -> Iterator[Checkpoint[DataT]]:
        """Stream the checkpoints oldest first, a page per query (bounded memory)."""
        repo, session_id = self._context().repo, self.session_id
        after: int | None = FIRST_PAGE_AFTER
        while after is not None:
            rows = perform(self._page_rows(after), self._db)
            for checkpoint in repo.checkpoints_of(session_id, rows):
                yield self._typed(checkpoint)
            after = rows[-1][0] if len(rows) == PAGE_SIZE else None

    def _snapshot(self) -> Iterator[Checkpoint]:
        """Stream every live checkpoint, oldest first, in one read transaction."""
        return stream(self._db, self._everything(), snapshot=True)

    # -- find -------------------------------------------------------------------

    @takes_filters(session_filters, attrgetter("session_id"))
    def find(self, query: FindQuery) -> Iterator[Checkpoint[DataT]]:
        """Stream this session's checkpoints that match every given filter, in seq order.

        ``mgr.find(metadata={"run": "r1", "agent.role": "planner"}, limit=10)``:
        the arguments are :meth:`CheckpointStore.find`'s but ``session_id``;
        see there for the rules of key paths and values.

        Raises:
            NaiveDatetimeError: ``since`` or ``until`` has no timezone.
            InvalidDataError: any other bad argument; the message names it.
        """
        return self._typed_stream(find_stream(self._db, self._context().repo, query))
