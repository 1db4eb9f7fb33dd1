"""The composition root: the durable store, the in-memory state rebuilt from it, the journal and
the feed service, wired in one place (`phoenix serve`, the local stack, tests and benchmarks)."""

from __future__ import annotations

import logging
import time

from orchestrator.journal import LocalJournal
from orchestrator.metrics import Metrics
from orchestrator.service import FeedService
from orchestrator.settings import OrchestratorSettings
from orchestrator.state.sqlite_store import SqliteStore
from orchestrator.state.world_state import load_state, world_dataset
from phoenix.world.io import load_world

log = logging.getLogger(__name__)


def open_store(settings: OrchestratorSettings) -> SqliteStore:
    """The data directory's store; an empty one first gets `settings.world` when given (a
    store that holds data keeps it: the world is not imported twice)."""
    store = SqliteStore.in_dir(settings.data)
    try:
        if store.is_empty() and settings.world is not None:
            world = load_world(settings.world)
            started = time.perf_counter()
            store.import_dataset(world_dataset(world))
            log.info(
                "imported the world %s into %s in %.1f s",
                settings.world, store.path, time.perf_counter() - started,
            )  # fmt: skip
        elif settings.world is not None:
            log.info("%s holds data already: --world %s not imported", store.path, settings.world)
        elif store.is_empty():
            log.warning("%s is empty and no world was given: no users yet", store.path)
    except BaseException:
        store.close()
        raise
    return store


def build_service(
    settings: OrchestratorSettings, *, metrics: Metrics | None = None, progress: bool = False
) -> FeedService:
    """The feed service over the data directory of `settings` (see `open_store`), its memory
    rebuilt from the store, its writes journaled into the store."""
    store = open_store(settings)
    try:
        started = time.perf_counter()
        dataset, extras = store.load()
        state = load_state(dataset, extras, max_history=settings.max_history, progress=progress)
        log.info(
            "state rebuilt from %s: %d users, %d posts in %.1f s",
            store.path, len(state.viewers), len(state.posts), time.perf_counter() - started,
        )  # fmt: skip
        return FeedService(
            settings,
            state,
            lambda applier: LocalJournal(store, applier),
            metrics=metrics,
            on_stop=store.close,
        )
    except BaseException:
        store.close()
        raise
