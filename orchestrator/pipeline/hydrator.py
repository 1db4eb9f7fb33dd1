"""Hydration: the post facts the filters and the ranking arithmetic need, from the stores, for a
whole batch of candidates at once (a few gathers from the post store's columns)."""

from __future__ import annotations

import numpy as np

from orchestrator.id_arrays import contains
from orchestrator.pipeline.candidate import SOURCES, THUNDER, Candidates, FeedQuery
from orchestrator.state.posts import PostStore
from orchestrator.state.viewers import ViewerStore
from phoenix.world.schema import REPOST


class PostHydrator:
    """Fills each candidate's post facts, those of the posts it replies to, reposts and quotes,
    and its author's.

    A candidate counts as in-network when Thunder found it or its author is followed: retrieval
    may also surface a followed author's post that Thunder's per-author caps left out.
    """

    name = "hydrate"

    def __init__(self, posts: PostStore, viewers: ViewerStore) -> None:
        self.posts = posts
        self.viewers = viewers

    def hydrate(self, query: FeedQuery, c: Candidates) -> None:
        """Hydrate `c` in place."""
        n = len(c)
        post = self.posts.columns(c.post_id)
        # The replied-to, reposted and quoted posts, in one read.
        refs = self.posts.columns(
            np.concatenate([post.parent_id, post.reposted_id, post.quoted_id])
        )
        found = post.found
        repost = found & (post.kind == REPOST)
        reposted = repost & refs.found[n : 2 * n]
        author = post.author_id

        c.found = found
        c.author_id = author
        c.kind = post.kind.astype(np.int8)
        c.parent_id = post.parent_id
        c.reposted_id = post.reposted_id
        c.parent_found = refs.found[:n]
        has_reposted_id = repost & (post.reposted_id != 0)
        c.conversation_id = np.where(
            has_reposted_id, post.reposted_id, np.where(found, post.thread_id, c.post_id)
        )
        c.original_post_id = np.where(has_reposted_id, post.reposted_id, c.post_id)
        named = np.where(post.reposted_author_id != 0, post.reposted_author_id, author)
        c.original_author_id = np.where(
            reposted, refs.author_id[n : 2 * n], np.where(repost, named, author)
        )
        c.quoted_author_id = refs.author_id[2 * n :]
        c.is_video = post.is_video
        c.video_ms = np.where(
            post.is_video, np.where(reposted, refs.video_ms[n : 2 * n], post.video_ms), 0
        )
        known, followers = self.viewers.accounts(author)
        c.author_known = known & found
        c.author_followers = followers
        viewer = query.viewer
        c.mutual_follow = found & contains(viewer.mutual_ids, author)
        c.impressions = post.impressions
        # A repost is scored as the post it reposts (nothing known when that is not stored).
        original = ~repost
        c.original_counts = np.where(
            reposted[:, None], refs.counts[n : 2 * n], np.where(original[:, None], post.counts, 0)
        )
        c.original_sids = np.where(
            reposted[:, None], refs.sids[n : 2 * n], np.where(original[:, None], post.sids, 0)
        )
        followed = contains(viewer.following_ids, author)
        thunder = c.source == SOURCES.index(THUNDER)
        c.in_network = np.where(found, thunder | followed, c.in_network)
        if viewer.muted_keywords:
            c.token_line = self.posts.token_lines(
                np.where(reposted, post.reposted_id, np.where(found, c.post_id, 0))
            )
