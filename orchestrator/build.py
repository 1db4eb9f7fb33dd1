"""The composition root: the durable store, the in-memory state rebuilt from it, Thunder, the one
Triton client, the index keeper, the feed pipeline, the applier, the journal and the writes, wired
in one place into the feed service (`phoenix serve`, the local stack, tests and benchmarks)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from orchestrator.applier import Applier
from orchestrator.circuit import CircuitBreaker
from orchestrator.index_keeper import IndexKeeper
from orchestrator.journal import LocalJournal
from orchestrator.metrics import Metrics
from orchestrator.pipeline.budget import ScoringBudget
from orchestrator.pipeline.features import ModelFeatures
from orchestrator.pipeline.filters import Filter, default_filters
from orchestrator.pipeline.hydrator import PostHydrator
from orchestrator.pipeline.runner import FeedPipeline
from orchestrator.pipeline.scorer import PhoenixScorer
from orchestrator.pipeline.sources import RetrievalSource, ThunderSource
from orchestrator.retrieval.threads import search_executor
from orchestrator.service import FeedService
from orchestrator.settings import OrchestratorSettings
from orchestrator.state.events import Journal
from orchestrator.state.redis_journal import StreamLog
from orchestrator.state.replication import Replication, bootstrap
from orchestrator.state.sqlite_store import SqliteStore
from orchestrator.state.world_state import WorldState, load_state, world_dataset
from orchestrator.thunder import Thunder
from orchestrator.triton_client import PhoenixTriton
from orchestrator.writes import Clock, Writes
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
        where = f"--redis {settings.redis_url}"
        async with StreamLog.opened(
            settings.redis_url, settings.redis_stream, where=where
        ) as shared:
            await bootstrap(shared, store, dataset)

    asyncio.run(run())


async def _worker_number(settings: OrchestratorSettings) -> int:
    """This replica's number among those sharing the log (the low bits of its post ids)."""
    assert settings.redis_url is not None
    where = f"--redis {settings.redis_url}"
    async with StreamLog.opened(settings.redis_url, settings.redis_stream, where=where) as shared:
        return await shared.worker_number(WORKER_BITS)


def build_service(
    settings: OrchestratorSettings,
    *,
    metrics: Metrics | None = None,
    progress: bool = False,
    triton: PhoenixTriton | None = None,
) -> FeedService:
    """The feed service over the data directory of `settings` (see `open_store`), its memory
    rebuilt from the store, its writes journaled into the store, or with `settings.redis_url`
    into the log shared with the other replicas (each applies it to its own store). `triton`
    replaces the client of `settings.triton_url` (a fake, in tests and benchmarks)."""
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
            return compose(
                settings,
                state,
                lambda applier: LocalJournal(store, applier),
                metrics=metrics,
                triton=triton,
                on_stop=store.close,
            )
        worker = asyncio.run(_worker_number(settings))
        log.info("replica worker %d on %s (stream %r)", worker, settings.redis_url,
                 settings.redis_stream)  # fmt: skip
        replication = Replication(
            StreamLog.connect(settings.redis_url, settings.redis_stream), store
        )
        return compose(
            settings,
            state,
            replication.journal,
            metrics=metrics,
            triton=triton,
            on_stop=store.close,
            replication=replication,
            ids=SnowflakeIds(worker),
        )
    except BaseException:
        store.close()
        raise


def compose(
    settings: OrchestratorSettings,
    state: WorldState,
    journal: Callable[[Applier], Journal],
    *,
    metrics: Metrics | None = None,
    triton: PhoenixTriton | None = None,
    on_stop: Callable[[], None] | None = None,
    replication: Replication | None = None,
    ids: SnowflakeIds | None = None,
) -> FeedService:
    """The service's parts over the in-memory `state`: `journal` builds the journal the writes
    go through from the applier; `on_stop` releases what the journal holds. With `replication`
    the service runs as one of several replicas; `ids` makes its post ids (a worker number of
    its own)."""
    metrics = metrics or Metrics()
    clock = Clock(state.now_ms)
    thunder = Thunder(settings.thunder)
    thunder.ingest_many(list(state.posts))
    thunder.expire(clock.now_ms())
    if triton is None:
        triton = PhoenixTriton(
            settings.triton_url,
            timeout_s=settings.triton_timeout_s,
            metrics=metrics,
            breaker=CircuitBreaker(
                failures=settings.circuit_failures, open_s=settings.circuit_open_s
            ),
        )
    keeper = IndexKeeper(settings, state.posts, triton, metrics)
    applier = Applier(state.viewers, state.posts, thunder, keeper)
    writes = Writes(state.viewers, state.posts, clock, journal(applier), ids)
    executor = search_executor(settings.ann_threads)
    features = ModelFeatures(state.posts)
    # With a scoring budget the ranker sees at most that many candidates, the newest in-network
    # ones first: Thunder need not build more (twice, for what filters drop).
    budget = settings.scoring_budget
    pipeline = FeedPipeline(
        sources=(
            RetrievalSource(features, settings.retrieval_k, executor),
            ThunderSource(
                thunder, None if budget is None else min(2 * budget, settings.thunder.max_results)
            ),
        ),
        hydrator=PostHydrator(state.posts, state.viewers),
        filters=feed_filters(settings),
        scorer=PhoenixScorer(features),
        ranking=settings.ranking,
        metrics=metrics,
    )
    return FeedService(
        settings,
        viewers=state.viewers,
        posts=state.posts,
        clock=clock,
        thunder=thunder,
        triton=triton,
        keeper=keeper,
        pipeline=pipeline,
        writes=writes,
        metrics=metrics,
        replication=replication,
        on_stop=(
            lambda: executor.shutdown(wait=False),
            *(() if on_stop is None else (on_stop,)),
        ),
    )


def feed_filters(settings: OrchestratorSettings) -> tuple[Filter, ...]:
    """docs/DESIGN.md §7's filters, then the scoring budget when one is set."""
    filters = default_filters(int(settings.retention_hours * 3_600_000))
    if settings.scoring_budget is not None:
        filters = (*filters, ScoringBudget(settings.scoring_budget))
    return filters
