"""CheckpointManager: the seed's API on the database, with compaction and retention policy.

The manager decides *what* happens (validation, when to compact, how many
to keep, how ids are assigned on import); the repository runs the SQL.
Every write is one short transaction; callbacks run after its COMMIT.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from .checkpoint import Checkpoint, JSONDict, format_id, parse_id
from .errors import ImportFormatError, InvalidDataError, NaiveDatetimeError
from .query import JSONFilter
from .repository import END_OF_TIME, PAGE_SIZE, NewRow
from .store import CheckpointStore, default_store
from .types import require_aware
from .validate import check_identifier

logger = logging.getLogger(__name__)

CheckpointCallback = Callable[[Checkpoint], None]


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


class CheckpointManager:
    """Checkpoints of one agent session, stored in a :class:`CheckpointStore`.

    The seed's API, method for method: ``create``, ``get``, ``get_by_name``,
    ``get_latest``, ``get_all``, ``get_since``, ``get_between``,
    ``rollback_to``, ``clear``, ``get_summary``, ``on_checkpoint``, ``export``,
    ``import_checkpoints``, ``len()`` and iteration.

    Where the seed was wrong, this does the right thing:

    * ``max_checkpoints`` is enforced: after compaction, if more live
      checkpoints remain than the cap, the oldest after the first are deleted
      in the same transaction.
    * Ordering is by seq (creation order), never by wall-clock time.
    * Compaction keeps the first checkpoint once, however small ``compress_after``.
    * Imported checkpoints never duplicate an id.

    Args:
        session_id: the session's id (a non-empty printable string; may contain ':').
        max_checkpoints: live checkpoints kept at most (None: no cap); at least 2.
        compress_after: compact when the live count exceeds this (None: never).
        keep_recent: how many of the newest checkpoints compaction always keeps.
        store: the store to use; None means :func:`default_store`, so seed code
            ``CheckpointManager("s1")`` works unchanged.
    """

    def __init__(
        self,
        session_id: str,
        max_checkpoints: int | None = 100,
        compress_after: int | None = 50,
        *,
        keep_recent: int = 20,
        store: CheckpointStore | None = None,
    ) -> None:
        check_identifier(session_id, "session_id")
        _check_limit(max_checkpoints, "max_checkpoints", 2, optional=True)
        _check_limit(compress_after, "compress_after", 1, optional=True)
        _check_limit(keep_recent, "keep_recent", 0, optional=False)
        self.session_id = session_id
        self.max_checkpoints = max_checkpoints
        self.compress_after = compress_after
        self.keep_recent = keep_recent
        self.store = store if store is not None else default_store()
        self._db = self.store._db
        self._repo = self.store._repo
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
        check_identifier(name, "name")
        data_json, data_bytes = self.store.encode(data, "data")
        meta_json, meta_bytes = self.store.encode({} if metadata is None else metadata, "metadata")
        size = data_bytes + meta_bytes
        pinned = bool(pin)
        now = datetime.now(UTC)
        repo, session_id = self._repo, self.session_id
        with self._db.transaction(write=True) as cursor:
            seq, count = repo.allocate(cursor, session_id, now, size)
            repo.insert(
                cursor, session_id, NewRow(seq, name, now, data_json, meta_json, size, pinned)
            )
            if self.compress_after is not None and count > self.compress_after:
                count -= len(repo.compact(cursor, session_id, self.keep_recent, now))
            if self.max_checkpoints is not None and count > self.max_checkpoints:
                repo.cap(cursor, session_id, self.max_checkpoints, now)
        checkpoint = Checkpoint(
            id=format_id(session_id, seq),
            name=name,
            timestamp=now,
            data=json.loads(data_json),
            metadata=json.loads(meta_json),
            pinned=pinned,
        )
        logger.debug("session %s: created checkpoint %r (#%d)", session_id, name, seq)
        callback = self._on_checkpoint
        if callback is not None:
            try:
                callback(checkpoint)
            except Exception:
                logger.exception(
                    "on_checkpoint callback failed for %s; the checkpoint is stored",
                    checkpoint.id,
                )
        return checkpoint

    def clear(self) -> int:
        """Delete every checkpoint of the session, pinned ones too; ids continue where they were.

        Returns:
            How many checkpoints were deleted.
        """
        now = datetime.now(UTC)
        with self._db.transaction(write=True) as cursor:
            count = len(self._repo.clear(cursor, self.session_id, now))
        logger.info("session %s: cleared %d checkpoints", self.session_id, count)
        return count

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
        keep = self.keep_recent if keep_recent is None else keep_recent
        _check_limit(keep, "keep_recent", 0, optional=False)
        now = datetime.now(UTC)
        cutoff = END_OF_TIME if older_than is None else now - _check_age(older_than)
        session_id = self.session_id
        with self._db.transaction(write=True, commit=not dry_run) as cursor:
            removed = self._repo.compact(cursor, session_id, keep, now, cutoff)
            kept = self._repo.keep_reasons(cursor, session_id, keep, cutoff)
        return CompactionReport(
            removed=[format_id(session_id, r.seq) for r in removed],
            bytes_removed=sum(r.payload_bytes for r in removed),
            remaining=sum(kept.values()),
            kept=kept,
            dry_run=dry_run,
        )

    def pin(self, checkpoint_id: str) -> bool:
        """Pin a checkpoint so compaction, the cap and expiry never delete it.

        Returns:
            False if this session has no checkpoint with that id.
        """
        return self._set_pinned(checkpoint_id, True)

    def unpin(self, checkpoint_id: str) -> bool:
        """Let retention delete a pinned checkpoint again; False if there is no such id."""
        return self._set_pinned(checkpoint_id, False)

    def _set_pinned(self, checkpoint_id: str, pinned: bool) -> bool:
        seq = self._seq_of(checkpoint_id)
        if seq is None:
            return False
        with self._db.transaction(write=True) as cursor:
            return self._repo.set_pinned(cursor, self.session_id, seq, pinned)

    # -- reading ----------------------------------------------------------------

    def _seq_of(self, checkpoint_id: object) -> int | None:
        parsed = parse_id(checkpoint_id)
        if parsed is None or parsed[0] != self.session_id:
            return None
        return parsed[1]

    def get(self, checkpoint_id: str) -> Checkpoint | None:
        """The checkpoint with this id, or None (unknown, malformed or another session's)."""
        seq = self._seq_of(checkpoint_id)
        if seq is None:
            return None
        with self._db.transaction(snapshot=False) as cursor:
            return self._repo.get(cursor, self.session_id, seq)

    def get_by_name(self, name: str, limit: int | None = None) -> list[Checkpoint]:
        """Checkpoints with this name, newest first (at most ``limit``)."""
        _check_limit(limit, "limit", 0, optional=True)
        with self._db.transaction(snapshot=False) as cursor:
            return self._repo.by_name(cursor, self.session_id, name, limit)

    def get_latest(self, name: str | None = None) -> Checkpoint | None:
        """The newest checkpoint, or the newest with ``name``; None if there is none."""
        with self._db.transaction(snapshot=False) as cursor:
            if name:
                found = self._repo.by_name(cursor, self.session_id, name, 1)
                return found[0] if found else None
            return self._repo.latest(cursor, self.session_id)

    def get_all(self) -> list[Checkpoint]:
        """Every live checkpoint, oldest first. For large sessions iterate instead."""
        return list(self)

    def iter_newest_first(self) -> Iterator[Checkpoint]:
        """Stream the session's checkpoints newest first, a page at a time."""
        before = 2**62
        while True:
            with self._db.transaction(snapshot=False) as cursor:
                page = self._repo.page_desc(cursor, self.session_id, before)
            yield from page
            if len(page) < PAGE_SIZE:
                return
            before = page[-1].seq

    def _bound(self, value: object, label: str) -> datetime:
        try:
            return require_aware(value, label)
        except NaiveDatetimeError:
            raise
        except InvalidDataError as exc:
            raise NaiveDatetimeError(str(exc)) from None

    def get_since(self, timestamp: datetime) -> list[Checkpoint]:
        """Checkpoints created strictly after ``timestamp`` (aware), in creation order.

        Raises:
            NaiveDatetimeError: ``timestamp`` has no timezone (a TypeError, as in the seed).
        """
        start = self._bound(timestamp, "timestamp")
        with self._db.transaction(snapshot=False) as cursor:
            return self._repo.since(cursor, self.session_id, start)

    def get_between(self, start: datetime, end: datetime) -> list[Checkpoint]:
        """Checkpoints created in ``[start, end]`` (both aware), in creation order.

        Raises:
            NaiveDatetimeError: a bound has no timezone.
        """
        lower = self._bound(start, "start")
        upper = self._bound(end, "end")
        with self._db.transaction(snapshot=False) as cursor:
            return self._repo.between(cursor, self.session_id, lower, upper)

    def rollback_to(self, checkpoint_id: str) -> JSONDict | None:
        """The data to restore the agent to a checkpoint, or None if there is no such id.

        Like the seed, this changes nothing in the store: it returns the state.
        """
        checkpoint = self.get(checkpoint_id)
        if checkpoint is None:
            return None
        logger.info(
            "session %s: rollback to checkpoint %r (%s)",
            self.session_id,
            checkpoint.name,
            checkpoint_id,
        )
        return checkpoint.data

    def get_summary(self) -> dict[str, Any]:
        """Counts per name, first and last checkpoint, and the time between them.

        The keys are the seed's (total_count, unique_names, names,
        first_checkpoint, last_checkpoint, duration_seconds) plus
        payload_bytes, the live checkpoints' stored JSON size.
        """
        with self._db.transaction() as cursor:
            counts = self._repo.name_counts(cursor, self.session_id)
            first = self._repo.first(cursor, self.session_id)
            last = self._repo.latest(cursor, self.session_id)
            info = self._repo.session(cursor, self.session_id)
        payload_bytes = 0 if info is None else info.payload_bytes
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

    def on_checkpoint(self, callback: CheckpointCallback) -> None:
        """Call ``callback(checkpoint)`` after each create, once it is committed.

        A callback that raises is logged with its traceback; the checkpoint stays.
        """
        self._on_checkpoint = callback

    # -- export / import --------------------------------------------------------

    def export(self) -> str:
        """Every checkpoint as the seed's JSON: a list of ``Checkpoint.to_dict()``."""
        return json.dumps([cp.to_dict() for cp in self], indent=2, ensure_ascii=False)

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
        entries = self._parse_import(json_data)
        now = datetime.now(UTC)
        with self._db.transaction(write=True) as cursor:
            last = self._repo.lock_session(cursor, self.session_id, now)
            rows = []
            for entry in entries:
                parsed = parse_id(entry.id)
                if parsed is not None and parsed[0] == self.session_id and parsed[1] > last:
                    last = parsed[1]
                else:
                    last += 1
                rows.append(replace(entry.row, seq=last))
            count = self._repo.insert_many(cursor, self.session_id, rows, now)
        logger.info("session %s: imported %d checkpoints", self.session_id, count)
        return count

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
                timestamp = self._import_time(entry["timestamp"])
                data_json, data_bytes = self.store.encode(entry["data"], "data")
                meta_json, meta_bytes = self.store.encode(entry.get("metadata", {}), "metadata")
            except InvalidDataError as exc:
                raise ImportFormatError(f"{where}: {exc}") from None
            row = NewRow(0, name, timestamp, data_json, meta_json, data_bytes + meta_bytes, pinned)
            entries.append(_ImportEntry(entry_id, row))
        return entries

    @staticmethod
    def _import_time(value: object) -> datetime:
        if not isinstance(value, str):
            raise InvalidDataError(f"field 'timestamp' must be an ISO-8601 string, got {value!r}")
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidDataError(f"field 'timestamp' is not ISO-8601: {value!r}") from None
        return require_aware(parsed, "field 'timestamp'")

    # -- container protocol -------------------------------------------------------

    def __len__(self) -> int:
        """Live checkpoints (one row read, whatever the session's size)."""
        with self._db.transaction(snapshot=False) as cursor:
            return self._repo.count(cursor, self.session_id)

    def __iter__(self) -> Iterator[Checkpoint]:
        """Stream the checkpoints oldest first, a page per query (bounded memory)."""
        after = 0
        while True:
            with self._db.transaction(snapshot=False) as cursor:
                page = self._repo.page(cursor, self.session_id, after)
            yield from page
            if len(page) < PAGE_SIZE:
                return
            after = page[-1].seq

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
