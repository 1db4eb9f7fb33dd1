"""What flows through the pipeline: the feed query and its candidates."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from orchestrator.state.posts import Post
from orchestrator.state.viewers import Viewer

#: Candidate sources.
THUNDER = "thunder"  # in-network: recent posts of followed accounts
RETRIEVAL = "phoenix_retrieval"  # out-of-network: two-tower ANN retrieval


@dataclass(frozen=True)
class FeedQuery:
    """One feed request, with the viewer's state as of its start."""

    viewer: Viewer
    now_ms: int
    limit: int = 35
    seen_ids: frozenset[int] = frozenset()
    served_ids: frozenset[int] = frozenset()
    in_network_only: bool = False
    video_only: bool = False  # only video posts (Thunder reads its video lists)
    explain: bool = False  # keep every stage's numbers for the response
    #: Values that several stages derive from the query, computed once (the viewer's features).
    memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(slots=True)
class Candidate:
    """A post on its way to the feed. Sources fill the first fields, hydrators the post facts,
    the ranker the predictions and the scorers the scores."""

    post_id: int
    source: str  # THUNDER or RETRIEVAL
    in_network: bool
    retrieval_score: float | None = None
    # Hydrated: the post, the reposted post (for a repost), the replied-to post (for a reply).
    post: Post | None = None
    reposted: Post | None = None
    parent: Post | None = None
    quoted: Post | None = None
    author_known: bool = False  # the author is a known account
    author_follower_count: int = 0
    mutual_follow: bool = False  # author and viewer follow each other
    impressions: int = 0  # times the post was served (X's view count)
    # Ranker output: one probability per phoenix.actions.ACTIONS, and dwell time in seconds.
    predictions: npt.NDArray[np.float32] | None = None
    dwell_time_s: float = 0.0
    # Scores: weighted (DESIGN.md 5, after the negative-score offset), then the final score after
    # new-author boost, author diversity and the out-of-network discount.
    weighted_score: float = 0.0
    score: float = 0.0
    notes: tuple[str, ...] = ()  # e.g. ("new_author_boost",), for debugging

    @property
    def author_id(self) -> int:
        return 0 if self.post is None else self.post.author_id

    @property
    def is_video(self) -> bool:
        """A video post, or a repost of one."""
        return self.post is not None and self.post.is_video

    @property
    def video_duration_s(self) -> float:
        if self.post is None:
            return 0.0
        if self.post.is_repost and self.reposted is not None:
            return self.reposted.video_duration_s
        return self.post.video_duration_s

    @property
    def video_ms(self) -> int:
        """The video's duration in ms, 0 for a post without video."""
        return round(self.video_duration_s * 1000) if self.is_video else 0

    @property
    def original_post_id(self) -> int:
        """The post a repost reposts, else the post itself: what is scored and embedded."""
        if self.post is not None and self.post.is_repost and self.post.reposted_id:
            return self.post.reposted_id
        return self.post_id

    @property
    def original_author_id(self) -> int:
        """The reposted post's author for a repost, else the author."""
        if self.post is not None and self.post.is_repost:
            if self.reposted is not None:
                return self.reposted.author_id
            if self.post.reposted_author_id:
                return self.post.reposted_author_id
        return self.author_id

    @property
    def conversation_id(self) -> int:
        """X's conversation key: a reply's lowest ancestor (its thread's root), the reposted post
        for a repost, else the post itself."""
        if self.post is None:
            return self.post_id
        if self.post.is_repost and self.post.reposted_id:
            return self.post.reposted_id
        return self.post.thread_id
