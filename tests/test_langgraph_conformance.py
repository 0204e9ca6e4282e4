"""LangGraph's own conformance suite passes for both savers, on every backend.

The suite (PyPI ``langgraph-checkpoint-conformance``) calls the async methods
only: the async saver runs them on an AsyncCheckpointStore, the sync saver
through its async methods, which run its sync ones in a worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import (
    BASE_CAPABILITIES,
    EXTENDED_CAPABILITIES,
)

from checkpointdb import CheckpointStore
from checkpointdb.aio import AsyncCheckpointStore
from checkpointdb.langgraph import AsyncCheckpointDBSaver, CheckpointDBSaver


def _check_report(report: object) -> None:
    results = report.results  # type: ignore[attr-defined]
    failures = {
        name: result.failures for name, result in results.items() if result.passed is not True
    }
    assert not failures, failures
    assert report.passed_all_base()  # type: ignore[attr-defined]
    every = {cap.value for cap in BASE_CAPABILITIES | EXTENDED_CAPABILITIES}
    assert {name for name, result in results.items() if result.passed} == every
    assert sum(result.tests_passed for result in results.values()) == 81


def test_async_saver_passes_every_capability(new_url: Callable[[], str]) -> None:
    @checkpointer_test(name="AsyncCheckpointDBSaver")
    async def factory() -> AsyncIterator[BaseCheckpointSaver[str]]:
        async with AsyncCheckpointStore(new_url()) as store:
            yield AsyncCheckpointDBSaver(store)

    _check_report(asyncio.run(validate(factory)))


def test_sync_saver_passes_every_capability(new_url: Callable[[], str]) -> None:
    @checkpointer_test(name="CheckpointDBSaver")
    async def factory() -> AsyncIterator[BaseCheckpointSaver[str]]:
        with CheckpointStore(new_url()) as store:
            yield CheckpointDBSaver(store)

    _check_report(asyncio.run(validate(factory)))


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_saver_missing_a_capability_fails_the_check(new_url: Callable[[], str]) -> None:
    class NoPrune(AsyncCheckpointDBSaver):
        aprune = BaseCheckpointSaver.aprune

    @checkpointer_test(name="NoPrune")
    async def factory() -> AsyncIterator[BaseCheckpointSaver[str]]:
        async with AsyncCheckpointStore(new_url()) as store:
            yield NoPrune(store)

    with pytest.raises(AssertionError):
        _check_report(asyncio.run(validate(factory)))
