"""The model features the orchestrator sends, built from its stores by `phoenix.features` (the
packing training uses): the viewer's (`user_*` from the profile, `history_*` from the engagement
history; the user tower reads only the latter) and the candidates' (`candidate_*`).

A history entry is stamped with what the engagement recorded (served time, surface, actions,
dwell seconds) and the post's facts (creation time from its id, semantic ids). Two facts are read
as they stand at request time, where training reads them as of the engagement: the post's
engagement counts (the post store's counts now) and the follow bits (the social graph now). A
viewer store that kept both per engagement would remove that approximation; the store keeps only
the current graph and counts.

Candidates are stamped as X's engine stamps them: impression time = the service clock's now, the
viewer's timezone, the For You surface, follow bits from the graph now. A repost is scored as the
post it reposts, by that post's author, with that post's counts and semantic ids, as X's Phoenix
scorer does.
"""

from __future__ import annotations

import numpy as np

from orchestrator.id_arrays import contains
from orchestrator.pipeline.candidate import Candidates, FeedQuery
from orchestrator.state.posts import PostStore
from orchestrator.state.viewers import Viewer
from phoenix.features import Arrays, PostFacts, pack_candidates, pack_history, pack_user
from phoenix.hashing import IdHasher
from phoenix.snowflake import created_ms

#: Product surface of every candidate served in the For You feed.
FOR_YOU_SURFACE = 0


class ModelFeatures:
    """Packs model inputs from a query's viewer snapshot, its candidates and the post store."""

    def __init__(self, posts: PostStore) -> None:
        self.posts = posts

    def viewer(self, hasher: IdHasher, query: FeedQuery) -> Arrays:
        """The ranker's batch-1 viewer inputs: `user_*` and `history_*`."""
        viewer = query.viewer
        return {
            **pack_user(hasher, [viewer.viewer_id], viewer.profile),
            **self.history(hasher, viewer),
        }

    def history(self, hasher: IdHasher, viewer: Viewer) -> Arrays:
        """The batch-1 `history_*` inputs: the newest `history_len` engagements, left-aligned
        oldest first (pack_history orders them)."""
        h = viewer.history.newest(hasher.config.history_len)
        oldest_first = slice(None, None, -1)  # so that ties in served time keep their order
        post_ids, authors = h.post_ids[oldest_first], h.author_ids[oldest_first]
        facts = self.posts.columns(post_ids)
        posts = PostFacts(
            post_ids=post_ids,
            author_ids=authors,
            surface=h.surfaces[oldest_first],
            impression_s=h.served_ms[oldest_first] // 1000,
            created_s=_created_s(post_ids),
            followed_by_viewer=contains(viewer.following_ids, authors),
            following_viewer=contains(viewer.follower_ids, authors),
            counts=facts.counts,
            sids=facts.sids,
        )
        return pack_history(
            hasher,
            posts,
            h.actions[oldest_first],
            h.dwell_s[oldest_first],
            np.zeros(len(post_ids), np.int64),
            np.asarray(viewer.profile.timezone).reshape(1),
        )

    def candidates(self, hasher: IdHasher, query: FeedQuery, candidates: Candidates) -> Arrays:
        """The ranker's candidate inputs [C, ...] from the hydrated batch."""
        viewer = query.viewer
        n = len(candidates)
        post_ids, authors = candidates.original_post_id, candidates.original_author_id
        posts = PostFacts(
            post_ids=post_ids,
            author_ids=authors,
            surface=np.full(n, FOR_YOU_SURFACE, np.int64),
            impression_s=np.full(n, query.now_ms // 1000, np.int64),
            created_s=_created_s(post_ids),
            followed_by_viewer=contains(viewer.following_ids, authors),
            following_viewer=contains(viewer.follower_ids, authors),
            counts=candidates.original_counts,
            sids=candidates.original_sids,
        )
        return pack_candidates(hasher, posts, np.asarray(viewer.profile.timezone).reshape(()))


def _created_s(post_ids: np.ndarray) -> np.ndarray:
    """Creation times in Unix seconds from the snowflake ids (0 for the padding id 0)."""
    return np.where(post_ids != 0, np.maximum(created_ms(post_ids), 0) // 1000, 0)
