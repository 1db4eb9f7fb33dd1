"""The Phoenix ranker through Triton: one call per viewer with all surviving candidates."""

from __future__ import annotations

import numpy as np

from orchestrator.pipeline.candidate import Candidate, FeedQuery
from orchestrator.pipeline.features import FOR_YOU_SURFACE, query_features
from orchestrator.triton_client import PhoenixTriton
from phoenix.features import pack_candidates


class PhoenixScorer:
    """Sets `predictions` and `dwell_time_s` on every candidate. A repost is scored as the post it
    reposts, by that post's author, as X's Phoenix scorer does."""

    name = "ranker"

    def __init__(self, triton: PhoenixTriton) -> None:
        self.triton = triton

    async def score(self, query: FeedQuery, candidates: list[Candidate]) -> None:
        if not candidates:
            return
        hasher = self.triton.served.hasher
        n = len(candidates)
        post_ids = np.fromiter((c.original_post_id for c in candidates), np.int64, n)
        author_ids = np.fromiter((c.original_author_id for c in candidates), np.int64, n)
        features = pack_candidates(
            hasher, post_ids, author_ids, np.full(n, FOR_YOU_SURFACE, np.int64)
        )
        probs, dwell = await self.triton.rank(query_features(hasher, query), features)
        for c, p, d in zip(candidates, probs, dwell, strict=True):
            c.predictions = p
            c.dwell_time_s = float(d)
