"""A synchronous facade over the asyncio API, so tests written for the sync API run on it.

Test-only. Each facade store drives one event loop (an ``asyncio.Runner``)
for its whole life; every call on the store or its managers runs to the end
on that loop. Coroutines are awaited, async iterators are read to a list,
``len()`` is ``count()`` and iteration is ``async for``: the sync API's
shapes, with the asyncio API underneath.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from checkpointdb import AsyncCheckpointManager, AsyncCheckpointStore, Checkpoint, CheckpointStore


async def _collect(items: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in items]


class _Facade:
    def __init__(self, target: Any, runner: asyncio.Runner) -> None:
        self._target = target
        self._runner = runner

    def _resolve(self, value: Any) -> Any:
        if inspect.iscoroutine(value):
            value = self._runner.run(value)
        if isinstance(value, AsyncIterator):
            return iter(self._runner.run(_collect(value)))
        if isinstance(value, AsyncCheckpointManager):
            return FacadeManager(value, self._runner)
        return value

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._resolve(attribute(*args, **kwargs))

        return call


class FacadeManager(_Facade):
    """An AsyncCheckpointManager with the sync manager's shapes."""

    def __len__(self) -> int:
        count: int = self._runner.run(self._target.count())
        return count

    def __iter__(self) -> Iterator[Checkpoint]:
        return iter(self._runner.run(_collect(aiter(self._target))))

    def get_all(self) -> list[Checkpoint]:
        return list(self)


class FacadeStore(_Facade):
    """An open AsyncCheckpointStore with the sync store's shapes; owns its event loop."""

    def close(self) -> None:
        try:
            self._runner.run(self._target.close())
        finally:
            self._runner.close()

    def __enter__(self) -> FacadeStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_facade_store(url: str, **options: Any) -> FacadeStore:
    """Open an AsyncCheckpointStore on a loop of its own, behind the sync facade."""
    runner = asyncio.Runner()
    try:
        store = runner.run(AsyncCheckpointStore.open(url, **options))
    except BaseException:
        runner.close()
        raise
    return FacadeStore(store, runner)


# The store factories a test can be parametrized over: the sync API and the asyncio one.
STORE_FLAVOURS: dict[str, Callable[[str], Any]] = {
    "sync": CheckpointStore,
    "async": open_facade_store,
}
