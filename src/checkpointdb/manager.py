"""CheckpointManager: the seed's API on the database, with compaction and retention policy.

The manager decides *what* happens (validation, when to compact, how many
to keep, how ids are assigned on import); the repository runs the SQL.
Every write is one short transaction; callbacks run after its COMMIT.

The policy lives in :class:`ManagerBase`, once for both flavours of the API:
each operation is a plan (checks, then an :class:`~checkpointdb.store.Operation`
whose body runs in one transaction and whose finish builds the answer).
:class:`CheckpointManager` runs plans with :func:`~checkpointdb.store.perform`;
the asyncio :class:`~checkpointdb.aio.AsyncCheckpointManager` awaits them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from .checkpoint import Checkpoint, JSONDict, format_id, parse_id
from .engine import Cursor
from .errors import ImportFormatError, InvalidDataError, NaiveDatetimeError
from .query import JSONFilter
from .repository import END_OF_TIME, PAGE_SIZE, NameCount, NewRow, Removed
from .store import (
    CheckpointStore,
    Operation,
    Plan,
    Ready,
    StoreBase,
    default_store,
    perform,
    read,
    unchanged,
)
from .types import require_aware
from .validate import check_identifier

logger = logging.getLogger(__name__)

CheckpointCallback = Callable[[Checkpoint], None]

# An imported id keeps its seq only up to this (2**53: exact in every JSON
# reader); a larger one would leave too few ids for later checkpoints.
MAX_IMPORTED_SEQ = 2**53

# Paging through a session: the seq bound before the first page, oldest or newest first.
FIRST_PAGE_AFTER = 0
FIRST_PAGE_BEFORE = 2**62


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


@dataclass(frozen=True)
class _ImportEntry:
    """A validated import entry; its seq is decided inside the import transaction."""

    id: str
    row: NewRow


_SummaryParts = tuple[list[NameCount], Checkpoint | None, Checkpoint | None, int]


def _check_age(value: object) -> timedelta:
    if not isinstance(value, timedelta) or value < timedelta(0):
        raise InvalidDataError(f"older_than must be a non-negative timedelta, got {value!r}")
    return value


def _check_limit(value: object, label: str, minimum: int, optional: bool) -> None:
    if value is None and optional:
        return
    if type(value) is not int or value < minimum:
        allowed = f"an int >= {minimum}" + (" or None" if optional else "")
        raise InvalidDataError(f"{label} must be {allowed}, got {value!r}")


def _bound(value: object, label: str) -> datetime:
    if not isinstance(value, datetime):
        # A TypeError, as comparing a non-datetime bound was in the seed.
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


def next_page(page: list[Checkpoint]) -> int | None:
    """The seq bound of the page after ``page``, or None if ``page`` was the last."""
    return page[-1].seq if len(page) == PAGE_SIZE else None


def export_json(checkpoints: Iterable[Checkpoint]) -> str:
    """The seed's export document: a JSON list of ``Checkpoint.to_dict()``."""
    return json.dumps([cp.to_dict() for cp in checkpoints], indent=2, ensure_ascii=False)


def log_callback_failure(checkpoint: Checkpoint) -> None:
    """Log the exception an on_checkpoint callback raised, with its traceback."""
    logger.exception(
        "on_checkpoint callback failed for %s; the checkpoint is stored", checkpoint.id
    )


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


