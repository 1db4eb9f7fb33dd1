"""Hydration: the post facts the filters and the ranking arithmetic need, from the stores."""

from __future__ import annotations

from orchestrator.pipeline.candidate import THUNDER, Candidate, FeedQuery
from orchestrator.state.posts import PostStore
from orchestrator.state.viewers import ViewerStore


class PostHydrator:
    """Fills each candidate's post, reposted post, parent and author facts.

    A candidate counts as in-network when Thunder found it or its author is followed: retrieval
    may also surface a followed author's post that Thunder's per-author caps left out.
    """

    name = "hydrate"

    def __init__(self, posts: PostStore, viewers: ViewerStore) -> None:
        self.posts = posts
        self.viewers = viewers

    def hydrate(self, query: FeedQuery, candidates: list[Candidate]) -> None:
        viewer = query.viewer
        following = viewer.following_set
        counts: dict[int, int] = {}
        for c in candidates:
            post = c.post = self.posts.get(c.post_id) if c.post is None else c.post
            if post is None:
                continue
            if post.reposted_id:
                c.reposted = self.posts.get(post.reposted_id)
            if post.parent_id:
                c.parent = self.posts.get(post.parent_id)
            if post.quoted_id:
                c.quoted = self.posts.get(post.quoted_id)
            author = post.author_id
            c.author_known = self.viewers.exists(author)
            if author not in counts:
                counts[author] = self.viewers.follower_count(author)
            c.author_follower_count = counts[author]
            c.mutual_follow = author in viewer.followers and author in following
            c.impressions = self.posts.impressions(c.post_id)
            c.in_network = c.source == THUNDER or author in following
