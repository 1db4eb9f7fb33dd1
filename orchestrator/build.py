"""The composition root: the durable store, the in-memory state rebuilt from it, the journal and
the feed service, wired in one place (`phoenix serve`, the local stack, tests and benchmarks)."""

from __future__ import annotations

import asyncio
import logging
import time

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from orchestrator.journal import LocalJournal
from orchestrator.metrics import Metrics
from orchestrator.service import FeedService
from orchestrator.settings import OrchestratorSettings
from orchestrator.state.redis_journal import StreamLog
from orchestrator.state.replication import Replication, bootstrap
from orchestrator.state.sqlite_store import SqliteStore
from orchestrator.state.world_state import load_state, world_dataset
from phoenix.errors import ReplicationError
from phoenix.snowflake import WORKER_BITS, SnowflakeIds
from phoenix.world.io import load_world

log = logging.getLogger(__name__)


def open_store(settings: OrchestratorSettings) -> SqliteStore:
    """The data directory's store; an empty one first gets `settings.world` when given (a
    store that holds data keeps it: the world is not imported twice). A replica
    (`settings.redis_url`) gets its data from the shared log instead (`join_shared_log`)."""
    store = SqliteStore.in_dir(settings.data)
    try:
        if settings.redis_url is not None:
            join_shared_log(settings, store)
        elif store.is_empty() and settings.world is not None:
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


def join_shared_log(settings: OrchestratorSettings, store: SqliteStore) -> None:
    """A replica's store before its first start: the world, when given, is offered to the
    shared log (published only into an empty stream), and the log's dataset is imported; a
    store that has a position already resumes from it. Without a world and with an empty
    stream it waits until another replica or `phoenix load --redis` publishes one."""
    assert settings.redis_url is not None
    dataset = None
    if store.position() is None and settings.world is not None:
        dataset = world_dataset(load_world(settings.world))

    async def run() -> None:
        shared = StreamLog.connect(settings.redis_url, settings.redis_stream)
        try:
            await bootstrap(shared, store, dataset)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise ReplicationError(f"--redis {settings.redis_url}: {exc}") from exc
        finally:
            await shared.close()

    asyncio.run(run())


async def _worker_number(settings: OrchestratorSettings) -> int:
    """This replica's number among those sharing the log (the low bits of its post ids)."""
    assert settings.redis_url is not None
    shared = StreamLog.connect(settings.redis_url, settings.redis_stream)
    try:
        return await shared.worker_number(WORKER_BITS)
    except (RedisConnectionError, RedisTimeoutError) as exc:
        raise ReplicationError(f"--redis {settings.redis_url}: {exc}") from exc
    finally:
        await shared.close()


def build_service(
    settings: OrchestratorSettings, *, metrics: Metrics | None = None, progress: bool = False
) -> FeedService:
    """The feed service over the data directory of `settings` (see `open_store`), its memory
    rebuilt from the store, its writes journaled into the store, or with `settings.redis_url`
    into the log shared with the other replicas (each applies it to its own store)."""
    store = open_store(settings)
    try:
        started = time.perf_counter()
        dataset, extras = store.load()
        state = load_state(dataset, extras, max_history=settings.max_history, progress=progress)
        log.info(
            "state rebuilt from %s: %d users, %d posts in %.1f s",
            store.path, len(state.viewers), len(state.posts), time.perf_counter() - started,
        )  # fmt: skip
        if settings.redis_url is None:
            return FeedService(
                settings,
                state,
                lambda applier: LocalJournal(store, applier),
                metrics=metrics,
                on_stop=store.close,
            )
        worker = asyncio.run(_worker_number(settings))
        log.info("replica worker %d on %s (stream %r)", worker, settings.redis_url,
                 settings.redis_stream)  # fmt: skip
        replication = Replication(
            StreamLog.connect(settings.redis_url, settings.redis_stream), store
        )
        return FeedService(
            settings,
            state,
            replication.journal,
            metrics=metrics,
            on_stop=store.close,
            replication=replication,
            ids=SnowflakeIds(worker),
        )
    except BaseException:
        store.close()
        raise
