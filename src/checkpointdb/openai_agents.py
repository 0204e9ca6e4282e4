"""A session backend for the OpenAI Agents SDK: :class:`CheckpointDBSession`.

``Runner.run(agent, "hi", session=CheckpointDBSession("chat-42", "chat.db"))``
keeps the conversation in a checkpointdb store, so it survives a crash, a
restart or a deploy, and can be read with SQL. Needs the ``openai-agents``
extra: ``pip install "checkpointdb[openai-agents]"``.

Each conversation item is one checkpoint of the session ``session_id``: its
name is the item's ``type`` (``message`` for an item that has only a
``role``), its data is the item itself, stored as JSON text a person can
read (``SELECT data FROM checkpoint_view WHERE session_id = 'chat-42'``).
The session row stores a retention policy with compaction and the cap off,
so the store never deletes items from the middle of a transcript; the
optional ``max_items`` drops the oldest items instead.
"""

from __future__ import annotations

import os
from dataclasses import fields
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy.engine import URL

try:
    from agents.memory import SessionSettings
except ModuleNotFoundError as missing:
    if (missing.name or "").partition(".")[0] != "agents":
        raise
    raise ModuleNotFoundError(
        'checkpointdb.openai_agents needs the OpenAI Agents SDK: pip install "checkpointdb'
        '[openai-agents]"',
        name=missing.name,
    ) from missing

from .aio import AsyncCheckpointManager, AsyncCheckpointStore
from .errors import CheckpointDBError, InvalidDataError
from .manager import BatchEntry

if TYPE_CHECKING:
    from agents.items import TResponseInputItem

__all__ = ["CheckpointDBSession"]

# The checkpoint name of an item without a ``type``: the SDK's shorthand
# ``{"role": "user", "content": "..."}`` is a message.
ROLE_ONLY_NAME = "message"


