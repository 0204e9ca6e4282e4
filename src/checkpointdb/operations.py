"""An API call written once: checks, a body on a cursor, a finish.

Every call of the store and its managers is an :class:`Operation`: the checks
that run before anything touches the database (done by whoever builds it), a
*body* that runs the repository's statements on a DBAPI cursor inside one
transaction, and a *finish* that makes the caller's answer from the body's
result. :func:`perform` runs one on the sync :class:`~checkpointdb.engine.Database`;
the asyncio API (:mod:`checkpointdb.aio`) runs that same :func:`perform` on a
worker thread, so both flavours share one transaction protocol.

A manager gets what it needs from its store as a :class:`Context` (the
database, the repository, the payload encoder with the store's limits), so it
never reaches into the store.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar

from .checkpoint import Checkpoint
from .engine import Cursor, Database, StaleConnectionError, is_conflict
from .errors import StoreBusyError
from .query import FindQuery
from .repository import PAGE_SIZE, Repository

# How often a transaction the server rolled back to settle a deadlock or a
# serialization failure is run in all, and the longest pause (seconds, times
# the attempt) before running it again: the pause, random, lets the winner finish.
CONFLICT_ATTEMPTS = 5
CONFLICT_BACKOFF = 0.01

R = TypeVar("R")
T = TypeVar("T")


class Operation(NamedTuple, Generic[R, T]):
    """One API call's work on the database, whichever flavour of the API runs it.

    A NamedTuple: one is built per call, and that costs a third of a frozen dataclass.

    Attributes:
        body: the statements, run on a DBAPI cursor inside the transaction.
        finish: turns the body's result into the caller's answer, after COMMIT.
        write: take the write lock up front (``BEGIN IMMEDIATE`` on SQLite).
        snapshot: run a read of several statements on one snapshot.
        commit: False rolls the transaction back at the end (a dry run).
        autocommit: run outside any transaction (VACUUM refuses one).
        retry: the body may run again after the server rolled its transaction
            back (False when it consumes something it cannot read twice, such
            as a stream).
    """

    body: Callable[[Cursor], R]
    finish: Callable[[R], T]
    write: bool = False
    snapshot: bool = True
    commit: bool = True
    autocommit: bool = False
    retry: bool = True


@dataclass(frozen=True)
class Ready(Generic[T]):
    """An answer known before any database work (an id that cannot exist, say)."""

    value: T


# What a plan method returns: work to run, or the answer already.
Plan = Operation[Any, T] | Ready[T]

# Validates a checkpoint's data and metadata: (data JSON, metadata JSON, bytes).
Encoder = Callable[[Any, Any], tuple[str, str, int]]


class Context(NamedTuple):
    """What a session's manager needs from its store to build and run operations.

    Attributes:
        db: the database the operations run on.
        repo: the repository whose statements the bodies call.
        encode: checks and encodes a payload against the store's limits.
    """

    db: Database
    repo: Repository
    encode: Encoder


def unchanged(result: T) -> T:
    """The body's result, as the answer."""
    return result


def read(body: Callable[[Cursor], T], *, snapshot: bool = False) -> Operation[T, T]:
    """A read whose body's result is the answer (one statement: no snapshot needed)."""
    return Operation(body, unchanged, False, snapshot)


def perform(plan: Plan[T], db: Database) -> T:
    """Run a plan: its body in one transaction (or in autocommit mode), then its finish.

    Both flavours of the API run operations through this function: the sync
    one on the caller's thread, the asyncio one on a worker thread.
    """
    if isinstance(plan, Ready):
        return plan.value
    if plan.autocommit:
        with db.outside_transaction() as cursor:
            result = plan.body(cursor)
        return plan.finish(result)
    attempt = 1
    while True:
        try:
            with db.transaction(
                write=plan.write, snapshot=plan.snapshot, commit=plan.commit, end_early=True
            ) as cursor:
                result = plan.body(cursor)
            break
        except StaleConnectionError:
            # Found dead before the server answered anything: nothing ran.
            # Each attempt takes another pooled connection (or a new one).
            if not plan.retry or attempt > db.max_connections:
                raise
            attempt += 1
        except StoreBusyError as exc:
            # A deadlock or serialization failure: the server rolled the whole
            # transaction back and nothing was acknowledged, so run it again.
            if not (plan.retry and is_conflict(exc)):
                raise
            if attempt >= CONFLICT_ATTEMPTS:
                raise StoreBusyError(f"{exc} (tried {attempt} times)") from exc.__cause__
            time.sleep(random.uniform(0, CONFLICT_BACKOFF * attempt))
            attempt += 1
    return plan.finish(result)


def can_share_commit(plan: Plan[Any]) -> bool:
    """Whether a plan may commit in one transaction with others (see :func:`perform_together`)."""
    return (
        isinstance(plan, Operation)
        and plan.write
        and plan.commit
        and plan.retry
        and not plan.autocommit
    )


def perform_together(plans: Sequence[Operation[Any, Any]], db: Database) -> list[Any] | None:
    """The bodies' results of several writes run in one transaction, or None.

    Each body runs as it would alone, after the ones before it, and one
    COMMIT makes them all durable at once: a group commit, for writes that
    were queued at the same moment. Nothing is acknowledged before that
    COMMIT, so if any body or the COMMIT fails, the whole transaction is
    rolled back and this returns None: the caller then performs each plan
    alone, and each gets the answer or error it would have had anyway (only
    plans that may run again, :func:`can_share_commit`, are grouped).
    """
    try:
        with db.transaction(write=True) as cursor:
            return [plan.body(cursor) for plan in plans]
    except Exception:
        return None


def stream(
    db: Database, body: Callable[[Cursor], Iterable[T]], *, snapshot: bool = False
) -> Generator[T, None, None]:
    """The items of ``body(cursor)``, read lazily inside one transaction.

    The transaction (and its pooled connection) ends when the iterator is
    exhausted or closed. ``snapshot`` makes every statement of the body see
    one moment (one query always does).
    """
    attempt = 1
    while True:
        started = False
        try:
            with db.transaction(snapshot=snapshot, stream=True) as cursor:
                for item in body(cursor):
                    started = True
                    yield item
            return
        except StaleConnectionError:
            if started or attempt > db.max_connections:
                raise
            attempt += 1


def find_body(repo: Repository, query: FindQuery) -> Callable[[Cursor], Iterable[Checkpoint]]:
    """The body of ``find()``: the checkpoints that match ``query``, a page of rows at a time."""
    return lambda cursor: repo.find(cursor, query)


def find_stream(
    db: Database, repo: Repository, query: FindQuery
) -> Generator[Checkpoint, None, None]:
    """What ``find()`` returns: the checkpoints matching ``query``, read lazily.

    Nothing runs before the first ``next()``. A query whose limit fits in one
    page then reads all its rows in one short transaction, which has ended
    (its connection back in the pool) before the first item is yielded: no
    stream of pages to keep, which costs microseconds next to a query that
    takes about ten near the newest rows. Any other query streams a page at
    a time (see :func:`stream`).
    """
    if query.limit is not None and query.limit <= PAGE_SIZE:
        return _one_page(db, repo, query)
    return stream(db, find_body(repo, query))


def _one_page(
    db: Database, repo: Repository, query: FindQuery
) -> Generator[Checkpoint, None, None]:
    yield from perform(read(lambda cursor: repo.find_page(cursor, query)), db)
