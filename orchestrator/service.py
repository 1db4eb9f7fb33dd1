"""The feed service: the parts `orchestrator.build` wires (stores, Thunder, the index keeper, the
Triton client, the feed pipeline, the writes) under one lifecycle, and the feed read path.

Writes go through `writes` (`orchestrator.writes`: the rules, then the journal) and reach memory
through the applier (`orchestrator.applier`), which tells the index keeper
(`orchestrator.index_keeper`) of each post to embed into, or drop from, the post index.

The service starts even when Triton is not there: it answers degraded feeds while a background task
keeps trying; once Triton answers the keeper builds the post index and feeds are full. Each feed
takes the keeper's current model set at its start and runs on it to the end (`FeedQuery.models`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from orchestrator.index_keeper import IndexKeeper
from orchestrator.metrics import Metrics
from orchestrator.pipeline.candidate import FeedQuery
from orchestrator.pipeline.runner import FeedPipeline, FeedResult
from orchestrator.settings import OrchestratorSettings
from orchestrator.state.posts import InMemoryPostStore
from orchestrator.state.viewers import InMemoryViewerStore
from orchestrator.thunder import Thunder
from orchestrator.triton_client import PhoenixTriton, recorded_calls
from orchestrator.writes import Clock, Writes
from phoenix.errors import NotFound

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
        *,
        viewers: InMemoryViewerStore,
        posts: InMemoryPostStore,
        clock: Clock,
        thunder: Thunder,
        triton: PhoenixTriton,
        keeper: IndexKeeper,
        pipeline: FeedPipeline,
        writes: Writes,
        metrics: Metrics,
        replication: Replication | None = None,
        on_stop: Sequence[Callable[[], None]] = (),
    ) -> None:
        """The service over parts wired by `orchestrator.build`; `on_stop` releases what they
        hold (the store, the search threads), in order. With `replication` the service runs as
        one of several replicas."""
        self.settings = settings
        self.viewers = viewers
        self.posts = posts
        self.clock = clock
        self.thunder = thunder
        self.triton = triton
        self.keeper = keeper
        self.pipeline = pipeline
        self.writes = writes
        self.metrics = metrics
        self.replication = replication
        self._on_stop = tuple(on_stop)
        self._expired_at_ms = clock.now_ms()
        self._maintenance: asyncio.Task[None] | None = None

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Catch up with the shared log (a replica), try Triton once, then keep Thunder and the
        index fresh (and Triton retried) in the background."""
        if self.replication is not None:
            await self.replication.start()
        await self.maintain_once()
        self._maintenance = asyncio.create_task(self._maintain(), name="phoenix-maintenance")

    async def stop(self) -> None:
        if self.replication is not None:
            await self.replication.stop()
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
        await self.triton.close()
        for release in self._on_stop:
            release()

    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reconnect_s)
            try:
                await self.maintain_once()
            except Exception:  # keep maintaining whatever one round hit
                log.exception("maintenance round failed")

    async def maintain_once(self) -> None:
        """One maintenance round: the retention window applied (not every round: Thunder's
        expire rebuilds its layout), then the index keeper's round."""
        now = self.clock.now_ms()
        if now - self._expired_at_ms >= self.settings.expire_interval_s * 1000:
            self._expired_at_ms = now
            expired = self.thunder.expire(now) + self.keeper.expire(now)
            if expired:
                log.info("expired %d posts past the retention window", expired)
        await self.keeper.refresh(now)
        self.metrics.thunder_size.set(len(self.thunder))

    # ---------------------------------------------------------------- reads

    async def ready(self) -> dict[str, bool]:
        """Readiness per dependency: Triton answering and the post index built (and, for a
        replica, the shared log's consumer running and caught up)."""
        checks = {"triton": await self.triton.is_ready(), "index": self.keeper.current is not None}
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
            models=self.keeper.current,  # one set for the whole feed
        )
        with recorded_calls() as calls:
            result = await self.pipeline.run(query)
        versions: dict[str, set[str]] = {}
        for model, version in calls:
            versions.setdefault(model, set()).add(version or "latest")
        result.model_versions = {m: ",".join(sorted(v)) for m, v in sorted(versions.items())}
        if query.models is not None:
            result.model_versions["post_index"] = query.models.version
        return result
