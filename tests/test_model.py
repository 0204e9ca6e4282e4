"""Model-based test: the store behaves like a small in-memory reference of its documented semantics.

Random sequences of operations run side by side against :class:`ReferenceManager`
(written here from the documented semantics: seq ids that never repeat, even
after delete, pop and truncate_after; compaction keeping the first, the newest
``keep_recent`` and the newest of each name; the ``max_checkpoints`` cap;
import id and parent rules; parent links, by default the newest live
checkpoint; lineages that stop at a deleted ancestor; forks renumbered from
1 with remapped parents; the retention policy stored per session) and
against a real store, which is closed and reopened at random points, with
managers made with and without policy arguments. The machine runs on the
sync API and, through a test-only synchronous facade, on the asyncio API;
on PostgreSQL also through PgBouncer in transaction pooling mode.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from async_facade import STORE_FLAVOURS
from conftest import BACKENDS
from hypothesis import HealthCheck, assume, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from checkpointdb import Checkpoint, CheckpointManager, InvalidDataError, NotFoundError

SESSION = "agent:1"
# The policy of a session no manager has given one (README: 100, 50 and 20).
DEFAULT_POLICY = (100, 50, 20)
FORK_HISTORIES = ["latest", "lineage", "all"]
# At most this many sessions (the first and its forks), so each step stays quick.
MAX_SESSIONS = 4
NAMES = ["plan", "tool_done", "report", "'; DROP TABLE checkpoints;--", 'ü%_\\"']

json_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=12,
)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | json_text
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(json_text, children, max_size=4)
    ),
    max_leaves=12,
)
json_objects = st.dictionaries(json_text, json_values, max_size=5)


def _size(value: dict[str, Any]) -> int:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return len(text.encode("utf-8"))


@dataclass
class Row:
    seq: int
    name: str
    timestamp: datetime
    data: dict[str, Any]
    metadata: dict[str, Any]
    pinned: bool = False
    parent: int | None = None


Policy = tuple[int | None, int | None, int]


@dataclass
class ReferenceManager:
    """One session's documented behaviour over a Python list of live rows, in seq order."""

    session_id: str
    policy: Policy = DEFAULT_POLICY
    rows: list[Row] = field(default_factory=list)
    last_seq: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    forked_from: str | None = None

    def id(self, seq: int | None) -> str | None:
        return None if seq is None else f"{self.session_id}:{seq}"

    def live(self, seq: int) -> Row | None:
        return next((row for row in self.rows if row.seq == seq), None)

    def newest(self) -> int | None:
        return self.rows[-1].seq if self.rows else None

    def create(
        self,
        name: str,
        data: dict[str, Any],
        meta: dict[str, Any],
        ts: datetime,
        pin: bool,
        parent: int | None = None,
    ) -> str:
        if parent is None:
            parent = self.newest()
        self.last_seq += 1
        self.rows.append(Row(self.last_seq, name, ts, data, meta, pin, parent))
        self.retain()
        return f"{self.session_id}:{self.last_seq}"

    def create_many(self, entries: list[tuple[str, dict[str, Any]]], ts: datetime) -> None:
        """Each entry the parent of the next, the first's the newest live; retention once."""
        parent = self.newest()
        for name, data in entries:
            self.last_seq += 1
            self.rows.append(Row(self.last_seq, name, ts, data, {}, False, parent))
            parent = self.last_seq
        self.retain()

    def retain(self) -> None:
        max_checkpoints, compress_after, keep_recent = self.policy
        if compress_after is not None and len(self.rows) > compress_after:
            self.compact(keep_recent)
        if max_checkpoints is not None and len(self.rows) > max_checkpoints:
            # Pins neither count toward the cap nor go; of the unpinned rows
            # between the first and the newest, the oldest go.
            excess = sum(not row.pinned for row in self.rows) - max_checkpoints
            candidates = [row for row in self.rows[1:-1] if not row.pinned]
            victims = {row.seq for row in candidates[: max(excess, 0)]}
            self.rows = [row for row in self.rows if row.seq not in victims]

    def remove(self, seqs: set[int]) -> int:
        before = len(self.rows)
        self.rows = [row for row in self.rows if row.seq not in seqs]
        return before - len(self.rows)

    def lineage(self, seq: int) -> list[Row]:
        """The row and its live ancestors, oldest first; the walk stops at a deleted one."""
        chain: list[Row] = []
        row = self.live(seq)
        while row is not None:
            chain.append(row)
            row = None if row.parent is None else self.live(row.parent)
        return chain[::-1]

    def fork(self, seq: int, history: str, into: ReferenceManager, policy: Policy | None) -> None:
        """Copy rows into an empty session, numbered from 1, parents remapped or None."""
        if history == "latest":
            chosen = [row for row in self.rows if row.seq == seq]
        elif history == "lineage":
            chosen = self.lineage(seq)
        else:
            chosen = [row for row in self.rows if row.seq <= seq]
        renumbered = {row.seq: new for new, row in enumerate(chosen, 1)}
        into.rows = [
            Row(
                renumbered[row.seq],
                row.name,
                row.timestamp,
                row.data,
                row.metadata,
                row.pinned,
                None if row.parent is None else renumbered.get(row.parent),
            )
            for row in chosen
        ]
        into.last_seq = len(chosen)
        into.metadata = self.metadata
        into.policy = policy or self.policy
        into.forked_from = self.id(seq)

    def compaction_victims(self, keep_recent: int) -> list[int]:
        if not self.rows:
            return []
        recent = self.rows[max(0, len(self.rows) - keep_recent) :] if keep_recent else []
        recent_seqs = {row.seq for row in recent}
        first = self.rows[0].seq
        middle = [r for r in self.rows if r.seq != first and r.seq not in recent_seqs]
        newest: dict[str, int] = {}
        for row in middle:
            newest[row.name] = row.seq
        keep = set(newest.values())
        return [row.seq for row in middle if row.seq not in keep and not row.pinned]

    def compact(self, keep_recent: int) -> list[int]:
        victims = set(self.compaction_victims(keep_recent))
        self.rows = [row for row in self.rows if row.seq not in victims]
        return sorted(victims)

    def import_entries(self, entries: list[dict[str, Any]]) -> None:
        new_seqs: dict[str, int] = {}
        for entry in entries:
            session, _, seq_text = entry["id"].rpartition(":")
            if (
                session == self.session_id
                and seq_text.isdigit()
                and self.last_seq < int(seq_text) <= 2**53
            ):
                self.last_seq = int(seq_text)
            else:
                self.last_seq += 1
            # A parent earlier in the file follows it to its new id; an older
            # checkpoint of this session stays the parent; anything else: none.
            parent_id = entry["parent_id"]
            parent_session, _, parent_seq = (parent_id or "").rpartition(":")
            if parent_id in new_seqs:
                parent: int | None = new_seqs[parent_id]
            elif parent_session == self.session_id and int(parent_seq) < self.last_seq:
                parent = int(parent_seq)
            else:
                parent = None
            new_seqs[entry["id"]] = self.last_seq
            self.rows.append(
                Row(
                    self.last_seq,
                    entry["name"],
                    datetime.fromisoformat(entry["timestamp"]),
                    entry["data"],
                    entry.get("metadata", {}),
                    entry.get("pinned", False),
                    parent,
                )
            )

    def summary(self) -> dict[str, Any]:
        if not self.rows:
            return {
                "total_count": 0,
                "unique_names": 0,
                "names": {},
                "first_checkpoint": None,
                "last_checkpoint": None,
                "duration_seconds": 0,
                "payload_bytes": 0,
            }
        names: dict[str, int] = {}
        for row in self.rows:
            names[row.name] = names.get(row.name, 0) + 1
        first, last = self.rows[0], self.rows[-1]
        return {
            "total_count": len(self.rows),
            "unique_names": len(names),
            "names": names,
            "first_checkpoint": self.as_dict(first),
            "last_checkpoint": self.as_dict(last),
            "duration_seconds": (last.timestamp - first.timestamp).total_seconds(),
            "payload_bytes": sum(_size(row.data) + _size(row.metadata) for row in self.rows),
        }

    def as_dict(self, row: Row) -> dict[str, Any]:
        return Checkpoint(
            f"{self.session_id}:{row.seq}",
            row.name,
            row.timestamp,
            row.data,
            row.metadata,
            row.pinned,
            self.id(row.parent),
        ).to_dict()

    def same(self, checkpoint: Checkpoint | None, row: Row | None) -> None:
        if row is None:
            assert checkpoint is None
            return
        assert checkpoint is not None
        assert checkpoint.to_dict() == self.as_dict(row)
        assert checkpoint.timestamp.tzinfo is not None

    def ids(self, rows: list[Row]) -> list[str]:
        return [f"{self.session_id}:{row.seq}" for row in rows]


