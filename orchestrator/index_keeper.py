"""Index maintenance: the post index kept in step with the posts and with the models Triton
serves, and the current model set (`orchestrator.model_set.ModelSet`) feeds run on.

- Triton first answers: every indexable post is embedded by the candidate tower into a new index,
  and the set becomes current (until then there is none: feeds are degraded).
- A post stored or deleted (`orchestrator.applier` tells): embedded into, or dropped from, the
  current index; a post that cannot be embedded now (Triton down, no index yet) waits in
  `pending` for the next round.
- The retention window passes: old posts leave the index.
- A newer complete model set is ready in Triton: its candidate tower embeds the posts into a new
  index (posts created meanwhile too, deleted ones removed after), then user tower, index and
  ranker are switched together, in one assignment.
"""

from __future__ import annotations

import logging
import time

from orchestrator.metrics import Metrics
from orchestrator.model_set import ModelSet
from orchestrator.post_index import PostIndex
from orchestrator.retrieval import make_index
from orchestrator.settings import OrchestratorSettings
from orchestrator.state.posts import InMemoryPostStore, Post
from orchestrator.triton_client import PhoenixTriton
from phoenix.errors import TritonUnavailable
from phoenix.serving import CANDIDATE_TOWER

log = logging.getLogger(__name__)


class IndexKeeper:
    """Builds, updates, expires and replaces the post index; `current` is the model set a feed
    starting now runs on (None until Triton first answered and the first index is built)."""

    def __init__(
        self,
        settings: OrchestratorSettings,
        posts: InMemoryPostStore,
        triton: PhoenixTriton,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.posts = posts
        self.triton = triton  # the one client; each set gets a view pinned to its version
        self.metrics = metrics
        self.current: ModelSet | None = None
        self.pending: list[Post] = []  # created while the index could not embed them
        # While a new set's index is built: the posts created and deleted meanwhile.
        self._switch_journal: tuple[list[Post], list[int]] | None = None

    async def refresh(self, now_ms: int) -> None:
        """One maintenance round: build the first index once Triton answers; afterwards embed
        the pending posts and switch to a newer model set when Triton has one."""
        if self.current is None:
            await self._build_first(now_ms)
        else:
            await self._flush_pending()
            await self._switch_to_newer_set(now_ms)
        if self.current is not None:
            self.metrics.index_size.set(len(self.current.index))

    def expire(self, now_ms: int) -> int:
        """Drop posts past the retention window from the index; returns how many went."""
        return 0 if self.current is None else self.current.index.expire(now_ms)

    # ---------------------------------------------------------------- the applier's calls
    # (`orchestrator.applier.PostIndexFeed`: told of posts stored and deleted)

    async def post_added(self, post: Post) -> None:
        """Embed a new post into the index now (later, when Triton is down or the index is not
        built); a repost is never indexed (its original is)."""
        if post.is_repost:
            return
        if self._switch_journal is not None:
            self._switch_journal[0].append(post)
        current = self.current
        if current is None:
            self.pending.append(post)
            return
        try:
            await current.index.add([post])
        except TritonUnavailable:
            self.pending.append(post)

    def post_removed(self, post_id: int) -> None:
        if self.current is not None:
            self.current.index.remove([post_id])
        if self._switch_journal is not None:
            self._switch_journal[1].append(post_id)

    # ---------------------------------------------------------------- building and switching

    async def _build_first(self, now_ms: int) -> None:
        try:
            served = await self.triton.connect()
        except TritonUnavailable as exc:
            log.warning("Triton not available yet (%s); serving degraded feeds", exc)
            return
        models = self.triton.pinned(served)
        try:
            index = await self._new_index(models, now_ms)
        except TritonUnavailable as exc:
            log.warning("index build interrupted (%s); retrying", exc)
            return
        self.current = ModelSet(models, index)
        await self._flush_pending()

    async def _new_index(self, models: PhoenixTriton, now_ms: int) -> PostIndex:
        """Every indexable post embedded by the candidate tower of `models`."""
        index = PostIndex(
            make_index(
                self.settings.ann_backend, dim=models.served.config_of(CANDIDATE_TOWER).emb_dim
            ),
            models,
            retention_hours=self.settings.retention_hours,
        )
        posts = [p for p in self.posts if index.indexable(p, now_ms)]
        started = time.perf_counter()
        await index.add(posts, progress=True)
        log.info(
            "post index for model set %s: %d posts (%s) in %.1f s",
            models.served.version or "latest", len(index), index.index.name,
            time.perf_counter() - started,
        )  # fmt: skip
        return index

    async def _switch_to_newer_set(self, now_ms: int) -> None:
        """When Triton has a newer complete model set ready: build its index, then switch."""
        current = self.current
        try:
            newest = await self.triton.newest_set()
        except TritonUnavailable:
            return  # feeds degrade meanwhile; the next round asks again
        if current is None or newest.version == current.models.served.version:
            return
        log.info(
            "model set %s ready in Triton (serving %s): building its post index",
            newest.version, current.version,
        )  # fmt: skip
        models = self.triton.pinned(newest)
        self._switch_journal = ([], [])
        try:
            index = await self._new_index(models, now_ms)
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
        self.current = ModelSet(models, index)  # from the next feed on: no await before this
        self.triton._served = newest  # unpinned calls (readiness aside) follow too
        log.info("switched to model set %s (user tower, post index, ranker)", newest.version)

    async def _flush_pending(self) -> None:
        current = self.current
        if not self.pending or current is None:
            return
        pending, self.pending = self.pending, []
        live = [p for p in pending if not self.posts.is_deleted(p.post_id)]
        try:
            await current.index.add(live)
        except TritonUnavailable:
            self.pending = live + self.pending
