"""The feed service: the stores, Thunder, the post index and the Triton client wired into the
pipeline. Writes go through `writes` (`orchestrator.writes`: the rules, then the journal) and
reach memory through `applier` (`orchestrator.applier`), which tells the service of each post
to embed into, or drop from, the post index.

The service starts even when Triton is not there: it answers degraded feeds while a background task
keeps trying to connect; once Triton answers it builds the post index and serves full feeds.

It serves one model set (the three models of one export, one version number) at a time. When a
newer complete set is ready in Triton, the background task embeds the posts with its candidate
tower into a new index (posts created meanwhile too) and then switches user tower, index and
ranker together, in one step: a feed runs entirely on the set it started with.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Protocol

from orchestrator.applier import Applier
from orchestrator.circuit import CircuitBreaker
from orchestrator.metrics import Metrics
from orchestrator.pipeline.budget import ScoringBudget
from orchestrator.pipeline.candidate import FeedQuery
from orchestrator.pipeline.features import ModelFeatures
from orchestrator.pipeline.filters import Filter, default_filters
from orchestrator.pipeline.hydrator import PostHydrator
from orchestrator.pipeline.runner import FeedPipeline, FeedResult
from orchestrator.pipeline.scorer import PhoenixScorer
from orchestrator.pipeline.sources import RetrievalSource, ThunderSource
from orchestrator.post_index import PostIndex
from orchestrator.retrieval import make_index
from orchestrator.retrieval.threads import search_executor
from orchestrator.settings import OrchestratorSettings
from orchestrator.state.events import Journal
from orchestrator.state.posts import Post
from orchestrator.state.world_state import WorldState
from orchestrator.thunder import Thunder
from orchestrator.triton_client import PhoenixTriton, ServedModels, recorded_calls
from orchestrator.writes import Clock, Writes
from phoenix.errors import NotFound, TritonUnavailable
from phoenix.serving import CANDIDATE_TOWER
from phoenix.snowflake import SnowflakeIds

log = logging.getLogger(__name__)


class Replication(Protocol):
    """This replica's part in a log shared with other replicas (`orchestrator.state.replication`):
    brought up to date and started before the service serves, stopped with it."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def ready(self) -> bool: ...


