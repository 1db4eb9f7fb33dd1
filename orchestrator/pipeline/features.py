"""A viewer's model features (the user and history inputs of the ranker and the user tower)."""

from __future__ import annotations

from orchestrator.pipeline.candidate import FeedQuery
from orchestrator.state.viewers import Viewer
from phoenix.features import Arrays, pack_history
from phoenix.hashing import IdHasher

#: Product surface of every candidate served in the For You feed.
FOR_YOU_SURFACE = 0


def query_features(hasher: IdHasher, query: FeedQuery) -> Arrays:
    """The query's viewer features, packed once per request (retrieval and the ranker share
    them)."""
    key = f"viewer_features:{id(hasher.config)}"
    if key not in query.memo:
        query.memo[key] = viewer_features(hasher, query.viewer)
    return query.memo[key]


def viewer_features(hasher: IdHasher, viewer: Viewer) -> Arrays:
    """Batch-1 history features: the newest `history_len` engagements, zero-padded."""
    post, author, actions, surface = viewer.history.padded(hasher.config.history_len)
    return pack_history(
        hasher, [viewer.viewer_id], post[None], author[None], actions[None], surface[None]
    )
