"""An optional cap on the candidates sent to the ranker.

The request path (docs/DESIGN.md §2) ranks every candidate that survives the filters, which on a GPU
is cheap. On a few CPU cores the ranker's cost grows with the candidate count (about 30 µs per
candidate for `tiny` on one core), so a deployment there may cap it: the newest in-network posts and
the best retrieved ones (by ANN score) are kept, `in_network_share` of the budget for the first when
both sources have more than their share, the other source's unused share otherwise."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from orchestrator.pipeline.candidate import Candidates, FeedQuery


class ScoringBudget:
    name = "scoring_budget"
    independent = False  # the newest and best of the survivors

    def __init__(self, limit: int, in_network_share: float = 0.5) -> None:
        if limit < 1:
            raise ValueError(f"scoring_budget must be at least 1, not {limit}")
        if not 0 <= in_network_share <= 1:
            raise ValueError(f"in_network_share must be in [0, 1], not {in_network_share}")
        self.limit = limit
        self.in_network_share = in_network_share

    def apply(self, query: FeedQuery, candidates: Candidates) -> npt.NDArray[np.bool_]:
        c = candidates
        keep = np.ones(len(c), np.bool_)
        if len(c) <= self.limit:
            return keep
        inn = np.flatnonzero(c.in_network)
        inn = inn[np.argsort(-c.post_id[inn], kind="stable")]  # newest first
        oon = np.flatnonzero(~c.in_network)
        ann = np.nan_to_num(c.retrieval_score[oon], nan=-1e9)
        oon = oon[np.argsort(-ann, kind="stable")]  # best retrieved first
        n_in = min(len(inn), max(round(self.limit * self.in_network_share), self.limit - len(oon)))
        n_out = min(len(oon), self.limit - n_in)
        keep[:] = False
        keep[inn[:n_in]] = True
        keep[oon[:n_out]] = True
        return keep
