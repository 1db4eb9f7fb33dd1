"""The model features the orchestrator sends: a viewer's (the user and history inputs of the ranker
and the user tower) and the candidates' (the ranker's candidate inputs)."""

from __future__ import annotations

import numpy as np

from orchestrator.pipeline.candidate import Candidates, FeedQuery
from orchestrator.state.viewers import Viewer
from phoenix.features import Arrays, pack_candidates, pack_history
from phoenix.hashing import IdHasher

#: Product surface of every candidate served in the For You feed.
FOR_YOU_SURFACE = 0


def query_features(hasher: IdHasher, query: FeedQuery) -> Arrays:
    """The query's viewer features, packed once per viewer snapshot (retrieval and the ranker
    share them, and the store reuses a snapshot until the viewer changes)."""
    memo = query.viewer.memo
    key = f"viewer_features:{id(hasher.config)}"
    if key not in memo:
        memo[key] = viewer_features(hasher, query.viewer)
    return memo[key]


def viewer_features(hasher: IdHasher, viewer: Viewer) -> Arrays:
    """Batch-1 history features: the newest `history_len` engagements, zero-padded."""
    post, author, actions, surface = viewer.history.padded(hasher.config.history_len)
    return pack_history(
        hasher, [viewer.viewer_id], post[None], author[None], actions[None], surface[None]
    )


def candidate_features(hasher: IdHasher, candidates: Candidates) -> Arrays:
    """The ranker's candidate inputs [C, ...] from the batch's arrays. A repost is scored as the
    post it reposts, by that post's author, as X's Phoenix scorer does."""
    n = len(candidates)
    return pack_candidates(
        hasher,
        candidates.original_post_id,
        candidates.original_author_id,
        np.full(n, FOR_YOU_SURFACE, np.int64),
    )