def _settings(value: object) -> SessionSettings:
    if value is None:
        return SessionSettings()
    if isinstance(value, SessionSettings):
        return value
    if isinstance(value, dict):
        unknown = sorted(map(repr, set(value) - {f.name for f in fields(SessionSettings)}))
        if unknown:
            raise InvalidDataError(
                f"session_settings {value!r:.80} has unknown field(s) {', '.join(unknown)}"
            )
        try:
            return SessionSettings(**value)
        except (TypeError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
            # Pydantic explains on several lines; an error here is one line.
            errors = getattr(exc, "errors", None)
            reason = (
                "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors())
                if callable(errors)
                else str(exc)
            )
            raise InvalidDataError(f"session_settings {value!r} is not valid: {reason}") from None
    raise InvalidDataError(
        f"session_settings must be a SessionSettings, a dict or None, got {value!r}"
    )


def _item_name(item: object, index: int) -> str:
    """The checkpoint name of ``items[index]``, refusing what is not an item."""
    if type(item) is not dict:
        raise InvalidDataError(
            f"items[{index}] must be a dict (a TResponseInputItem), got "
            f"{type(item).__name__} {item!r:.80}"
        )
    kind = item.get("type", ROLE_ONLY_NAME)
    if type(kind) is not str or not kind:
        raise InvalidDataError(
            f"items[{index}]['type'] must be a non-empty string, got {kind!r:.80}"
        )
    return kind


class CheckpointDBSession:
    """An OpenAI Agents SDK ``Session`` whose items are checkpoints of one session.

    It implements the SDK's ``Session`` protocol (``get_items``,
    ``add_items``, ``pop_item``, ``clear_session``) as the SDK's own
    ``SQLiteSession`` behaves: ``get_items()`` returns the items oldest
    first, ``get_items(n)`` the newest ``n`` (oldest first; 0 gives ``[]``,
    a negative ``n`` every item), ``pop_item()`` removes and returns the
    newest (None when empty), and clearing an empty session does nothing.
    ``add_items`` writes all its items in one transaction, or none of them;
    concurrent calls on one session never interleave.

    Args:
        session_id: the checkpointdb session id (a non-empty printable string).
        store: an open :class:`~checkpointdb.AsyncCheckpointStore`, which the
            caller keeps and closes; or a database URL or SQLite path, which
            the session opens on first use and closes in :meth:`close` (or
            at the end of ``async with``).
        session_settings: the SDK's ``SessionSettings`` (or a dict of its
            fields); its ``limit`` applies when ``get_items`` gets none.
        max_items: keep at most this many items (an int >= 1): each
            ``add_items`` deletes the oldest beyond it in its transaction,
            the very first item too. None (the default) keeps every item.

    Raises:
        InvalidDataError: a bad ``session_id``, ``session_settings`` or ``max_items``.
        CheckpointDBError: ``store`` is neither an AsyncCheckpointStore nor a URL or path.
    """

    session_id: str
    session_settings: SessionSettings | None

    def __init__(
        self,
        session_id: str,
        store: AsyncCheckpointStore | str | os.PathLike[str] | URL,
        *,
        session_settings: SessionSettings | dict[str, Any] | None = None,
        max_items: int | None = None,
    ) -> None:
        if max_items is not None and (type(max_items) is not int or max_items < 1):
            raise InvalidDataError(f"max_items must be an int >= 1 or None, got {max_items!r}")
        if isinstance(store, AsyncCheckpointStore):
            self._owns_store = False
        elif isinstance(store, str | os.PathLike | URL):
            store = AsyncCheckpointStore(store)
            self._owns_store = True
        else:
            raise CheckpointDBError(
                "store must be an AsyncCheckpointStore or a database URL or path, got "
                f"{store!r:.80}"
            )
        self.store = store
        # Off: a transcript must never lose its middle to compaction or the cap.
        self._manager: AsyncCheckpointManager = store.manager(
            session_id, max_checkpoints=None, compress_after=None
        )
        self.session_id = session_id
        self.session_settings = _settings(session_settings)
        self.max_items = max_items

    def __repr__(self) -> str:
        return f"CheckpointDBSession({self.session_id!r}, store={self.store!r})"

    async def _ready(self) -> AsyncCheckpointManager:
        """The session's manager, once a store this session owns is open."""
        if self._owns_store:
            await self.store._open()
        self.store.context()  # a closed store says so before any other check
        return self._manager

    # -- the Session protocol ---------------------------------------------------

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The session's items, oldest first; with a limit, only the newest ``limit``.

        Args:
            limit: how many of the newest items to return (0: none; negative:
                all). None means ``session_settings.limit``, and if that is
                None too, every item.

        Raises:
            InvalidDataError: ``limit`` is not an int or None.
        """
        if limit is None and self.session_settings is not None:
            limit = self.session_settings.limit
        if limit is not None and type(limit) is not int:
            raise InvalidDataError(f"limit must be an int or None, got {limit!r}")
        manager = await self._ready()
        if limit == 0:
            return []
        if limit is None or limit < 0:
            # One query in one transaction: a consistent transcript, however long.
            found = [cp.data async for cp in manager.find(newest_first=False)]
        else:
            found = [cp.data for cp in await manager.get_recent(limit)]
        return cast("list[TResponseInputItem]", found)

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Append items, oldest first, in one transaction (with ``max_items``, the cap too).

        Raises:
            InvalidDataError: an item is not a dict, or holds something JSON
                cannot store exactly (NaN, a non-string key, a set...); the
                message names its index. Nothing was written.
        """
        entries: list[BatchEntry] = [
            (_item_name(item, index), cast("dict[str, Any]", item))
            for index, item in enumerate(items)
        ]
        manager = await self._ready()
        try:
            await manager.create_many(entries, keep_newest=self.max_items)
        except InvalidDataError as exc:
            # create_many names an item "entry N"; say which session refused it.
            raise type(exc)(f"session {self.session_id!r}: items not stored: {exc}") from None

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove the newest item and return it; None if the session has no items."""
        popped = await (await self._ready()).pop()
        return None if popped is None else cast("TResponseInputItem", popped.data)

    async def clear_session(self) -> None:
        """Delete every item of the session (nothing happens if it has none)."""
        await (await self._ready()).clear()

    # -- lifetime -----------------------------------------------------------------

    async def close(self) -> None:
        """Close the store if this session opened it; a store passed in stays open."""
        if self._owns_store:
            await self.store.close()

    async def __aenter__(self) -> CheckpointDBSession:
        await self._ready()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
