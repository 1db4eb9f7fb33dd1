"""An optional cap on the candidates sent to the ranker.

DESIGN.md scores every candidate that survives the filters, which on a GPU is cheap. On a few CPU
cores the ranker's cost grows with the candidate count (about 30 µs per candidate for `tiny` on
one core), so a deployment there may cap it: the newest in-network posts and the best retrieved
ones (by ANN score) are kept, `in_network_share` of the budget for the first when both sources
have more than their share, the other source's unused share otherwise."""

from __future__ import annotations

from orchestrator.pipeline.candidate import Candidate, FeedQuery


class ScoringBudget:
    name = "scoring_budget"

    def __init__(self, limit: int, in_network_share: float = 0.5) -> None:
        if limit < 1:
            raise ValueError(f"scoring_budget must be at least 1, not {limit}")
        if not 0 <= in_network_share <= 1:
            raise ValueError(f"in_network_share must be in [0, 1], not {in_network_share}")
        self.limit = limit
        self.in_network_share = in_network_share

    def apply(self, query: FeedQuery, candidates: list[Candidate]) -> list[Candidate]:
        if len(candidates) <= self.limit:
            return candidates
        inn = sorted((c for c in candidates if c.in_network), key=lambda c: -c.post_id)
        oon = sorted(
            (c for c in candidates if not c.in_network),
            key=lambda c: -(c.retrieval_score if c.retrieval_score is not None else -1e9),
        )
        n_in = min(len(inn), max(round(self.limit * self.in_network_share), self.limit - len(oon)))
        n_out = min(len(oon), self.limit - n_in)
        chosen = {id(c) for c in inn[:n_in]} | {id(c) for c in oon[:n_out]}
        return [c for c in candidates if id(c) in chosen]