policies = st.tuples(
    st.none() | st.integers(0, 12), st.none() | st.integers(0, 10), st.integers(0, 6)
)


class StoreMachine(RuleBasedStateMachine):
    new_url: Callable[[], str]
    open_store: Callable[[str], Any]

    def __init__(self) -> None:
        super().__init__()
        self.url = type(self).new_url()
        self.store = type(self).open_store(self.url)
        self.sessions: dict[str, ReferenceManager] = {}
        self.model: ReferenceManager
        self.mgr: CheckpointManager
        # The policy arguments this process's managers get (None: none, follow the stored one).
        self.policy_args: Policy | None = None

    def _manager(self) -> CheckpointManager:
        if self.policy_args is None:
            return self.store.manager(self.model.session_id)
        max_checkpoints, compress_after, keep_recent = self.policy_args
        return self.store.manager(
            self.model.session_id,
            max_checkpoints=max_checkpoints,
            compress_after=compress_after,
            keep_recent=keep_recent,
        )

    def _written(self) -> None:
        """A create, create_many or import stores the manager's policy arguments, if any."""
        if self.policy_args is not None:
            self.model.policy = self.policy_args

    def _pick(self, index: int) -> Row | None:
        return self.model.rows[index % len(self.model.rows)] if self.model.rows else None

    def _some_id(self, index: int, kind: int) -> str:
        """A live id, one never issued, one deleted or one of another session, by ``kind``."""
        row = self._pick(index)
        if kind == 0 and row is not None:
            return f"{self.model.session_id}:{row.seq}"
        if kind == 1:
            return f"{self.model.session_id}:{self.model.last_seq + 1 + index}"
        if kind == 2:
            live = {row.seq for row in self.model.rows}
            gone = [seq for seq in range(1, self.model.last_seq + 1) if seq not in live]
            if gone:
                return f"{self.model.session_id}:{gone[index % len(gone)]}"
        other = [sid for sid in self.sessions if sid != self.model.session_id]
        return f"{other[index % len(other)] if other else 'elsewhere'}:1"

    @initialize(policy=st.none() | policies)
    def setup(self, policy: Policy | None) -> None:
        self.model = self.sessions[SESSION] = ReferenceManager(SESSION)
        self.policy_args = policy
        self.mgr = self._manager()

    @rule(
        name=st.sampled_from(NAMES),
        data=json_objects,
        meta=st.none() | json_objects,
        pin=st.sampled_from([False, False, False, True]),
        parent=st.none() | st.tuples(st.integers(0, 200), st.integers(0, 3)),
    )
    def create(
        self,
        name: str,
        data: dict[str, Any],
        meta: dict[str, Any] | None,
        pin: bool,
        parent: tuple[int, int] | None,
    ) -> None:
        parent_id = None if parent is None else self._some_id(*parent)
        parent_row = None if parent_id is None else self._row_of(parent_id)
        if parent_id is not None and parent_row is None:
            with pytest.raises(NotFoundError):
                self.mgr.create(name, data, meta, pin=pin, parent=parent_id)
            return  # nothing written: the invariant checks the counter too
        checkpoint = self.mgr.create(name, data, meta, pin=pin, parent=parent_id)
        self._written()
        expected_id = self.model.create(
            name,
            data,
            meta or {},
            checkpoint.timestamp,
            pin,
            parent_row.seq if parent_row else None,
        )
        assert checkpoint.id == expected_id
        assert checkpoint.data == data

    def _row_of(self, checkpoint_id: str) -> Row | None:
        session, _, seq = checkpoint_id.rpartition(":")
        return self.model.live(int(seq)) if session == self.model.session_id else None

    @rule(
        entries=st.lists(st.tuples(st.sampled_from(NAMES), json_objects), max_size=4),
        bad_at=st.none() | st.integers(0, 4),
    )
    def create_many(self, entries: list[tuple[str, dict[str, Any]]], bad_at: int | None) -> None:
        if bad_at is not None:
            batch: list[Any] = list(entries)
            batch.insert(min(bad_at, len(batch)), ("plan", {"x": float("nan")}))
            with pytest.raises(InvalidDataError):
                self.mgr.create_many(batch)
            return
        created = self.mgr.create_many(entries)
        if entries:  # an empty batch writes nothing, not even the policy
            self._written()
            self.model.create_many(entries, created[0].timestamp)
        assert [cp.id for cp in created] == [
            f"{self.model.session_id}:{seq}"
            for seq in range(self.model.last_seq - len(entries) + 1, self.model.last_seq + 1)
        ]

    @rule(index=st.integers(0, 200), kind=st.integers(0, 3))
    def delete(self, index: int, kind: int) -> None:
        checkpoint_id = self._some_id(index, kind)
        row = self._row_of(checkpoint_id)
        assert self.mgr.delete(checkpoint_id) is (row is not None)
        if row is not None:
            self.model.remove({row.seq})

    @rule()
    def pop(self) -> None:
        newest = self.model.rows[-1] if self.model.rows else None
        self.model.same(self.mgr.pop(), newest)
        if newest is not None:
            self.model.remove({newest.seq})

    @rule(index=st.integers(0, 200), kind=st.integers(0, 3))
    def truncate_after(self, index: int, kind: int) -> None:
        checkpoint_id = self._some_id(index, kind)
        row = self._row_of(checkpoint_id)
        if row is None:
            with pytest.raises(NotFoundError):
                self.mgr.truncate_after(checkpoint_id)
            return
        newer = {r.seq for r in self.model.rows if r.seq > row.seq}
        assert self.mgr.truncate_after(checkpoint_id) == self.model.remove(newer)

    @rule(index=st.integers(0, 200), kind=st.integers(0, 3))
    def lineage(self, index: int, kind: int) -> None:
        checkpoint_id = self._some_id(index, kind)
        row = self._row_of(checkpoint_id)
        expected = [] if row is None else self.model.lineage(row.seq)
        found = self.mgr.lineage(checkpoint_id)
        assert [cp.id for cp in found] == self.model.ids(expected)
        for checkpoint, expected_row in zip(found, expected, strict=True):
            self.model.same(checkpoint, expected_row)

    @rule(n=st.integers(0, 8))
    def get_recent(self, n: int) -> None:
        expected = self.model.rows[max(len(self.model.rows) - n, 0) :] if n else []
        assert [cp.id for cp in self.mgr.get_recent(n)] == self.model.ids(expected)

    @precondition(lambda self: bool(self.model.rows))
    @rule(
        index=st.integers(0, 200), history=st.sampled_from(FORK_HISTORIES), onto_used=st.booleans()
    )
    def fork(self, index: int, history: str, onto_used: bool) -> None:
        row = self._pick(index)
        assert row is not None
        checkpoint_id = f"{self.model.session_id}:{row.seq}"
        used = [sid for sid, session in self.sessions.items() if session.last_seq > 0]
        if onto_used and used:
            target = used[index % len(used)]
            with pytest.raises(InvalidDataError):
                self.mgr.fork(checkpoint_id, target, history=history)
            return
        assume(len(self.sessions) < MAX_SESSIONS)
        target = f"fork:{len(self.sessions)}"
        forked = self.mgr.fork(checkpoint_id, target, history=history)
        self.sessions[target] = ReferenceManager(target)
        self.model.fork(row.seq, history, self.sessions[target], self.policy_args)
        assert len(forked) == len(self.sessions[target].rows)

    @rule(index=st.integers(0, 10))
    def switch_session(self, index: int) -> None:
        """Work on another session (a fork, or the first) from now on."""
        self.model = self.sessions[sorted(self.sessions)[index % len(self.sessions)]]
        self.mgr = self._manager()

    @rule(metadata=json_objects)
    def set_session_metadata(self, metadata: dict[str, Any]) -> None:
        self.mgr.set_session_metadata(metadata)
        self.model.metadata = metadata

    @rule(policy=st.none() | policies)
    def reopen(self, policy: Policy | None) -> None:
        """Another process: the store reopened, its managers with these policy arguments or none."""
        self.store.close()
        self.store = type(self).open_store(self.url)
        self.policy_args = policy
        self.mgr = self._manager()

    @rule(index=st.integers(0, 200))
    def get(self, index: int) -> None:
        row = self._pick(index)
        if row is not None:
            row_id = f"{self.model.session_id}:{row.seq}"
            self.model.same(self.mgr.get(row_id), row)
            assert self.mgr.rollback_to(row_id) == row.data
        missing = f"{self.model.session_id}:{self.model.last_seq + 1 + index}"
        assert self.mgr.get(missing) is None
        assert self.mgr.rollback_to(missing) is None

    @rule(name=st.sampled_from(NAMES))
    def by_name(self, name: str) -> None:
        expected = [row for row in reversed(self.model.rows) if row.name == name]
        found = self.mgr.get_by_name(name)
        assert [cp.id for cp in found] == self.model.ids(expected)
        latest = self.mgr.get_latest(name)
        self.model.same(latest, expected[0] if expected else None)

    @rule()
    def latest(self) -> None:
        self.model.same(self.mgr.get_latest(), self.model.rows[-1] if self.model.rows else None)

    @rule(index=st.integers(0, 200), span=st.integers(0, 3))
    def time_ranges(self, index: int, span: int) -> None:
        assume(self.model.rows)
        start = self.model.rows[index % len(self.model.rows)].timestamp
        end = start + timedelta(microseconds=span * 500)
        assert [cp.id for cp in self.mgr.get_since(start)] == self.model.ids(
            [r for r in self.model.rows if r.timestamp > start]
        )
        assert [cp.id for cp in self.mgr.get_between(start, end)] == self.model.ids(
            [r for r in self.model.rows if start <= r.timestamp <= end]
        )

    @rule(index=st.integers(0, 200), pinned=st.booleans())
    def pin(self, index: int, pinned: bool) -> None:
        row = self._pick(index)
        if row is not None:
            action = self.mgr.pin if pinned else self.mgr.unpin
            assert action(f"{self.model.session_id}:{row.seq}") is True
            row.pinned = pinned
        missing = f"{self.model.session_id}:{self.model.last_seq + 1 + index}"
        assert self.mgr.pin(missing) is False

    @rule()
    def clear(self) -> None:
        assert self.mgr.clear() == len(self.model.rows)
        self.model.rows = []

    @rule(keep_recent=st.integers(0, 6), dry_run=st.booleans())
    def compact(self, keep_recent: int, dry_run: bool) -> None:
        report = self.mgr.compact(keep_recent=keep_recent, dry_run=dry_run)
        if dry_run:
            expected = self.model.compaction_victims(keep_recent)
        else:
            expected = self.model.compact(keep_recent)
        assert report.removed == [f"{self.model.session_id}:{seq}" for seq in expected]
        assert report.remaining == len(self.model.rows) - (len(expected) if dry_run else 0)

    @precondition(lambda self: bool(self.model.rows))
    @rule(ahead=st.integers(0, 3))
    def reimport_export(self, ahead: int) -> None:
        """Re-import the session's own export, with some ids moved past the counter."""
        entries = json.loads(self.mgr.export())
        if ahead:
            entries[-1]["id"] = f"{self.model.session_id}:{self.model.last_seq + ahead}"
        assert self.mgr.import_checkpoints(json.dumps(entries)) == len(entries)
        self._written()
        self.model.import_entries(entries)

    @invariant()
    def same_checkpoints(self) -> None:
        if not hasattr(self, "mgr"):
            return
        for session_id, model in self.sessions.items():
            mgr = self.mgr if model is self.model else self.store.manager(session_id)
            stored = list(mgr)
            assert [cp.id for cp in stored] == model.ids(model.rows)
            for checkpoint, row in zip(stored, model.rows, strict=True):
                model.same(checkpoint, row)
            info = self.store.session(session_id)
            if info is None:  # never written to
                assert model.last_seq == 0 and not model.metadata
                continue
            assert info.last_seq == model.last_seq
            assert info.checkpoint_count == len(model.rows)
            policy = info.policy
            assert (policy.max_checkpoints, policy.compress_after, policy.keep_recent) == (
                model.policy
            )
            assert info.metadata == model.metadata
            assert info.forked_from == model.forked_from
        assert len(self.mgr) == len(self.model.rows)
        assert self.mgr.get_summary() == self.model.summary()

    def teardown(self) -> None:
        self.store.close()


@pytest.mark.slow
@pytest.mark.parametrize("flavour", list(STORE_FLAVOURS))
@pytest.mark.parametrize("backend", [*BACKENDS, "pgbouncer"], indirect=True)
def test_store_matches_the_reference_model(new_url: Callable[[], str], flavour: str) -> None:
    StoreMachine.new_url = staticmethod(new_url)  # type: ignore[method-assign]
    StoreMachine.open_store = staticmethod(STORE_FLAVOURS[flavour])  # type: ignore[method-assign]
    run_state_machine_as_test(
        StoreMachine,
        settings=settings(
            max_examples=40,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        ),
    )
