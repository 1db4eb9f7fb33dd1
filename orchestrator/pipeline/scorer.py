"""The Phoenix ranker through Triton: one call per viewer with all surviving candidates."""

from __future__ import annotations

import numpy as np

from orchestrator.pipeline.candidate import Candidates, FeedQuery
from orchestrator.pipeline.features import candidate_features, query_features
from orchestrator.triton_client import PhoenixTriton
from phoenix.actions import NUM_ACTIONS


class PhoenixScorer:
    """Sets the batch's `predictions` [C, A] and `dwell_time_s` [C]."""

    name = "ranker"

    def __init__(self, triton: PhoenixTriton) -> None:
        self.triton = triton

    async def score(self, query: FeedQuery, candidates: Candidates) -> None:
        n = len(candidates)
        if n == 0:
            candidates.predictions = np.zeros((0, NUM_ACTIONS), np.float32)
            return
        hasher = self.triton.served.hasher
        probs, dwell = await self.triton.rank(
            query_features(hasher, query), candidate_features(hasher, candidates)
        )
        if len(probs) != n or len(dwell) != n:
            raise ValueError(f"the ranker answered {len(probs)} rows for {n} candidates")
        candidates.predictions = np.asarray(probs, np.float32)
        candidates.dwell_time_s = np.asarray(dwell, np.float64)
