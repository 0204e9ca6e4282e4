"""A LangGraph checkpointer on a checkpointdb store: CheckpointDBSaver and its asyncio twin.

Needs the ``langgraph`` extra (``pip install 'checkpointdb[langgraph]'``).

Where things are stored (schema revision 0005):

* a LangGraph thread is a session (``sessions.id`` is the thread id), so
  ``store.sessions()``, ``session_view``, ``delete_session``, ``expire`` and
  the command line work on threads;
* each LangGraph checkpoint is a ``checkpoints`` row: ``name`` is the
  metadata's ``source``, ``data`` the checkpoint without its channel values,
  ``metadata`` LangGraph's metadata as JSON, ``parent_seq`` its parent;
  ``langgraph_checkpoints`` maps (thread, namespace, LangGraph id) to it;
* channel values live in ``langgraph_blobs``, once per (thread, namespace,
  channel, version), as the serializer's type and bytes: a channel that did
  not change in a step is not stored again;
* pending writes live in ``langgraph_writes`` and go with their checkpoint.

Sessions the saver writes have checkpointdb's own compaction off (their
stored policy is "off"): LangGraph still needs every ancestor. ``prune`` and
``delete_for_runs`` are the retention; ``expire`` and ``vacuum`` still work.

Every call is one transaction, run by the store's operation machinery: the
sync saver on the store's :class:`~checkpointdb.engine.Database`, the async
saver on its :class:`~checkpointdb.aengine.AsyncDatabase`.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_serializable_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from .aio import AsyncCheckpointStore
from .engine import Cursor
from .errors import CheckpointDBError, NotFoundError
from .operations import Operation, Plan, perform, unchanged
from .store import CheckpointStore, StoreBase
from .types import decode_json, dumps_json, dumps_jsonb, encode_time_text
from .validate import check_identifier

__all__ = ["AsyncCheckpointDBSaver", "CheckpointDBSaver"]

T = TypeVar("T")

# The policy stored on a LangGraph thread's session row: compaction and the
# cap off (-1), so no create-time retention ever deletes an ancestor.
_POLICY_OFF = (-1, -1, None)
# put_writes may run before the put of its checkpoint has committed: LangGraph
# saves both in the background, concurrently. It waits this long, in
# growing sleeps, for the checkpoint to appear.
_WRITES_WAIT_SECONDS = 5.0
_WRITES_FIRST_SLEEP = 0.001
PRUNE_STRATEGIES = ("keep_latest", "delete")

_PARAM = re.compile(r"(?<!:):(\w+)")

# The parent's id and each channel value are lookups by their whole key: a
# join there may be planned (PostgreSQL before ANALYZE has seen the tables)
# as a walk of every row of the thread for every checkpoint read.
_SELECT = """
SELECT m.session_id, m.seq, m.checkpoint_ns, m.checkpoint_id,
       (SELECT p.checkpoint_id FROM langgraph_checkpoints AS p
        WHERE p.session_id = c.session_id AND p.seq = c.parent_seq) AS parent_id,
       c.data, c.metadata
FROM langgraph_checkpoints AS m
JOIN checkpoints AS c ON c.session_id = m.session_id AND c.seq = m.seq
"""
# A read is one statement, so it needs no snapshot: the checkpoints chosen
# (kind 0 rows), then their channel values (kind 1) and pending writes
# (kind 2) as rows of their own, bytes as stored, where each checkpoint used
# to cost more statements or values to decode twice. Columns: kind, thread,
# seq, then for kind 0: namespace, checkpoint id, parent id, -, -, -, data,
# metadata; 1: channel, type, -, -, value; 2: task path, task id, channel,
# type, value, idx. (PostgreSQL types a UNION's columns from its first
# SELECT: hence the typed NULLs.)
_READ = """
WITH t AS MATERIALIZED ({chosen})
SELECT 0, t.session_id, t.seq, t.checkpoint_ns, t.checkpoint_id, t.parent_id, NULL,
       CAST(NULL AS {bytes}), CAST(NULL AS INTEGER), t.data, t.metadata FROM t
UNION ALL
SELECT 1, t.session_id, t.seq, b.channel, b.type, NULL, NULL, b.value, NULL, NULL, NULL
FROM t CROSS JOIN {values}
UNION ALL
SELECT 2, t.session_id, t.seq, w.task_path, w.task_id, w.channel, w.type, w.value, w.idx,
       NULL, NULL
