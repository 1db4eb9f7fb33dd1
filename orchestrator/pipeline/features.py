"""A viewer's model features (the user and history inputs of the ranker and the user tower)."""

from __future__ import annotations

from orchestrator.state.viewers import Viewer
from phoenix.features import Arrays, pack_history
from phoenix.hashing import IdHasher

#: Product surface of every candidate served in the For You feed.
FOR_YOU_SURFACE = 0


def viewer_features(hasher: IdHasher, viewer: Viewer) -> Arrays:
    """Batch-1 history features: the newest `history_len` engagements, zero-padded."""
    post, author, actions, surface = viewer.history.padded(hasher.config.history_len)
    return pack_history(
        hasher, [viewer.viewer_id], post[None], author[None], actions[None], surface[None]
    )
