"""Candidate sources: Thunder (in-network) and Phoenix retrieval (out-of-network)."""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from typing import Protocol

from orchestrator.model_set import ModelSetNotReady
from orchestrator.pipeline.candidate import RETRIEVAL, THUNDER, Candidates, FeedQuery
from orchestrator.pipeline.features import ModelFeatures
from orchestrator.thunder import Thunder
from phoenix.serving import USER_TOWER


class Source(Protocol):
    name: str

    async def fetch(self, query: FeedQuery) -> Candidates: ...


class ThunderSource:
    """Recent posts of the accounts the viewer follows (their videos for a video-only query)."""

    name = THUNDER

    def __init__(self, thunder: Thunder, max_results: int | None = None) -> None:
        self.thunder = thunder
        self.max_results = max_results  # None: Thunder's own maximum (1,200)

    async def fetch(self, query: FeedQuery) -> Candidates:
        viewer = query.viewer
        limit = self.max_results
        if query.video_only and limit is not None:  # a video lookup returns at most 600
            limit = min(limit, self.thunder.settings.max_video_results)
        ids = self.thunder.lookup_ids(
            viewer.viewer_id,
            viewer.following_array,
            query.now_ms,
            exclude=query.seen_ids | query.served_ids,
            max_results=limit,
            video=query.video_only,
        )
        return Candidates.of(THUNDER, ids, in_network=True)


class RetrievalSource:
    """The viewer's user-tower embedding (Triton) matched against the post index, both of the
    feed's model set (`FeedQuery.models`); `ModelSetNotReady` while there is none yet."""

    name = RETRIEVAL

    def __init__(
        self, features: ModelFeatures, k: int = 500, executor: Executor | None = None
    ) -> None:
        self.features = features
        self.k = k
        self.executor = executor  # where searches run (None: asyncio's default executor)

    async def fetch(self, query: FeedQuery) -> Candidates:
        models = query.models
        if models is None:
            raise ModelSetNotReady()
        if query.in_network_only:
            return Candidates.of(RETRIEVAL, [], in_network=False)
        triton = models.models
        hasher = triton.served.hasher_of(USER_TOWER)
        embedding = await triton.embed_users(self.features.history(hasher, query.viewer))
        loop = asyncio.get_running_loop()
        ids, scores = await loop.run_in_executor(
            self.executor, models.index.search, embedding[0], self.k
        )
        return Candidates.of(RETRIEVAL, ids, in_network=False, retrieval_scores=scores)
