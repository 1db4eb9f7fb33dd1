"""Viewers the service tests read feeds for: one that follows enough accounts to see posts."""

from __future__ import annotations

from orchestrator.service import FeedService


def follower_and_author(service: FeedService, min_following: int = 1) -> tuple[int, int]:
    """The first user (by id) following at least `min_following` accounts, and the first of them."""
    for user_id in service.viewers.user_ids():
        viewer = service.viewers.get(user_id)
        if viewer is not None and len(viewer.following) >= min_following:
            return user_id, viewer.following[0]
    raise AssertionError(f"no viewer follows {min_following} accounts")