FROM t CROSS JOIN langgraph_writes AS w WHERE w.session_id = t.session_id AND w.seq = t.seq
"""


class _Statements:
    """The saver's SQL for one dialect, with parameters in the driver's style."""

    def __init__(self, dialect: str) -> None:
        self.sqlite = dialect == "sqlite"
        sqlite = self.sqlite

        def sql(text: str) -> str:
            return text.strip() if sqlite else _PARAM.sub(r"%(\1)s", text.strip())

        self.sql = sql
        blob = (
            "b.session_id = t.session_id AND b.checkpoint_ns = t.checkpoint_ns "
            "AND b.channel = v.key AND b.version = {} AND b.type <> 'empty'"
        )
        if sqlite:
            values = (
                "json_each(t.data, '$.channel_versions') AS v CROSS JOIN langgraph_blobs AS b "
                "WHERE " + blob.format("CAST(v.value AS TEXT)")
            )
        else:
            # LIMIT 1 (the key is unique) keeps the subquery a lookup per channel.
            values = (
                "jsonb_each_text(t.data -> 'channel_versions') AS v CROSS JOIN LATERAL ("
                "SELECT b.channel, b.type, b.value FROM langgraph_blobs AS b WHERE "
                + blob.format("v.value")
                + " LIMIT 1) AS b"
            )

        def read(chosen: str) -> str:
            return sql(
                _READ.format(
                    chosen=chosen,
                    values=values,
                    bytes="BLOB" if sqlite else "BYTEA",
                )
            )

        self.read = read
        self.by_id = read(
            _SELECT + "WHERE m.session_id = :thread AND m.checkpoint_ns = :ns "
            "AND m.checkpoint_id = :id"
        )
        self.latest = read(
            _SELECT + "WHERE m.session_id = :thread AND m.checkpoint_ns = :ns "
            "ORDER BY m.checkpoint_id DESC LIMIT 1"
        )
        # Two lookups, not ``checkpoint_id IN (:id, :parent)``: for that SQLite
        # walks the thread's primary key, a scan of every checkpoint of the thread.
        find = (
            "SELECT checkpoint_id, seq FROM langgraph_checkpoints WHERE session_id = :thread "
            "AND checkpoint_ns = :ns AND checkpoint_id = "
        )
        self.find_ids = sql(f"{find}:id UNION ALL {find}:parent")
        self.seq_of = sql(
            "SELECT seq FROM langgraph_checkpoints WHERE session_id = :thread "
            "AND checkpoint_ns = :ns AND checkpoint_id = :id"
        )
        self.insert_checkpoint = sql(
            "INSERT INTO checkpoints (session_id, seq, name, created_at, data, metadata, "
            "pinned, payload_bytes, parent_seq) VALUES (:thread, :seq, :name, :now, :data, "
            ":metadata, :pinned, :bytes, :parent_seq)"
        )
        self.insert_id = sql(
            "INSERT INTO langgraph_checkpoints (session_id, seq, checkpoint_ns, checkpoint_id) "
            "VALUES (:thread, :seq, :ns, :id)"
        )
        # A put of a checkpoint id already stored replaces its data and metadata.
        self.replace_bytes = sql(
            "UPDATE sessions SET payload_bytes = payload_bytes + :bytes - (SELECT "
            "payload_bytes FROM checkpoints WHERE session_id = :thread AND seq = :seq), "
            "updated_at = :now WHERE id = :thread"
        )
        self.replace_checkpoint = sql(
            "UPDATE checkpoints SET name = :name, data = :data, metadata = :metadata, "
            "payload_bytes = :bytes WHERE session_id = :thread AND seq = :seq"
        )
        self.insert_blob = sql(
            "INSERT INTO langgraph_blobs (session_id, checkpoint_ns, channel, version, type, "
            "value) VALUES (:thread, :ns, :channel, :version, :type, :value) "
            "ON CONFLICT (session_id, checkpoint_ns, channel, version) DO NOTHING"
        )
        write = (
            "INSERT INTO langgraph_writes (session_id, seq, task_id, idx, channel, type, value, "
            "task_path) VALUES (:thread, :seq, :task_id, :idx, :channel, :type, :value, "
            ":task_path) ON CONFLICT (session_id, seq, task_id, idx) DO "
        )
        # LangGraph's rule: writes to special channels (error, interrupt, ...)
        # replace an earlier one; ordinary writes are saved once.
        self.replace_write = sql(
            write + "UPDATE SET channel = excluded.channel, type = excluded.type, "
            "value = excluded.value"
        )
        self.keep_write = sql(write + "NOTHING")
        run_id = (
            "json_extract(metadata, '$.run_id') IN (SELECT value FROM json_each(:runs))"
            if sqlite
            else "metadata ->> 'run_id' = ANY(:runs)"
        )
        self.delete_runs = sql(
            "DELETE FROM checkpoints WHERE EXISTS (SELECT 1 FROM langgraph_checkpoints AS m "
            "WHERE m.session_id = checkpoints.session_id AND m.seq = checkpoints.seq) "
            f"AND {run_id} RETURNING session_id, payload_bytes"
        )
        # keep_latest: every checkpoint but the newest of each namespace.
        self.prune_older = sql(
            "DELETE FROM checkpoints WHERE session_id = :thread AND seq IN ("
            "SELECT m.seq FROM langgraph_checkpoints AS m WHERE m.session_id = :thread "
            "AND m.checkpoint_id < (SELECT max(k.checkpoint_id) FROM langgraph_checkpoints AS k "
            "WHERE k.session_id = :thread AND k.checkpoint_ns = m.checkpoint_ns)) "
            "RETURNING session_id, payload_bytes"
        )
        used = (
            "json_each(c.data, '$.channel_versions') AS v"
            if sqlite
            else "jsonb_each_text(c.data -> 'channel_versions') AS v"
        )
        version = "CAST(v.value AS TEXT)" if sqlite else "v.value"
        self.prune_blobs = sql(
            "DELETE FROM langgraph_blobs WHERE session_id = :thread AND NOT EXISTS ("
            "SELECT 1 FROM langgraph_checkpoints AS m JOIN checkpoints AS c "
            f"ON c.session_id = m.session_id AND c.seq = m.seq CROSS JOIN {used} "
            "WHERE m.session_id = :thread AND m.checkpoint_ns = langgraph_blobs.checkpoint_ns "
            f"AND v.key = langgraph_blobs.channel AND {version} = langgraph_blobs.version)"
        )
        self.uncount = sql(
            "UPDATE sessions SET checkpoint_count = checkpoint_count - :rows, "
            "payload_bytes = payload_bytes - :bytes, updated_at = :now WHERE id = :thread"
        )
        self.delete_thread = sql("DELETE FROM sessions WHERE id = :thread")
        self.session_exists = sql("SELECT 1 FROM sessions WHERE id = :thread")
        self.copy = tuple(
            sql(text)
            for text in (
                "INSERT INTO sessions (id, created_at, updated_at, last_seq, checkpoint_count, "
                "payload_bytes, metadata, max_checkpoints, compress_after, keep_recent) "
                "SELECT :target, :now, :now, last_seq, checkpoint_count, payload_bytes, "
                "metadata, -1, -1, keep_recent FROM sessions WHERE id = :thread",
                "INSERT INTO checkpoints (session_id, seq, name, created_at, data, metadata, "
                "pinned, payload_bytes, parent_seq) SELECT :target, seq, name, created_at, data, "
                "metadata, pinned, payload_bytes, parent_seq FROM checkpoints "
                "WHERE session_id = :thread",
                "INSERT INTO langgraph_checkpoints (session_id, seq, checkpoint_ns, "
                "checkpoint_id) SELECT :target, seq, checkpoint_ns, checkpoint_id "
                "FROM langgraph_checkpoints WHERE session_id = :thread",
                "INSERT INTO langgraph_writes (session_id, seq, task_id, idx, channel, type, "
                "value, task_path) SELECT :target, seq, task_id, idx, channel, type, value, "
                "task_path FROM langgraph_writes WHERE session_id = :thread",
                "INSERT INTO langgraph_blobs (session_id, checkpoint_ns, channel, version, "
                "type, value) SELECT :target, checkpoint_ns, channel, version, type, value "
                "FROM langgraph_blobs WHERE session_id = :thread",
            )
        )

    def list_query(
        self, thread: bool, ns: bool, checkpoint: bool, before: bool, keys: Sequence[Any]
    ) -> tuple[str, dict[str, Any]]:
        """A list() statement for which config parts are given, and its filter's parameters."""
        where: list[str] = []
        params: dict[str, Any] = {}
        if thread:
            where.append("m.session_id = :thread")
        if ns:
            where.append("m.checkpoint_ns = :ns")
        if checkpoint:
            where.append("m.checkpoint_id = :id")
        if before:
            where.append("m.checkpoint_id < :before")
        if keys:
            if self.sqlite:
                for index, (key, value) in enumerate(keys):
                    params[f"fk{index}"] = key
                    test, param = _sqlite_value_test(value)
                    if param is not None:
                        params[f"fv{index}"] = param
                    where.append(
                        "EXISTS (SELECT 1 FROM json_each(c.metadata) AS f "
                        f"WHERE f.key = :fk{index} AND {test.format(p=f':fv{index}')})"
                    )
            else:
                # Containment: what PostgreSQL's own LangGraph saver means by filter.
                params["filter"] = dumps_jsonb(dict(keys))
                where.append("c.metadata @> CAST(:filter AS JSONB)")
        text = _SELECT + ("WHERE " + " AND ".join(where) if where else "")
        return self.read(text + " ORDER BY m.checkpoint_id DESC LIMIT :limit"), params


