"""The Phoenix ranker through Triton: one call per viewer with all surviving candidates."""

from __future__ import annotations

import numpy as np

from orchestrator.model_set import ModelSetNotReady
from orchestrator.pipeline.candidate import Candidates, FeedQuery
from orchestrator.pipeline.features import ModelFeatures
from phoenix.actions import DWELL_COLUMN, NUM_ACTIONS, POST_UNEXPLORED_COLUMN, from_columns
from phoenix.serving import RANKER


class PhoenixScorer:
    """Sets the batch's `predictions` [C, A] (the named actions, `phoenix.actions.ACTIONS`
    order), `post_unexplored` [C] and `dwell_time_s` [C] from the ranker's X columns, with the
    ranker of the feed's model set (`FeedQuery.models`)."""

    name = "ranker"

    def __init__(self, features: ModelFeatures) -> None:
        self.features = features

    async def score(self, query: FeedQuery, candidates: Candidates) -> None:
        n = len(candidates)
        if n == 0:
            candidates.predictions = np.zeros((0, NUM_ACTIONS), np.float32)
            return
        if query.models is None:
            raise ModelSetNotReady()
        triton = query.models.models
        hasher = triton.served.hasher_of(RANKER)
        probs, continuous = await triton.rank(
            self.features.viewer(hasher, query),
            self.features.candidates(hasher, query, candidates),
        )
        if len(probs) != n or len(continuous) != n:
            raise ValueError(f"the ranker answered {len(probs)} rows for {n} candidates")
        candidates.predictions = from_columns(probs)
        candidates.post_unexplored = np.asarray(probs[:, POST_UNEXPLORED_COLUMN], np.float64)
        candidates.dwell_time_s = np.asarray(continuous[:, DWELL_COLUMN], np.float64)
