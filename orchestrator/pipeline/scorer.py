"""The Phoenix ranker through Triton: one call per viewer with all surviving candidates."""

from __future__ import annotations

import numpy as np

from orchestrator.pipeline.candidate import Candidates, FeedQuery
from orchestrator.pipeline.features import ModelFeatures
from orchestrator.triton_client import PhoenixTriton
from phoenix.actions import DWELL_COLUMN, NUM_ACTIONS, POST_UNEXPLORED_COLUMN, from_columns
from phoenix.serving import RANKER


class PhoenixScorer:
    """Sets the batch's `predictions` [C, A] (the named actions, `phoenix.actions.ACTIONS`
    order), `post_unexplored` [C] and `dwell_time_s` [C] from the ranker's X columns."""

    name = "ranker"

    def __init__(self, triton: PhoenixTriton, features: ModelFeatures) -> None:
        self.triton = triton
        self.features = features

    async def score(self, query: FeedQuery, candidates: Candidates) -> None:
        n = len(candidates)
        if n == 0:
            candidates.predictions = np.zeros((0, NUM_ACTIONS), np.float32)
            return
        hasher = self.triton.served.hasher_of(RANKER)
        probs, continuous = await self.triton.rank(
            self.features.viewer(hasher, query),
            self.features.candidates(hasher, query, candidates),
        )
        if len(probs) != n or len(continuous) != n:
            raise ValueError(f"the ranker answered {len(probs)} rows for {n} candidates")
        candidates.predictions = from_columns(probs)
        candidates.post_unexplored = np.asarray(probs[:, POST_UNEXPLORED_COLUMN], np.float64)
        candidates.dwell_time_s = np.asarray(continuous[:, DWELL_COLUMN], np.float64)
