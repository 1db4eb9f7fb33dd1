"""The embedded journal: events made durable in the SQLite store, then applied to memory."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from orchestrator.applier import Applier
from orchestrator.state.events import Event
from orchestrator.state.sqlite_store import SqliteStore


class LocalJournal:
    """`events.Journal` for one replica on its own data directory.

    Records one batch at a time: the store's commit (fsync'd, off the event loop) and then the
    in-memory apply, so memory changes in the order the store holds the events.
    """

    def __init__(self, store: SqliteStore, applier: Applier) -> None:
        self.store = store
        self.applier = applier
        self._lock = asyncio.Lock()

    async def record(self, events: Sequence[Event]) -> None:
        # A client that goes away mid-write must not leave the store ahead of memory.
        await asyncio.shield(self._record(events))

    async def _record(self, events: Sequence[Event]) -> None:
        async with self._lock:
            await asyncio.to_thread(self.store.append, events)
            await self.applier.apply(events)