def _sqlite_value_test(value: Any) -> tuple[str, Any]:
    """SQL that a json_each row ``f`` holds ``value`` (JSON equality), and its parameter."""
    if value is None:
        return "f.type = 'null'", None
    if value is True:
        return "f.type = 'true'", None
    if value is False:
        return "f.type = 'false'", None
    if isinstance(value, str):
        return "f.type = 'text' AND f.atom = {p}", value
    if isinstance(value, int | float):
        return "f.type IN ('integer', 'real') AND f.atom = {p}", value
    return "f.type IN ('object', 'array') AND f.value = json({p})", dumps_json(value)


def _configurable(config: RunnableConfig | None) -> dict[str, Any]:
    return dict((config or {}).get("configurable") or {})


def _thread_of(config: RunnableConfig) -> str:
    thread = _configurable(config).get("thread_id")
    if thread is None:
        raise CheckpointDBError("the config has no configurable.thread_id")
    return str(thread)


def _config(thread: str, ns: str, checkpoint_id: str) -> RunnableConfig:
    return {
        "configurable": {"thread_id": thread, "checkpoint_ns": ns, "checkpoint_id": checkpoint_id}
    }


class _Plans:
    """The saver's operations, whichever flavour runs them (a mixin of both savers)."""

    serde: SerializerProtocol

    def _setup(self, store: StoreBase) -> None:
        self._store = store
        self._sql = _Statements(store.dialect)
        self._sqlite = store.dialect == "sqlite"
        self._dumps = dumps_json if self._sqlite else dumps_jsonb

    def _now(self) -> Any:
        now = datetime.now(UTC)
        return encode_time_text(now) if self._sqlite else now

    # -- reads ----------------------------------------------------------------

    def _tuples(self, rows: Sequence[Sequence[Any]]) -> list[CheckpointTuple]:
        """The checkpoints of one read statement's rows (see ``_READ``), newest first."""
        loads = self.serde.loads_typed
        heads: list[Sequence[Any]] = []
        values: dict[tuple[str, int], dict[str, Any]] = {}
        writes: dict[tuple[str, int], list[tuple[Any, ...]]] = {}
        for row in rows:
            kind, key = row[0], (row[1], row[2])
            if kind == 0:
                heads.append(row)
                values[key] = {}
                writes[key] = []
            elif kind == 1:
                values[key][row[3]] = loads((row[4], bytes(row[7])))
            else:
                writes[key].append((row[3], row[4], row[8], row[5], row[6], row[7]))
        # UNION ALL keeps no order: put the newest first again, as the statement chose.
        heads.sort(key=lambda head: head[4], reverse=True)
        result = []
        for _kind, thread, seq, ns, checkpoint_id, parent_id, *_, data, meta in heads:
            key = (thread, seq)
            pending = [
                (task_id, channel, loads((type_, bytes(value))))
                for _path, task_id, _idx, channel, type_, value in sorted(writes[key])
            ]
            result.append(
                CheckpointTuple(
                    config=_config(thread, ns, checkpoint_id),
                    checkpoint=cast(
                        Checkpoint, {**decode_json(data), "channel_values": values[key]}
                    ),
                    metadata=cast(CheckpointMetadata, decode_json(meta)),
                    parent_config=None if parent_id is None else _config(thread, ns, parent_id),
                    pending_writes=pending,
                )
            )
        return result

    def _get_tuple(self, config: RunnableConfig) -> Operation[Any, CheckpointTuple | None]:
        conf = _configurable(config)
        params = {"thread": str(conf.get("thread_id")), "ns": conf.get("checkpoint_ns", "")}
        checkpoint_id = get_checkpoint_id(config)
        if checkpoint_id:
            params["id"] = checkpoint_id
        statement = self._sql.by_id if checkpoint_id else self._sql.latest

        def body(cursor: Cursor) -> CheckpointTuple | None:
            cursor.execute(statement, params)
            found = self._tuples(cursor.fetchall())
            return found[0] if found else None

        return Operation(body, unchanged, snapshot=False)

    def _list(
        self,
        config: RunnableConfig | None,
        filter: dict[str, Any] | None,
        before: RunnableConfig | None,
        limit: int | None,
    ) -> Operation[Any, list[CheckpointTuple]]:
        conf = _configurable(config)
        before_id = get_checkpoint_id(before) if before else None
        keys = sorted((filter or {}).items())
        statement, params = self._sql.list_query(
            "thread_id" in conf,
            "checkpoint_ns" in conf,
            bool(conf.get("checkpoint_id")),
            before_id is not None,
            keys,
        )
        params.update(
            thread=str(conf.get("thread_id")),
            ns=conf.get("checkpoint_ns"),
            id=conf.get("checkpoint_id"),
            before=before_id,
            limit=(-1 if self._sqlite else None) if limit is None else limit,
        )

        def body(cursor: Cursor) -> list[CheckpointTuple]:
            cursor.execute(statement, params)
            return self._tuples(cursor.fetchall())

        return Operation(body, unchanged, snapshot=False)

    # -- writes ---------------------------------------------------------------

    def _put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> Operation[Any, RunnableConfig]:
        conf = _configurable(config)
        thread = check_identifier(_thread_of(config), "thread_id")
        ns = str(conf.get("checkpoint_ns", ""))
        checkpoint_id = checkpoint["id"]
        parent_id = conf.get("checkpoint_id")
        data = {key: value for key, value in checkpoint.items() if key != "channel_values"}
        meta = get_serializable_checkpoint_metadata(config, metadata)
        data_json, meta_json = self._dumps(data), self._dumps(meta)
        size = len(data_json.encode()) + len(meta_json.encode())
        values = checkpoint["channel_values"]
        blobs = []
        for channel, version in new_versions.items():
            type_, value = (
                self.serde.dumps_typed(values[channel]) if channel in values else ("empty", None)
            )
            blobs.append(
                {
                    "thread": thread,
                    "ns": ns,
                    "channel": channel,
                    "version": str(version),
                    "type": type_,
                    "value": value,
                }
            )
        name = str(meta.get("source") or "langgraph")
        repo, sql, now = self._store.context().repo, self._sql, datetime.now(UTC)

        def body(cursor: Cursor) -> None:
            stamp = self._now()
            params = {
                "thread": thread,
                "ns": ns,
                "id": checkpoint_id,
                "parent": parent_id or "",
                "name": name,
                "data": data_json,
                "metadata": meta_json,
                "bytes": size,
                "now": stamp,
                "pinned": False,
            }
            cursor.execute(sql.find_ids, params)
            known = dict(cursor.fetchall())
            if checkpoint_id in known:
                params["seq"] = known[checkpoint_id]
                cursor.execute(sql.replace_bytes, params)
                cursor.execute(sql.replace_checkpoint, params)
            else:
                params["seq"] = repo.allocate(cursor, thread, now, size, 1, _POLICY_OFF).last_seq
                params["parent_seq"] = known.get(parent_id) if parent_id else None
                cursor.execute(sql.insert_checkpoint, params)
                cursor.execute(sql.insert_id, params)
            if blobs:
                cast(Any, cursor).executemany(sql.insert_blob, blobs)

        return Operation(body, lambda _: _config(thread, ns, checkpoint_id), write=True)

    def _put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str,
    ) -> Operation[bool, bool]:
        conf = _configurable(config)
        thread, ns = _thread_of(config), str(conf.get("checkpoint_ns", ""))
        checkpoint_id = get_checkpoint_id(config)
        rows = []
        for idx, (channel, value) in enumerate(writes):
            type_, blob = self.serde.dumps_typed(value)
            rows.append(
                {
                    "thread": thread,
                    "task_id": task_id,
                    "idx": WRITES_IDX_MAP.get(channel, idx),
                    "channel": channel,
                    "type": type_,
                    "value": blob,
                    "task_path": task_path,
                }
            )
        special = all(channel in WRITES_IDX_MAP for channel, _ in writes)
        statement = self._sql.replace_write if special else self._sql.keep_write
        seq_of = self._sql.seq_of

        def body(cursor: Cursor) -> bool:
            cursor.execute(seq_of, {"thread": thread, "ns": ns, "id": checkpoint_id})
            found = cursor.fetchone()
            if found is None:
                return False
            for row in rows:
                row["seq"] = found[0]
            if rows:
                cast(Any, cursor).executemany(statement, rows)
            return True

        return Operation(body, unchanged, write=True)

    def _missing_checkpoint(self, config: RunnableConfig) -> NotFoundError:
        conf = _configurable(config)
        return NotFoundError(
            f"put_writes: no checkpoint {conf.get('checkpoint_id')!r} in thread "
            f"{conf.get('thread_id')!r} (namespace {conf.get('checkpoint_ns', '')!r}) "
            f"in {self._store.where}, even after {_WRITES_WAIT_SECONDS:g} s"
        )

    def _uncount(self, cursor: Cursor, removed: list[Any], stamp: Any) -> None:
        """Subtract deleted checkpoints (session_id, payload_bytes rows) from their sessions."""
        totals: dict[str, list[int]] = {}
        for thread, size in removed:
            entry = totals.setdefault(thread, [0, 0])
            entry[0] += 1
            entry[1] += int(size)
        for thread, (rows, size) in sorted(totals.items()):
            cursor.execute(
                self._sql.uncount, {"thread": thread, "rows": rows, "bytes": size, "now": stamp}
            )

    def _delete_thread(self, thread_id: str) -> Operation[None, None]:
        statement, thread = self._sql.delete_thread, str(thread_id)

        def body(cursor: Cursor) -> None:
            cursor.execute(statement, {"thread": thread})

        return Operation(body, unchanged, write=True)

    def _delete_for_runs(self, run_ids: Sequence[str]) -> Operation[None, None]:
        runs: Any = (
            dumps_json([str(r) for r in run_ids]) if self._sqlite else [str(r) for r in run_ids]
        )

        def body(cursor: Cursor) -> None:
            cursor.execute(self._sql.delete_runs, {"runs": runs})
            self._uncount(cursor, cursor.fetchall(), self._now())

        return Operation(body, unchanged, write=True)

    def _copy_thread(self, source: str, target: str) -> Operation[None, None]:
        source, target = str(source), check_identifier(str(target), "target_thread_id")
        sql, where = self._sql, self._store.where

        def body(cursor: Cursor) -> None:
            cursor.execute(sql.session_exists, {"thread": target})
            if cursor.fetchone() is not None:
                raise CheckpointDBError(
                    f"copy_thread: thread {target!r} already exists in {where}; "
                    "delete it first or copy to a new thread id"
                )
            params = {"thread": source, "target": target, "now": self._now()}
            for statement in sql.copy:
                cursor.execute(statement, params)

        return Operation(body, unchanged, write=True)

    def _prune(self, thread_ids: Sequence[str], strategy: str) -> Operation[None, None]:
        if strategy not in PRUNE_STRATEGIES:
            raise CheckpointDBError(
                f"prune strategy must be one of {', '.join(PRUNE_STRATEGIES)}, got {strategy!r}"
            )
        threads = [str(t) for t in thread_ids]
        sql = self._sql

        def body(cursor: Cursor) -> None:
            for thread in threads:
                if strategy == "delete":
                    cursor.execute(sql.delete_thread, {"thread": thread})
                    continue
                cursor.execute(sql.prune_older, {"thread": thread})
                removed = cursor.fetchall()
                if removed:
                    self._uncount(cursor, removed, self._now())
                    cursor.execute(sql.prune_blobs, {"thread": thread})

        return Operation(body, unchanged, write=True)

    def get_next_version(self, current: Any, channel: None = None) -> str:
        """The next version of a channel: a zero-padded counter, then a random part.

        The random part keeps two branches of one thread (a fork from an old
        state, say) from giving different values the same version, which
        would make them share one stored value.
        """
        if current is None:
            count = 0
        elif isinstance(current, int | float):
            count = int(current)
        else:
            count = int(str(current).split(".", 1)[0])
        return f"{count + 1:032}.{random.random():.16f}"


