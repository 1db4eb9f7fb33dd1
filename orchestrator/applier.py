"""Applying an event to this replica's memory: the one place that turns an accepted write into
changes of the viewer store, the post store and its counts, Thunder and the post index.

The same code runs for an event written through this replica (after the journal made it durable)
and for one read from another replica's log, so replicas that apply the same events in the same
order hold the same state. Applying never asks the clock: events carry their times.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from orchestrator.state.events import (
    Engaged,
    Event,
    KeywordMuted,
    PostCreated,
    PostDeleted,
    Related,
)
from orchestrator.state.posts import (
    NUM_COUNTS,
    QUOTES,
    REPLIES,
    REPOSTS,
    InMemoryPostStore,
    Post,
    engagement_counts,
)
from orchestrator.state.viewers import InMemoryViewerStore
from orchestrator.thunder import Thunder


class PostIndexFeed(Protocol):
    """Whoever keeps the retrieval index in step with the posts (the service's index
    maintenance): told of each post stored and each post deleted."""

    async def post_added(self, post: Post) -> None: ...

    def post_removed(self, post_id: int) -> None: ...


class Applier:
    """Applies events to the in-memory parts, in the order given."""

    def __init__(
        self,
        viewers: InMemoryViewerStore,
        posts: InMemoryPostStore,
        thunder: Thunder,
        index: PostIndexFeed,
    ) -> None:
        self.viewers = viewers
        self.posts = posts
        self.thunder = thunder
        self.index = index

    async def apply(self, events: Sequence[Event]) -> None:
        for event in events:
            match event:
                case PostCreated():
                    await self._post_created(event.post())
                case PostDeleted(post_id=post_id):
                    self.posts.delete(post_id)
                    self.thunder.delete(post_id)
                    self.index.post_removed(post_id)
                case Engaged():
                    # Only impressions with an action form histories (as training and a
                    # rebuild from the store read them); every one counts a view.
                    if any(event.actions):
                        self.viewers.record_engagement(event.viewer_id, event.engagement())
                    self.posts.add_counts(event.post_id, engagement_counts(event.actions))
                case Related():
                    self._related(event)
                case KeywordMuted(viewer_id=viewer, keyword=keyword, remove=remove):
                    if remove:
                        self.viewers.remove_muted_keyword(viewer, keyword)
                    else:
                        self.viewers.add_muted_keyword(viewer, keyword)

    async def _post_created(self, post: Post) -> None:
        if not self.posts.add(post):
            return  # deleted before: the delete wins
        for target, column in (
            (post.parent_id, REPLIES),
            (post.reposted_id, REPOSTS),
            (post.quoted_id, QUOTES),
        ):
            if target:  # the post it answers, reposts or quotes gains one
                delta = np.zeros(NUM_COUNTS, np.int64)
                delta[column] = 1
                self.posts.add_counts(target, delta)
        self.thunder.ingest(post)
        await self.index.post_added(post)

    def _related(self, event: Related) -> None:
        v = self.viewers
        method = {
            ("follow", False): v.follow,
            ("follow", True): v.unfollow,
            ("block", False): v.block,
            ("block", True): v.unblock,
            ("mute", False): v.mute,
            ("mute", True): v.unmute,
        }[event.relation, event.undo]
        method(event.viewer_id, event.target_id)