class ManagerBase:
    """The policy of one session's manager, whichever flavour of the API runs it.

    Each method here checks its arguments and returns a plan; it touches no
    database. The subclasses run the plans and add what differs between the
    flavours: callbacks, iteration, and the public signatures.
    """

    store: StoreBase

    def __init__(
        self,
        session_id: str,
        max_checkpoints: int | None,
        compress_after: int | None,
        keep_recent: int,
    ) -> None:
        check_identifier(session_id, "session_id")
        _check_limit(max_checkpoints, "max_checkpoints", 0, optional=True)
        _check_limit(compress_after, "compress_after", 0, optional=True)
        _check_limit(keep_recent, "keep_recent", 0, optional=False)
        self.session_id = session_id
        self.max_checkpoints = max_checkpoints
        self.compress_after = compress_after
        self.keep_recent = keep_recent

    # -- writing ----------------------------------------------------------------

    def _create(
        self, name: str, data: JSONDict, metadata: JSONDict | None, pin: bool
    ) -> Operation[int, Checkpoint]:
        check_identifier(name, "name")
        data_json, meta_json, size = self.store.encode(data, metadata)
        pinned = bool(pin)
        now = datetime.now(UTC)
        repo, session_id = self.store._repository(), self.session_id
        compress_after, max_checkpoints = self.compress_after, self.max_checkpoints
        keep_recent = self.keep_recent

        def body(cursor: Cursor) -> int:
            seq, count = repo.allocate(cursor, session_id, now, size)
            repo.insert(
                cursor, session_id, NewRow(seq, name, now, data_json, meta_json, size, pinned)
            )
            if compress_after is not None and count > compress_after:
                count -= len(repo.compact(cursor, session_id, keep_recent, now))
            if max_checkpoints is not None and count > max_checkpoints:
                repo.cap(cursor, session_id, max_checkpoints, now)
            return seq

        def finish(seq: int) -> Checkpoint:
            checkpoint = Checkpoint(
                id=format_id(session_id, seq),
                name=name,
                timestamp=now,
                data=json.loads(data_json),
                metadata=json.loads(meta_json),
                pinned=pinned,
            )
            logger.debug("session %s: created checkpoint %r (#%d)", session_id, name, seq)
            return checkpoint

        return Operation(body, finish, write=True)

    def _clear(self) -> Operation[int, int]:
        now = datetime.now(UTC)
        repo, session_id = self.store._repository(), self.session_id

        def finish(count: int) -> int:
            logger.info("session %s: cleared %d checkpoints", session_id, count)
            return count

        return Operation(
            lambda cursor: len(repo.clear(cursor, session_id, now)), finish, write=True
        )

    def _compact(
        self, keep_recent: int | None, older_than: timedelta | None, dry_run: bool
    ) -> Operation[tuple[list[Removed], dict[str, int]], CompactionReport]:
        keep = self.keep_recent if keep_recent is None else keep_recent
        _check_limit(keep, "keep_recent", 0, optional=False)
        now = datetime.now(UTC)
        cutoff = END_OF_TIME if older_than is None else now - _check_age(older_than)
        repo, session_id = self.store._repository(), self.session_id

        def body(cursor: Cursor) -> tuple[list[Removed], dict[str, int]]:
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
        repo, session_id = self.store._repository(), self.session_id
        return Operation(
            lambda cursor: repo.set_pinned(cursor, session_id, seq, pinned),
            unchanged,
            write=True,
        )

    def _import(self, json_data: str) -> Plan[int]:
        entries = self._parse_import(json_data)
        if not entries:
            return Ready(0)  # nothing to write: no session is created
        now = datetime.now(UTC)
        repo, session_id = self.store._repository(), self.session_id

        def body(cursor: Cursor) -> int:
            last = repo.lock_session(cursor, session_id, now)
            rows = []
            for entry in entries:
                parsed = parse_id(entry.id)
                if (
                    parsed is not None
                    and parsed[0] == session_id
                    and last < parsed[1] <= MAX_IMPORTED_SEQ
                ):
                    last = parsed[1]
                else:
                    last += 1
                rows.append(replace(entry.row, seq=last))
            return repo.insert_many(cursor, session_id, rows, now)

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
        if not isinstance(document, list):
            raise ImportFormatError(
                f"import data must be a JSON list of checkpoints, got {type(document).__name__}"
            )
        seen: dict[str, int] = {}
        entries = []
        for index, entry in enumerate(document):
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
            try:
                name = check_identifier(entry["name"], "name")
                timestamp = _import_time(entry["timestamp"])
                data_json, meta_json, size = self.store.encode(
                    entry["data"], entry.get("metadata", {})
                )
            except InvalidDataError as exc:
                raise ImportFormatError(f"{where}: {exc}") from None
            row = NewRow(0, name, timestamp, data_json, meta_json, size, pinned)
            entries.append(_ImportEntry(entry_id, row))
        return entries

    # -- reading ----------------------------------------------------------------

    def _seq_of(self, checkpoint_id: object) -> int | None:
        parsed = parse_id(checkpoint_id)
        if parsed is None or parsed[0] != self.session_id:
            return None
        return parsed[1]

    def _get(self, checkpoint_id: str) -> Plan[Checkpoint | None]:
        seq = self._seq_of(checkpoint_id)
        if seq is None:
            return Ready(None)
        repo, session_id = self.store._repository(), self.session_id
        return read(lambda cursor: repo.get(cursor, session_id, seq))

    def _by_name(
        self, name: str, limit: int | None
    ) -> Operation[list[Checkpoint], list[Checkpoint]]:
        _check_limit(limit, "limit", 0, optional=True)
        repo, session_id = self.store._repository(), self.session_id
        return read(lambda cursor: repo.by_name(cursor, session_id, name, limit))

    def _latest(self, name: str | None) -> Plan[Checkpoint | None]:
        repo, session_id = self.store._repository(), self.session_id
        if not name:
            return read(lambda cursor: repo.latest(cursor, session_id))
        return Operation(
            lambda cursor: repo.by_name(cursor, session_id, name, 1),
            lambda found: found[0] if found else None,
            snapshot=False,
        )

    def _page(self, after: int) -> Operation[list[Checkpoint], list[Checkpoint]]:
        repo, session_id = self.store._repository(), self.session_id
        return read(lambda cursor: repo.page(cursor, session_id, after))

    def _page_desc(self, before: int) -> Operation[list[Checkpoint], list[Checkpoint]]:
        repo, session_id = self.store._repository(), self.session_id
        return read(lambda cursor: repo.page_desc(cursor, session_id, before))

    def _since(self, timestamp: datetime) -> Operation[list[Checkpoint], list[Checkpoint]]:
        start = _bound(timestamp, "timestamp")
        repo, session_id = self.store._repository(), self.session_id
        return read(lambda cursor: repo.since(cursor, session_id, start))

    def _between(
        self, start: datetime, end: datetime
    ) -> Operation[list[Checkpoint], list[Checkpoint]]:
        lower = _bound(start, "start")
        upper = _bound(end, "end")
        repo, session_id = self.store._repository(), self.session_id
        return read(lambda cursor: repo.between(cursor, session_id, lower, upper))

    def _restore(self, checkpoint: Checkpoint | None, checkpoint_id: str) -> JSONDict | None:
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

    def _summary(self) -> Operation[_SummaryParts, dict[str, Any]]:
        repo, session_id = self.store._repository(), self.session_id

        def body(cursor: Cursor) -> _SummaryParts:
            counts = repo.name_counts(cursor, session_id)
            first = repo.first(cursor, session_id)
            last = repo.latest(cursor, session_id)
            info = repo.session(cursor, session_id)
            return counts, first, last, 0 if info is None else info.payload_bytes

        return Operation(body, _summary)

    def _count(self) -> Operation[int, int]:
        repo, session_id = self.store._repository(), self.session_id
        return read(lambda cursor: repo.count(cursor, session_id))