class FeedService:
    def __init__(
        self,
        settings: OrchestratorSettings,
        state: WorldState,
        journal: Callable[[Applier], Journal],
        *,
        metrics: Metrics | None = None,
        on_stop: Callable[[], None] | None = None,
        replication: Replication | None = None,
        ids: SnowflakeIds | None = None,
    ) -> None:
        """The service over the in-memory `state`; `journal` builds the journal the writes go
        through from the applier of this service's parts (`orchestrator.build` wires them);
        `on_stop` releases what the journal holds. With `replication` the service runs as one
        of several replicas; `ids` makes its post ids (a worker number of its own)."""
        self.replication = replication
        self.settings = settings
        self.metrics = metrics or Metrics()
        self._search_executor = search_executor(settings.ann_threads)
        self._on_stop = on_stop
        self.viewers = state.viewers
        self.posts = state.posts
        self.clock = Clock(state.now_ms)
        self.thunder = Thunder(settings.thunder)
        now = self.clock.now_ms()
        self.thunder.ingest_many(list(self.posts))
        self.thunder.expire(now)
        self._expired_at_ms = now
        self.triton = PhoenixTriton(
            settings.triton_url,
            timeout_s=settings.triton_timeout_s,
            metrics=self.metrics,
            breaker=CircuitBreaker(
                failures=settings.circuit_failures, open_s=settings.circuit_open_s
            ),
        )
        self.index: PostIndex | None = None
        self._served: ServedModels | None = None  # the model set of index and pipeline
        self._pending: list[Post] = []  # created while the index could not embed them
        # While a new set's index is built: the posts created and deleted meanwhile.
        self._switch_journal: tuple[list[Post], list[int]] | None = None
        self.applier = Applier(self.viewers, self.posts, self.thunder, self)
        self.journal = journal(self.applier)
        self.writes = Writes(self.viewers, self.posts, self.clock, self.journal, ids)
        self._pipeline: FeedPipeline | None = None
        self._maintenance: asyncio.Task[None] | None = None
        # With a scoring budget the ranker sees at most that many candidates, the newest
        # in-network ones first: Thunder need not build more (twice, for what filters drop).
        budget = settings.scoring_budget
        self._thunder_source = ThunderSource(
            self.thunder,
            None if budget is None else min(2 * budget, settings.thunder.max_results),
        )
        self._hydrator = PostHydrator(self.posts, self.viewers)
        self._features = ModelFeatures(self.posts)
        # Until Triton first answers: Thunder's candidates, in recency order (the scorer fails).
        self._thunder_only = FeedPipeline(
            (self._thunder_source,), self._hydrator, self._filters(),
            PhoenixScorer(self.triton, self._features), settings.ranking, self.metrics,
        )  # fmt: skip

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Catch up with the shared log (a replica), try Triton once, then keep the index fresh
        (and Triton retried) in the background."""
        if self.replication is not None:
            await self.replication.start()
        await self._refresh()
        self._maintenance = asyncio.create_task(self._maintain(), name="phoenix-maintenance")

    async def stop(self) -> None:
        if self.replication is not None:
            await self.replication.stop()
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
        await self.triton.close()
        self._search_executor.shutdown(wait=False)
        if self._on_stop is not None:
            self._on_stop()

    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reconnect_s)
            try:
                await self._refresh()
            except Exception:  # keep maintaining whatever one round hit
                log.exception("maintenance round failed")

    async def _refresh(self) -> None:
        now = self.clock.now_ms()
        expired = 0
        expire = now - self._expired_at_ms >= self.settings.expire_interval_s * 1000
        if expire:  # Thunder's expire rebuilds its layout: not every round
            self._expired_at_ms = now
            expired += self.thunder.expire(now)
        if self.index is None:
            await self._build_index(now)
        else:
            if expire:
                expired += self.index.expire(now)
            await self._flush_pending()
            await self._switch_to_newer_set(now)
        if expired:
            log.info("expired %d posts past the retention window", expired)
        self.metrics.thunder_size.set(len(self.thunder))
        if self.index is not None:
            self.metrics.index_size.set(len(self.index))

    async def _build_index(self, now: int) -> None:
        try:
            served = await self.triton.connect()
        except TritonUnavailable as exc:
            log.warning("Triton not available yet (%s); serving degraded feeds", exc)
            return
        models = self.triton.pinned(served)
        try:
            index = await self._new_index(models, now)
        except TritonUnavailable as exc:
            log.warning("index build interrupted (%s); retrying", exc)
            return
        self._install(models, index)
        await self._flush_pending()

    async def _new_index(self, models: PhoenixTriton, now: int) -> PostIndex:
        """Every indexable post embedded by the candidate tower of `models`."""
        index = PostIndex(
            make_index(
                self.settings.ann_backend, dim=models.served.config_of(CANDIDATE_TOWER).emb_dim
            ),
            models,
            retention_hours=self.settings.retention_hours,
        )
        posts = [p for p in self.posts if index.indexable(p, now)]
        started = time.perf_counter()
        await index.add(posts, progress=True)
        log.info(
            "post index for model set %s: %d posts (%s) in %.1f s",
            models.served.version or "latest", len(index), index.index.name,
            time.perf_counter() - started,
        )  # fmt: skip
        return index

    def _install(self, models: PhoenixTriton, index: PostIndex) -> None:
        """Serve `models` with `index` from the next feed on (one step: no await in here)."""
        self.index = index
        self._served = models.served
        self._pipeline = FeedPipeline(
            sources=(
                RetrievalSource(
                    models, index, self._features, self.settings.retrieval_k,
                    self._search_executor,
                ),
                self._thunder_source,
            ),
            hydrator=self._hydrator,
            filters=self._filters(),
            scorer=PhoenixScorer(models, self._features),
            ranking=self.settings.ranking,
            metrics=self.metrics,
            embeddings=index.embeddings,
        )  # fmt: skip

    async def _switch_to_newer_set(self, now: int) -> None:
        """When Triton has a newer complete model set ready: build its index, then switch."""
        try:
            newest = await self.triton.newest_set()
        except TritonUnavailable:
            return  # feeds degrade meanwhile; the next round asks again
        if self._served is None or newest.version == self._served.version:
            return
        log.info(
            "model set %s ready in Triton (serving %s): building its post index",
            newest.version, self._served.version or "latest",
        )  # fmt: skip
        models = self.triton.pinned(newest)
        self._switch_journal = ([], [])
        try:
            index = await self._new_index(models, now)
            created = self._switch_journal[0]
            while created:  # posts created while the index was built (more may come meanwhile)
                batch, created[:] = list(created), []
                await index.add([p for p in batch if not self.posts.is_deleted(p.post_id)])
        except TritonUnavailable as exc:
            log.warning("model set %s: index interrupted (%s); retrying", newest.version, exc)
            return
        finally:
            journal, self._switch_journal = self._switch_journal, None
        index.remove(journal[1])
        self._install(models, index)
        self.triton._served = newest  # unpinned calls (readiness aside) follow too
        log.info("switched to model set %s (user tower, post index, ranker)", newest.version)

    def _filters(self) -> tuple[Filter, ...]:
        """docs/DESIGN.md §7's filters, then the scoring budget when one is set."""
        filters = default_filters(int(self.settings.retention_hours * 3_600_000))
        if self.settings.scoring_budget is not None:
            filters = (*filters, ScoringBudget(self.settings.scoring_budget))
        return filters

    async def _flush_pending(self) -> None:
        if not self._pending or self.index is None:
            return
        pending, self._pending = self._pending, []
        live = [p for p in pending if not self.posts.is_deleted(p.post_id)]
        try:
            await self.index.add(live)
        except TritonUnavailable:
            self._pending = live + self._pending

    # ---------------------------------------------------------------- reads

    async def ready(self) -> dict[str, bool]:
        """Readiness per dependency: Triton answering and the post index built (and, for a
        replica, the shared log's consumer running and caught up)."""
        checks = {"triton": await self.triton.is_ready(), "index": self.index is not None}
        if self.replication is not None:
            checks["replication"] = self.replication.ready()
        return checks

    async def feed(
        self,
        viewer_id: int,
        *,
        limit: int,
        seen_ids: frozenset[int] = frozenset(),
        served_ids: frozenset[int] = frozenset(),
        in_network_only: bool = False,
        video_only: bool = False,
        explain: bool = False,
    ) -> FeedResult:
        viewer = self.viewers.get(viewer_id)
        if viewer is None:
            raise NotFound("viewer_id", viewer_id)
        query = FeedQuery(
            viewer=viewer,
            now_ms=self.clock.now_ms(),
            limit=limit,
            seen_ids=seen_ids,
            served_ids=served_ids,
            in_network_only=in_network_only,
            video_only=video_only,
            explain=explain,
        )
        if self._pipeline is None:  # Triton never answered yet: Thunder only, degraded
            result = await self._thunder_only.run(query)
            result.degraded = True
            result.degraded_reason = "Triton has not answered since start"
            return result
        pipeline, served = self._pipeline, self._served  # one set for the whole feed
        with recorded_calls() as calls:
            result = await pipeline.run(query)
        versions: dict[str, set[str]] = {}
        for model, version in calls:
            versions.setdefault(model, set()).add(version or "latest")
        result.model_versions = {m: ",".join(sorted(v)) for m, v in sorted(versions.items())}
        if served is not None:
            result.model_versions["post_index"] = served.version or "latest"
        return result

    # ---------------------------------------------------------------- index maintenance
    # (`orchestrator.applier.PostIndexFeed`: the applier tells of posts stored and deleted)

    async def post_added(self, post: Post) -> None:
        """Embed a new post into the index now (later, when Triton is down or the index is not
        built); a repost is never indexed (its original is)."""
        if post.is_repost:
            return
        if self._switch_journal is not None:
            self._switch_journal[0].append(post)
        if self.index is None:
            self._pending.append(post)
            return
        try:
            await self.index.add([post])
        except TritonUnavailable:
            self._pending.append(post)

    def post_removed(self, post_id: int) -> None:
        if self.index is not None:
            self.index.remove([post_id])
        if self._switch_journal is not None:
            self._switch_journal[1].append(post_id)