# -- the two places that run operations (one per flavour) ----------------------


def _run(store: CheckpointStore, plan: Plan[T]) -> T:
    """Run one operation of the sync saver on its store's database."""
    return perform(plan, store.context().db)


async def _run_async(store: AsyncCheckpointStore, plan: Plan[T]) -> T:
    """Run one operation of the async saver on its store's database."""
    return await store._perform(plan)


class CheckpointDBSaver(_Plans, BaseCheckpointSaver[str]):
    """A LangGraph checkpointer that stores threads in a checkpointdb store.

    ``graph = builder.compile(checkpointer=CheckpointDBSaver(store))``. The
    async methods run the sync ones in a worker thread; in asyncio code,
    :class:`AsyncCheckpointDBSaver` never blocks the event loop.

    Args:
        store: an open :class:`~checkpointdb.CheckpointStore` (SQLite or PostgreSQL).
        serde: LangGraph's serializer for channel values and writes
            (default: LangGraph's own; ``EncryptedSerializer`` works too).
    """

    def __init__(self, store: CheckpointStore, *, serde: SerializerProtocol | None = None) -> None:
        super().__init__(serde=serde)
        self._setup(store)
        self.store = store

    @classmethod
    @contextmanager
    def from_conn_string(cls, url: str, **store_options: Any) -> Iterator[CheckpointDBSaver]:
        """Open a store at ``url`` (a path or URL), yield a saver on it, close the store after."""
        with CheckpointStore(url, **store_options) as store:
            yield cls(store)

    def setup(self) -> None:
        """Nothing to do: opening the store created or upgraded the schema."""

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint at ``config`` (or its thread's latest), with writes and parent."""
        return _run(self.store, self._get_tuple(config))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Checkpoints newest first; ``filter`` (metadata equality) runs in SQL."""
        yield from _run(self.store, self._list(config, filter, before, limit))

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint and the channel values that changed, in one transaction."""
        return _run(self.store, self._put(config, checkpoint, metadata, new_versions))

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's pending writes for the checkpoint at ``config``."""
        plan = self._put_writes(config, writes, task_id, task_path)
        deadline, pause = time.monotonic() + _WRITES_WAIT_SECONDS, _WRITES_FIRST_SLEEP
        while not _run(self.store, plan):
            if time.monotonic() > deadline:
                raise self._missing_checkpoint(config)
            time.sleep(pause)
            pause = min(pause * 2, 0.1)

    def delete_thread(self, thread_id: str) -> None:
        """Delete a thread: its session, checkpoints, writes and values."""
        _run(self.store, self._delete_thread(thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete every checkpoint (and its writes) whose metadata run_id is one of ``run_ids``."""
        if run_ids:
            _run(self.store, self._delete_for_runs(run_ids))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy a thread whole (checkpoints, writes, values) to a new thread id."""
        _run(self.store, self._copy_thread(source_thread_id, target_thread_id))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Keep only the newest checkpoint of each namespace (``keep_latest``), or none."""
        _run(self.store, self._prune(thread_ids, strategy))

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """:meth:`get_tuple` in a worker thread."""
        return await asyncio.to_thread(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """:meth:`list` in a worker thread."""
        plan = self._list(config, filter, before, limit)
        for item in await asyncio.to_thread(_run, self.store, plan):
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """:meth:`put` in a worker thread."""
        return await asyncio.to_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """:meth:`put_writes` in a worker thread."""
        await asyncio.to_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        """:meth:`delete_thread` in a worker thread."""
        await asyncio.to_thread(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """:meth:`delete_for_runs` in a worker thread."""
        await asyncio.to_thread(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """:meth:`copy_thread` in a worker thread."""
        await asyncio.to_thread(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """:meth:`prune` in a worker thread."""
        await asyncio.to_thread(self.prune, thread_ids, strategy=strategy)


class AsyncCheckpointDBSaver(_Plans, BaseCheckpointSaver[str]):
    """The asyncio LangGraph checkpointer on an :class:`~checkpointdb.aio.AsyncCheckpointStore`.

    Its sync methods are for other threads (LangGraph's sync ``get_state``
    called from a worker, say): they run the async ones on the event loop
    the saver was created on.

    Args:
        store: an open async store.
        serde: as for :class:`CheckpointDBSaver`.
    """

    def __init__(
        self, store: AsyncCheckpointStore, *, serde: SerializerProtocol | None = None
    ) -> None:
        super().__init__(serde=serde)
        self._setup(store)
        self.store = store
        try:
            self.loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self.loop = None

    @classmethod
    @asynccontextmanager
    async def from_conn_string(
        cls, url: str, **store_options: Any
    ) -> AsyncIterator[AsyncCheckpointDBSaver]:
        """Open an async store at ``url``, yield a saver on it, close the store after."""
        async with AsyncCheckpointStore(url, **store_options) as store:
            yield cls(store)

    async def setup(self) -> None:
        """Nothing to do: opening the store created or upgraded the schema."""

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint at ``config`` (or its thread's latest), with writes and parent."""
        return await _run_async(self.store, self._get_tuple(config))

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """Checkpoints newest first; ``filter`` (metadata equality) runs in SQL."""
        for item in await _run_async(self.store, self._list(config, filter, before, limit)):
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint and the channel values that changed, in one transaction."""
        return await _run_async(self.store, self._put(config, checkpoint, metadata, new_versions))

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's pending writes for the checkpoint at ``config``."""
        plan = self._put_writes(config, writes, task_id, task_path)
        deadline, pause = time.monotonic() + _WRITES_WAIT_SECONDS, _WRITES_FIRST_SLEEP
        while not await _run_async(self.store, plan):
            if time.monotonic() > deadline:
                raise self._missing_checkpoint(config)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.1)

    async def adelete_thread(self, thread_id: str) -> None:
        """Delete a thread: its session, checkpoints, writes and values."""
        await _run_async(self.store, self._delete_thread(thread_id))

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete every checkpoint (and its writes) whose metadata run_id is one of ``run_ids``."""
        if run_ids:
            await _run_async(self.store, self._delete_for_runs(run_ids))

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy a thread whole (checkpoints, writes, values) to a new thread id."""
        await _run_async(self.store, self._copy_thread(source_thread_id, target_thread_id))

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """Keep only the newest checkpoint of each namespace (``keep_latest``), or none."""
        await _run_async(self.store, self._prune(thread_ids, strategy))

    # -- sync calls from other threads ---------------------------------------

    def _from_thread(self, make: Callable[[], Any]) -> Any:
        loop = self.loop
        if loop is None:
            raise CheckpointDBError(
                "AsyncCheckpointDBSaver was created outside an event loop; its sync methods "
                "need that loop: create it inside one, or use CheckpointDBSaver"
            )
        try:
            if asyncio.get_running_loop() is loop:
                raise asyncio.InvalidStateError(
                    "sync calls to AsyncCheckpointDBSaver are for other threads; on its event "
                    "loop await the async method (aget_tuple, alist, aput, ...)"
                )
        except RuntimeError:
            pass
        return asyncio.run_coroutine_threadsafe(make(), loop).result()

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """:meth:`aget_tuple`, from another thread."""
        return cast(CheckpointTuple | None, self._from_thread(lambda: self.aget_tuple(config)))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """:meth:`alist`, from another thread."""
        plan = self._list(config, filter, before, limit)
        yield from self._from_thread(lambda: _run_async(self.store, plan))

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """:meth:`aput`, from another thread."""
        return cast(
            RunnableConfig,
            self._from_thread(lambda: self.aput(config, checkpoint, metadata, new_versions)),
        )

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """:meth:`aput_writes`, from another thread."""
        self._from_thread(lambda: self.aput_writes(config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        """:meth:`adelete_thread`, from another thread."""
        self._from_thread(lambda: self.adelete_thread(thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """:meth:`adelete_for_runs`, from another thread."""
        self._from_thread(lambda: self.adelete_for_runs(run_ids))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """:meth:`acopy_thread`, from another thread."""
        self._from_thread(lambda: self.acopy_thread(source_thread_id, target_thread_id))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """:meth:`aprune`, from another thread."""
        self._from_thread(lambda: self.aprune(thread_ids, strategy=strategy))