class CheckpointManager(ManagerBase):
    """Checkpoints of one agent session, stored in a :class:`CheckpointStore`.

    The seed's API, method for method: ``create``, ``get``, ``get_by_name``,
    ``get_latest``, ``get_all``, ``get_since``, ``get_between``,
    ``rollback_to``, ``clear``, ``get_summary``, ``on_checkpoint``, ``export``,
    ``import_checkpoints``, ``len()`` and iteration.

    Where the seed was wrong, this does the right thing:

    * ``max_checkpoints`` is enforced: after compaction, if more unpinned
      live checkpoints remain than the cap, the oldest between the first and
      the newest are deleted in the same transaction (so the first and the
      checkpoint just created always stay, whatever the cap).
    * Ordering is by seq (creation order), never by wall-clock time.
    * Compaction keeps the first checkpoint once, however small ``compress_after``.
    * Imported checkpoints never duplicate an id.

    Args:
        session_id: the session's id (a non-empty printable string; may contain ':').
        max_checkpoints: unpinned live checkpoints kept at most (None: no cap);
            the first and the newest are never deleted by the cap.
        compress_after: compact when the live count exceeds this (None: never;
            0: on every create).
        keep_recent: how many of the newest checkpoints compaction always keeps.
        store: the store to use; None means :func:`default_store`, so seed code
            ``CheckpointManager("s1")`` works unchanged.
    """

    store: CheckpointStore

    def __init__(
        self,
        session_id: str,
        max_checkpoints: int | None = 100,
        compress_after: int | None = 50,
        *,
        keep_recent: int = 20,
        store: CheckpointStore | None = None,
    ) -> None:
        super().__init__(session_id, max_checkpoints, compress_after, keep_recent)
        self.store = store if store is not None else default_store()
        self._db = self.store._db
        self._on_checkpoint: CheckpointCallback | None = None

    def __repr__(self) -> str:
        return f"CheckpointManager({self.session_id!r}, store={self.store!r})"

    # -- writing ----------------------------------------------------------------

    def create(
        self,
        name: str,
        data: JSONDict,
        metadata: JSONDict | None = None,
        *,
        pin: bool = False,
    ) -> Checkpoint:
        """Create a checkpoint; it is on disk when this returns.

        Compaction (and the ``max_checkpoints`` cap) run in the same
        transaction, so a crash leaves either all of it or none.

        Args:
            name: semantic name, e.g. ``"task_started"``.
            data: the JSON state to store (a dict).
            metadata: optional extra JSON (a dict).
            pin: keep this checkpoint through compaction, the cap and expiry.

        Returns:
            The stored checkpoint, read back exactly as a later ``get`` returns it.

        Raises:
            InvalidDataError: bad name or a payload that cannot round-trip;
                nothing was written.
            StoreBusyError, StoreFullError: the database refused the write;
                nothing was written.
        """
        checkpoint = perform(self._create(name, data, metadata, pin), self._db)
        callback = self._on_checkpoint
        if callback is not None:
            try:
                callback(checkpoint)
            except Exception:
                log_callback_failure(checkpoint)
        return checkpoint

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
        """
        return perform(self._set_pinned(checkpoint_id, True), self._db)

    def unpin(self, checkpoint_id: str) -> bool:
        """Let retention delete a pinned checkpoint again; False if there is no such id."""
        return perform(self._set_pinned(checkpoint_id, False), self._db)

    # -- reading ----------------------------------------------------------------

    def get(self, checkpoint_id: str) -> Checkpoint | None:
        """The checkpoint with this id, or None (unknown, malformed or another session's)."""
        return perform(self._get(checkpoint_id), self._db)

    def get_by_name(self, name: str, limit: int | None = None) -> list[Checkpoint]:
        """Checkpoints with this name, newest first (at most ``limit``)."""
        return perform(self._by_name(name, limit), self._db)

    def get_latest(self, name: str | None = None) -> Checkpoint | None:
        """The newest checkpoint, or the newest with ``name``; None if there is none."""
        return perform(self._latest(name), self._db)

    def get_all(self) -> list[Checkpoint]:
        """Every live checkpoint, oldest first. For large sessions iterate instead."""
        return list(self)

    def iter_newest_first(self) -> Iterator[Checkpoint]:
        """Stream the session's checkpoints newest first, a page at a time."""
        before: int | None = FIRST_PAGE_BEFORE
        while before is not None:
            page = perform(self._page_desc(before), self._db)
            yield from page
            before = next_page(page)

    def get_since(self, timestamp: datetime) -> list[Checkpoint]:
        """Checkpoints created strictly after ``timestamp`` (aware), in creation order.

        Raises:
            NaiveDatetimeError: ``timestamp`` has no timezone (a TypeError, as in the seed).
        """
        return perform(self._since(timestamp), self._db)

    def get_between(self, start: datetime, end: datetime) -> list[Checkpoint]:
        """Checkpoints created in ``[start, end]`` (both aware), in creation order.

        Raises:
            NaiveDatetimeError: a bound has no timezone.
        """
        return perform(self._between(start, end), self._db)

    def rollback_to(self, checkpoint_id: str) -> JSONDict | None:
        """The data to restore the agent to a checkpoint, or None if there is no such id.

        Like the seed, this changes nothing in the store: it returns the state.
        """
        return self._restore(self.get(checkpoint_id), checkpoint_id)

    def get_summary(self) -> dict[str, Any]:
        """Counts per name, first and last checkpoint, and the time between them.

        The keys are the seed's (total_count, unique_names, names,
        first_checkpoint, last_checkpoint, duration_seconds) plus
        payload_bytes, the live checkpoints' stored JSON size.
        """
        return perform(self._summary(), self._db)

    def on_checkpoint(self, callback: CheckpointCallback) -> None:
        """Call ``callback(checkpoint)`` after each create, once it is committed.

        A callback that raises is logged with its traceback; the checkpoint stays.
        """
        self._on_checkpoint = callback

    # -- export / import --------------------------------------------------------

    def export(self) -> str:
        """Every checkpoint as the seed's JSON: a list of ``Checkpoint.to_dict()``."""
        return export_json(self)

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

    def __iter__(self) -> Iterator[Checkpoint]:
        """Stream the checkpoints oldest first, a page per query (bounded memory)."""
        after: int | None = FIRST_PAGE_AFTER
        while after is not None:
            page = perform(self._page(after), self._db)
            yield from page
            after = next_page(page)

    # -- find -------------------------------------------------------------------

    def find(
        self,
        name: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        metadata: JSONFilter | None = None,
        data: JSONFilter | None = None,
        limit: int | None = None,
        newest_first: bool = True,
    ) -> Iterator[Checkpoint]:
        """Stream this session's checkpoints that match every given filter, in seq order.

        ``mgr.find(metadata={"run": "r1", "agent.role": "planner"}, limit=10)``:
        see :meth:`CheckpointStore.find` for the arguments and the rules of
        key paths and values.

        Raises:
            NaiveDatetimeError: ``since`` or ``until`` has no timezone.
            InvalidDataError: any other bad argument; the message names it.
        """
        return self.store.find(
            name, since, until, metadata, data, limit, newest_first, session_id=self.session_id
        )
