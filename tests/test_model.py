"""Model-based test: the store behaves like a small in-memory reference of the seed's semantics.

Random sequences of operations run side by side against :class:`ReferenceManager`
(written here from the documented semantics: seq ids that never repeat,
compaction keeping the first, the newest ``keep_recent`` and the newest of
each name, the ``max_checkpoints`` cap, import id rules) and against a real
store, which is closed and reopened at random points. The machine runs on
the sync API and, through a test-only synchronous facade, on the asyncio API.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from async_facade import STORE_FLAVOURS
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

from checkpointdb import Checkpoint, CheckpointManager

SESSION = "agent:1"
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


@dataclass
class Row:
    seq: int
    name: str
    timestamp: datetime
    data: dict[str, Any]
    metadata: dict[str, Any]
    pinned: bool = False

    def id(self) -> str:
        return f"{SESSION}:{self.seq}"


@dataclass
class ReferenceManager:
    """The seed's behaviour, with the documented fixes, over a Python list."""

    max_checkpoints: int | None
    compress_after: int | None
    keep_recent: int
    rows: list[Row] = field(default_factory=list)
    last_seq: int = 0

    def create(
        self, name: str, data: dict[str, Any], meta: dict[str, Any], ts: datetime, pin: bool
    ) -> str:
        self.last_seq += 1
        self.rows.append(Row(self.last_seq, name, ts, data, meta, pin))
        if self.compress_after is not None and len(self.rows) > self.compress_after:
            self.compact(self.keep_recent)
        if self.max_checkpoints is not None and len(self.rows) > self.max_checkpoints:
            # Pins neither count toward the cap nor go; of the unpinned rows
            # between the first and the newest, the oldest go.
            excess = sum(not row.pinned for row in self.rows) - self.max_checkpoints
            candidates = [row for row in self.rows[1:-1] if not row.pinned]
            victims = {row.seq for row in candidates[: max(excess, 0)]}
            self.rows = [row for row in self.rows if row.seq not in victims]
        return f"{SESSION}:{self.last_seq}"

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
        for entry in entries:
            session, _, seq_text = entry["id"].rpartition(":")
            if session == SESSION and seq_text.isdigit() and self.last_seq < int(seq_text) <= 2**53:
                self.last_seq = int(seq_text)
            else:
                self.last_seq += 1
            self.rows.append(
                Row(
                    self.last_seq,
                    entry["name"],
                    datetime.fromisoformat(entry["timestamp"]),
                    entry["data"],
                    entry.get("metadata", {}),
                    entry.get("pinned", False),
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
            "first_checkpoint": _as_dict(first),
            "last_checkpoint": _as_dict(last),
            "duration_seconds": (last.timestamp - first.timestamp).total_seconds(),
            "payload_bytes": sum(_size(row.data) + _size(row.metadata) for row in self.rows),
        }


def _size(value: dict[str, Any]) -> int:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return len(text.encode("utf-8"))


def _as_dict(row: Row) -> dict[str, Any]:
    return Checkpoint(
        row.id(), row.name, row.timestamp, row.data, row.metadata, row.pinned
    ).to_dict()


def _same(checkpoint: Checkpoint | None, row: Row | None) -> None:
    if row is None:
        assert checkpoint is None
        return
    assert checkpoint is not None
    assert (checkpoint.id, checkpoint.name, checkpoint.timestamp) == (
        row.id(),
        row.name,
        row.timestamp,
    )
    assert checkpoint.data == row.data
    assert checkpoint.metadata == row.metadata
    assert checkpoint.pinned == row.pinned
    assert checkpoint.timestamp.tzinfo is not None


class StoreMachine(RuleBasedStateMachine):
    new_url: Callable[[], str]
    open_store: Callable[[str], Any]

    def __init__(self) -> None:
        super().__init__()
        self.url = type(self).new_url()
        self.store = type(self).open_store(self.url)
        self.model: ReferenceManager
        self.mgr: CheckpointManager

    def _manager(self) -> CheckpointManager:
        return self.store.manager(
            SESSION,
            max_checkpoints=self.model.max_checkpoints,
            compress_after=self.model.compress_after,
            keep_recent=self.model.keep_recent,
        )

    @initialize(
        max_checkpoints=st.none() | st.integers(0, 12),
        compress_after=st.none() | st.integers(0, 10),
        keep_recent=st.integers(0, 6),
    )
    def setup(
        self, max_checkpoints: int | None, compress_after: int | None, keep_recent: int
    ) -> None:
        self.model = ReferenceManager(max_checkpoints, compress_after, keep_recent)
        self.mgr = self._manager()

    @rule(
        name=st.sampled_from(NAMES),
        data=json_objects,
        meta=st.none() | json_objects,
        pin=st.sampled_from([False, False, False, True]),
    )
    def create(
        self, name: str, data: dict[str, Any], meta: dict[str, Any] | None, pin: bool
    ) -> None:
        checkpoint = self.mgr.create(name, data, meta, pin=pin)
        expected_id = self.model.create(name, data, meta or {}, checkpoint.timestamp, pin)
        assert checkpoint.id == expected_id
        assert checkpoint.data == data

    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.store = type(self).open_store(self.url)
        self.mgr = self._manager()

    @rule(index=st.integers(0, 200))
    def get(self, index: int) -> None:
        if self.model.rows:
            row = self.model.rows[index % len(self.model.rows)]
            _same(self.mgr.get(row.id()), row)
            assert self.mgr.rollback_to(row.id()) == row.data
        missing = f"{SESSION}:{self.model.last_seq + 1 + index}"
        assert self.mgr.get(missing) is None
        assert self.mgr.rollback_to(missing) is None

    @rule(name=st.sampled_from(NAMES))
    def by_name(self, name: str) -> None:
        expected = [row for row in reversed(self.model.rows) if row.name == name]
        found = self.mgr.get_by_name(name)
        assert [cp.id for cp in found] == [row.id() for row in expected]
        latest = self.mgr.get_latest(name)
        _same(latest, expected[0] if expected else None)

    @rule()
    def latest(self) -> None:
        _same(self.mgr.get_latest(), self.model.rows[-1] if self.model.rows else None)

    @rule(index=st.integers(0, 200), span=st.integers(0, 3))
    def time_ranges(self, index: int, span: int) -> None:
        assume(self.model.rows)
        start = self.model.rows[index % len(self.model.rows)].timestamp
        end = start + timedelta(microseconds=span * 500)
        assert [cp.id for cp in self.mgr.get_since(start)] == [
            r.id() for r in self.model.rows if r.timestamp > start
        ]
        assert [cp.id for cp in self.mgr.get_between(start, end)] == [
            r.id() for r in self.model.rows if start <= r.timestamp <= end
        ]

    @rule(index=st.integers(0, 200), pinned=st.booleans())
    def pin(self, index: int, pinned: bool) -> None:
        if self.model.rows:
            row = self.model.rows[index % len(self.model.rows)]
            action = self.mgr.pin if pinned else self.mgr.unpin
            assert action(row.id()) is True
            row.pinned = pinned
        missing = f"{SESSION}:{self.model.last_seq + 1 + index}"
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
        assert report.removed == [f"{SESSION}:{seq}" for seq in expected]
        assert report.remaining == len(self.model.rows) - (len(expected) if dry_run else 0)

    @precondition(lambda self: bool(self.model.rows))
    @rule(ahead=st.integers(0, 3))
    def reimport_export(self, ahead: int) -> None:
        """Re-import the session's own export, with some ids moved past the counter."""
        entries = json.loads(self.mgr.export())
        if ahead:
            entries[-1]["id"] = f"{SESSION}:{self.model.last_seq + ahead}"
        assert self.mgr.import_checkpoints(json.dumps(entries)) == len(entries)
        self.model.import_entries(entries)

    @invariant()
    def same_checkpoints(self) -> None:
        if not hasattr(self, "mgr"):
            return
        stored = list(self.mgr)
        assert [cp.id for cp in stored] == [row.id() for row in self.model.rows]
        for checkpoint, row in zip(stored, self.model.rows, strict=True):
            _same(checkpoint, row)
        assert len(self.mgr) == len(self.model.rows)
        assert self.mgr.get_summary() == self.model.summary()
        info = self.store.session(SESSION)
        if info is not None:
            assert info.last_seq == self.model.last_seq
            assert info.checkpoint_count == len(self.model.rows)

    def teardown(self) -> None:
        self.store.close()


@pytest.mark.slow
@pytest.mark.parametrize("flavour", list(STORE_FLAVOURS))
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
