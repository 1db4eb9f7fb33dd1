"""The feed service: the stores, Thunder, the post index and the Triton client wired into the
pipeline, and the writes that keep them in step (posts, deletes, engagements, the social graph).

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
import itertools
import logging
import threading
import time
from dataclasses import dataclass

import numpy as np

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
from orchestrator.state.posts import NUM_COUNTS, QUOTES, REPLIES, REPOSTS, Post, engagement_counts
from orchestrator.state.viewers import Engagement
from orchestrator.state.world_state import load_world_state
from orchestrator.thunder import Thunder
from orchestrator.triton_client import PhoenixTriton, ServedModels, recorded_calls
from phoenix.errors import Conflict, NotFound, TritonUnavailable
from phoenix.serving import CANDIDATE_TOWER
from phoenix.snowflake import SEQUENCE_BITS, snowflake_id
from phoenix.world.io import load_world
from phoenix.world.schema import ORIGINAL, REPLY, REPOST

log = logging.getLogger(__name__)


class Clock:
    """The service's time: the world's "now" at start, advancing with the wall clock."""

    def __init__(self, start_ms: int) -> None:
        self._start_ms = start_ms
        self._t0 = time.monotonic()

    def now_ms(self) -> int:
        return self._start_ms + int((time.monotonic() - self._t0) * 1000)


@dataclass(frozen=True)
class NewPost:
    author_id: int
    text: str = ""
    parent_id: int = 0
    reposted_id: int = 0
    is_video: bool = False
    video_duration_s: float = 0.0
    quoted_id: int = 0


class FeedService:
    def __init__(self, settings: OrchestratorSettings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self._search_executor = search_executor(settings.ann_threads)
        world = load_world(settings.world)
        state = load_world_state(world, max_history=settings.max_history)
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
        self._sequence = itertools.count()
        self._write_lock = threading.Lock()
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
        """Try Triton once, then keep the index fresh (and Triton retried) in the background."""
        await self._refresh()
        self._maintenance = asyncio.create_task(self._maintain(), name="phoenix-maintenance")

    async def stop(self) -> None:
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
        await self.triton.close()
        self._search_executor.shutdown(wait=False)

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
        """Readiness per dependency: Triton answering and the post index built."""
        return {"triton": await self.triton.is_ready(), "index": self.index is not None}

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

    # ---------------------------------------------------------------- writes

    async def create_post(self, new: NewPost) -> Post:
        """Store a post (snowflake id from the service clock), stream it into Thunder and embed it
        into the index (later, if Triton is down)."""
        self._require_user("author_id", new.author_id)
        kind, conversation, reposted_author = ORIGINAL, 0, 0
        if new.parent_id and new.reposted_id:
            raise Conflict("a post is a reply (parent_id) or a repost (reposted_id), not both")
        is_video, duration = new.is_video, new.video_duration_s
        if new.parent_id:
            parent = self._require_post("parent_id", new.parent_id)
            kind, conversation = REPLY, parent.thread_id
        elif new.reposted_id:
            original = self._require_post("reposted_id", new.reposted_id)
            if original.is_repost:
                raise Conflict("reposted_id: a repost of a repost; repost the original instead")
            kind = REPOST
            is_video, duration = original.is_video, original.video_duration_s
            reposted_author = original.author_id
        if new.quoted_id:
            self._require_post("quoted_id", new.quoted_id)
        with self._write_lock:
            post_id = int(
                snowflake_id(self.clock.now_ms(), next(self._sequence) & ((1 << SEQUENCE_BITS) - 1))
            )
        post = Post(
            post_id=post_id,
            author_id=new.author_id,
            kind=kind,
            parent_id=new.parent_id,
            reposted_id=new.reposted_id,
            conversation_id=conversation or post_id,
            is_video=is_video,
            video_duration_s=duration if is_video else 0.0,
            text=new.text,
            reposted_author_id=reposted_author,
            quoted_id=new.quoted_id,
        )
        self.posts.add(post)
        for target, column in (
            (post.parent_id, REPLIES),
            (post.reposted_id, REPOSTS),
            (post.quoted_id, QUOTES),
        ):
            if target:  # the post it answers, reposts or quotes gains one
                delta = np.zeros(NUM_COUNTS, np.int64)
                delta[column] = 1
                self.posts.add_counts(target, delta)
        self.thunder.ingest(post)
        if self._switch_journal is not None and not post.is_repost:
            self._switch_journal[0].append(post)
        if not post.is_repost:
            if self.index is None:
                self._pending.append(post)
            else:
                try:
                    await self.index.add([post])
                except TritonUnavailable:
                    self._pending.append(post)
        return post

    def delete_post(self, post_id: int) -> Post:
        post = self.posts.delete(post_id)
        self.thunder.delete(post_id)
        if self.index is not None:
            self.index.remove([post_id])
        if self._switch_journal is not None:
            self._switch_journal[1].append(post_id)
        if post is None:
            raise NotFound("post_id", post_id)
        return post

    def engage(
        self,
        viewer_id: int,
        post_id: int,
        actions: tuple[bool, ...],
        *,
        dwell_s: float = 0.0,
        surface: int = 0,
    ) -> Engagement:
        """Record an impression with the viewer's actions: the viewer's newest history entry
        (served now) and one more view, plus one per counted action, on the post's counts."""
        self._require_user("viewer_id", viewer_id)
        post = self._require_post("post_id", post_id)
        engagement = Engagement(
            post_id=post_id,
            author_id=post.author_id,
            actions=actions,
            surface=surface,
            served_ms=self.clock.now_ms(),
            dwell_s=dwell_s,
        )
        self.viewers.record_engagement(viewer_id, engagement)
        self.posts.add_counts(post_id, engagement_counts(actions))
        return engagement

    def relate(self, relation: str, viewer_id: int, target_id: int, *, undo: bool = False) -> bool:
        """follow / block / mute (or their undo); whether anything changed."""
        self._require_user("viewer_id", viewer_id)
        self._require_user("target_id", target_id)
        if viewer_id == target_id:
            raise Conflict(f"target_id: a viewer cannot {relation} themselves")
        method = {
            ("follow", False): self.viewers.follow,
            ("follow", True): self.viewers.unfollow,
            ("block", False): self.viewers.block,
            ("block", True): self.viewers.unblock,
            ("mute", False): self.viewers.mute,
            ("mute", True): self.viewers.unmute,
        }[relation, undo]
        return method(viewer_id, target_id)

    def muted_keyword(self, viewer_id: int, keyword: str, *, remove: bool = False) -> bool:
        self._require_user("viewer_id", viewer_id)
        if remove:
            return self.viewers.remove_muted_keyword(viewer_id, keyword)
        return self.viewers.add_muted_keyword(viewer_id, keyword)

    def _require_user(self, field: str, user_id: int) -> None:
        if not self.viewers.exists(user_id):
            raise NotFound(field, user_id)

    def _require_post(self, field: str, post_id: int) -> Post:
        post = self.posts.get(post_id)
        if post is None:
            raise NotFound(field, post_id)
        return post
