"""What flows through the pipeline: the feed query and its candidates.

Candidates travel as one `Candidates` batch of parallel NumPy arrays, one entry per candidate, from
the sources through hydration, the filters, the ranker and the ranking arithmetic; only the page
that is returned becomes objects (`RankedPost`). A feed handles up to ~1,700 candidates, and a
Python object per candidate was most of the orchestrator's CPU time (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from orchestrator.model_set import ModelSet
from orchestrator.state.viewers import Viewer
from phoenix.features import COUNT_NAMES
from phoenix.world.schema import ORIGINAL, REPLY, REPOST, SID_LEVELS

#: Candidate sources.
THUNDER = "thunder"  # in-network: recent posts of followed accounts
RETRIEVAL = "phoenix_retrieval"  # out-of-network: two-tower ANN retrieval
#: `Candidates.source` holds a source's position here.
SOURCES = (THUNDER, RETRIEVAL)

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class FeedQuery:
    """One feed request, with the viewer's state and the model set (`models`, None before the
    first is ready) as of its start: every stage of the feed runs on that one set."""

    viewer: Viewer
    now_ms: int
    limit: int = 35
    seen_ids: frozenset[int] = frozenset()
    served_ids: frozenset[int] = frozenset()
    in_network_only: bool = False
    video_only: bool = False  # only video posts (Thunder reads its video lists)
    explain: bool = False  # keep every stage's numbers for the response
    models: ModelSet | None = None


def _ints(n: int) -> I64:
    return np.zeros(n, np.int64)


@dataclass(eq=False)  # arrays: compare fields with NumPy, not `==` on the batch
class Candidates:
    """Posts on their way to the feed, one array entry per candidate.

    Sources fill the first four fields (`of`); the hydrator the post facts; the ranker
    `predictions`, `post_unexplored` and `dwell_time_s`; the runner `score`. A candidate whose
    post the store does not hold keeps `found` False, author 0 and its own id as conversation
    and original post.
    """

    post_id: I64
    source: npt.NDArray[np.int8]  # position in SOURCES
    in_network: Bools
    retrieval_score: F64  # the ANN score, NaN for a Thunder candidate
    # Hydrated post facts.
    found: Bools  # the post is in the store
    author_id: I64
    kind: npt.NDArray[np.int8]  # ORIGINAL, REPLY or REPOST
    parent_id: I64  # replied-to post, 0 unless a reply
    reposted_id: I64  # reposted post, 0 unless a repost
    parent_found: Bools  # a reply's parent is in the store (X drops replies without ancestors)
    #: X's conversation key: a reply's lowest ancestor (its thread's root), the reposted post
    #: for a repost, else the post itself.
    conversation_id: I64
    #: The post a repost reposts, else the post itself: what is scored and embedded.
    original_post_id: I64
    #: The reposted post's author for a repost (as the store or the repost names it), else the
    #: author.
    original_author_id: I64
    quoted_author_id: I64  # the quoted post's author, 0 when none or not in the store
    is_video: Bools  # a video post, or a repost of one
    video_ms: I64  # the video's duration in ms (a repost: the reposted post's), 0 without video
    author_known: Bools  # the author is a known account
    author_followers: I64
    mutual_follow: Bools  # author and viewer follow each other
    impressions: I64  # times the post was served (X's view count)
    #: What the ranker reads about the original post (the reposted one for a repost): its
    #: engagement counts now [n, len(COUNT_NAMES)] and semantic ids [n, SID_LEVELS] (0 missing).
    original_counts: I64
    original_sids: I64
    #: The text the muted-keyword filter reads (a repost: the reposted post's), as
    #: `orchestrator.pipeline.text.token_line`; None unless the viewer mutes keywords.
    token_line: npt.NDArray[np.object_] | None
    # Ranker output: one probability per phoenix.actions.ACTIONS [n, A], post_unexplored's
    # probability, dwell time in seconds.
    predictions: npt.NDArray[np.float32] | None
    post_unexplored: F64
    dwell_time_s: F64
    score: F64  # the final score, once ranked

    @classmethod
    def of(
        cls,
        source: str,
        post_ids: npt.ArrayLike,
        in_network: bool | npt.ArrayLike,
        retrieval_scores: npt.ArrayLike | None = None,
    ) -> Candidates:
        """Unhydrated candidates from one source."""
        ids = np.asarray(post_ids, np.int64).reshape(-1)
        n = len(ids)
        scores = (
            np.full(n, np.nan)
            if retrieval_scores is None
            else np.asarray(retrieval_scores, np.float64).reshape(n)
        )

        def no() -> Bools:
            return np.zeros(n, np.bool_)

        return cls(
            post_id=ids,
            source=np.full(n, SOURCES.index(source), np.int8),
            in_network=np.broadcast_to(np.asarray(in_network, np.bool_), (n,)).copy(),
            retrieval_score=scores,
            found=no(),
            author_id=_ints(n),
            kind=np.full(n, ORIGINAL, np.int8),
            parent_id=_ints(n),
            reposted_id=_ints(n),
            parent_found=no(),
            conversation_id=ids.copy(),
            original_post_id=ids.copy(),
            original_author_id=_ints(n),
            quoted_author_id=_ints(n),
            is_video=no(),
            video_ms=_ints(n),
            author_known=no(),
            author_followers=_ints(n),
            mutual_follow=no(),
            impressions=_ints(n),
            original_counts=np.zeros((n, len(COUNT_NAMES)), np.int64),
            original_sids=np.zeros((n, SID_LEVELS), np.int64),
            token_line=None,
            predictions=None,
            post_unexplored=np.zeros(n),
            dwell_time_s=np.zeros(n),
            score=np.zeros(n),
        )

    @classmethod
    def empty(cls) -> Candidates:
        return cls.of(THUNDER, np.zeros(0, np.int64), True)

    @classmethod
    def concat(cls, parts: Sequence[Candidates]) -> Candidates:
        """One batch: `parts` one after another."""
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return cls.empty()
        values = {}
        for f in _FIELDS:
            arrays = [getattr(p, f) for p in parts]
            values[f] = None if any(a is None for a in arrays) else np.concatenate(arrays)
        return cls(**values)

    def take(self, index: npt.ArrayLike) -> Candidates:
        """The candidates at `index` (positions or a boolean mask), in that order."""
        index = np.asarray(index)
        if index.dtype == np.bool_:
            index = index.nonzero()[0]
        return Candidates(
            **{f: None if (v := getattr(self, f)) is None else v.take(index, 0) for f in _FIELDS}
        )

    def __len__(self) -> int:
        return len(self.post_id)

    @property
    def is_reply(self) -> Bools:
        return self.kind == REPLY

    @property
    def is_repost(self) -> Bools:
        return self.kind == REPOST

    @property
    def is_original(self) -> Bools:
        return self.kind == ORIGINAL

    def posts(self, index: npt.ArrayLike) -> list[RankedPost]:
        """The candidates at `index` as the objects a feed returns."""
        at = np.asarray(index, np.int64)
        predictions = self.predictions
        return [
            RankedPost(
                post_id=post_id,
                author_id=author_id,
                score=score,
                in_network=in_network,
                source=SOURCES[source],
                predictions=None if predictions is None else predictions[i],
            )
            for i, post_id, author_id, score, in_network, source in zip(
                at.tolist(),
                self.post_id[at].tolist(),
                self.author_id[at].tolist(),
                self.score[at].tolist(),
                self.in_network[at].tolist(),
                self.source[at].tolist(),
                strict=True,
            )
        ]


_FIELDS = tuple(f.name for f in dataclasses.fields(Candidates))


@dataclass(frozen=True, slots=True)
class RankedPost:
    """One post of a returned feed page."""

    post_id: int
    author_id: int
    score: float
    in_network: bool
    source: str  # THUNDER or RETRIEVAL
    predictions: npt.NDArray[np.float32] | None = None  # [A], None when not ranked
