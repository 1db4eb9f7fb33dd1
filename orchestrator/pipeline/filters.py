"""Candidate filters (docs/DESIGN.md §7): the pre-scoring chain and X's conversation dedup.

Each filter is a small class with a `name` (its Prometheus label) and an `apply` that returns a
boolean mask over a `Candidates` batch: True for the candidates it keeps. Filters read the batch's
arrays and never change them; they are stateless between requests, so one instance serves every
request. Order matters for the ones that keep "the first": the sources are merged Thunder first,
so a post found by both sources stays in-network.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from orchestrator.id_arrays import contains, sorted_ids
from orchestrator.pipeline.candidate import Candidates, FeedQuery
from orchestrator.pipeline.text import muted_pattern, muted_words
from phoenix.snowflake import age_ms

Bools = npt.NDArray[np.bool_]
I64 = npt.NDArray[np.int64]

#: Posts older than this are dropped (Thunder's retention, docs/DESIGN.md §6 and §7).
DEFAULT_MAX_AGE_MS = 48 * 3600 * 1000


class Filter(Protocol):
    """One filtering rule of the request path."""

    name: str
    #: Whether each candidate's fate depends on its own facts only. The chain hands such a filter
    #: the whole batch (candidates removed earlier included, their answer ignored) instead of
    #: gathering the survivors first; the others ("the first of each post") get the survivors.
    independent: bool

    def apply(self, query: FeedQuery, candidates: Candidates) -> Bools:
        """Which candidates it keeps."""
        ...


class DuplicateFilter:
    """The same post from both sources (or twice from one): keep the first, which is the
    in-network one when the sources are merged Thunder first."""

    name = "duplicate"
    independent = False

    def apply(self, query: FeedQuery, candidates: Candidates) -> Bools:
        return first_per_key(candidates.post_id)


class AuthorUnknownFilter:
    """Posts that could not be hydrated or whose author is not a known account: nothing to rank
    them by and nothing to show."""

    name = "author_unknown"
    independent = True

    def apply(self, query: FeedQuery, candidates: Candidates) -> Bools:
        c = candidates
        return c.found & c.author_known & (c.author_id != 0)


class TooOldFilter:
    """Posts older than `max_age_ms` at the request time, from the snowflake id alone.

    Posts created after `query.now_ms` (a clock skew or a forged id) are dropped too: their age
    is negative and no other stage expects that.
    """

    name = "too_old"
    independent = True

    def __init__(self, max_age_ms: int = DEFAULT_MAX_AGE_MS) -> None:
        if max_age_ms < 0:
            raise ValueError(f"max_age_ms must be >= 0, got {max_age_ms}")
        self.max_age_ms = max_age_ms

    def apply(self, query: FeedQuery, candidates: Candidates) -> Bools:
        ages = age_ms(candidates.post_id, query.now_ms)
        return (ages >= 0) & (ages <= self.max_age_ms)


class OwnPostFilter:
    """The viewer's own posts: nobody needs their own posts recommended back to them."""

    name = "own_post"
    independent = True

    def apply(self, query: FeedQuery, candidates: Candidates) -> Bools:
        return candidates.author_id != query.viewer.viewer_id


class OutOfNetworkReplyOrRepostFilter:
    """Out-of-network replies and reposts (without the conversation or the reposter in the
    viewer's graph they read out of context), and, as in X, any reply whose ancestors are missing
    (its parent is not in the store: unknown or deleted)."""

    name = "out_of_network_reply_or_repost"
    independent = True

    def apply(self, query: FeedQuery, candidates: Candidates) -> Bools:
        c = candidates
        orphan = c.is_reply & ~c.parent_found
        return ~c.found | (~orphan & (c.in_network | c.is_original))


class RepeatedRepostFilter:
    """Several reposts of one post, or an original alongside reposts of it: the viewer sees the
    underlying post once (the first occurrence, whichever form it takes)."""

    name = "repeated_repost"
    independent = False

    def apply(self, query: FeedQuery, candidates: Candidates) -> Bools:
        return first_per_key(candidates.original_post_id)


class PreviouslySeenFilter:
    """Posts the viewer has seen or been served, checked on the post itself, the post it reposts
    and the post it replies to (a repost of something seen is a repeat too)."""

    name = "previously_seen"
    independent = True

    def apply(self, query: FeedQuery, candidates: Candidates) -> Bools:
        c = candidates
        seen_ids = query.seen_ids | query.served_ids
        if not seen_ids:
            return np.ones(len(c), np.bool_)
        seen = sorted_ids(i for i in seen_ids if i)
        related = contains(seen, c.post_id)
        related |= c.found & contains(seen, c.reposted_id)
        related |= c.found & contains(seen, c.parent_id)
        return ~related


class MutedKeywordFilter:
    """Posts whose text contains one of the viewer's muted keywords, by X's tokenisation
    (`orchestrator.pipeline.text`): case- and accent-insensitive whole tokens, a phrase as
    consecutive tokens, "widget" muting "#widget" and "@widget".

    The text is the post's own; a repost's text is the reposted post's (X's repost text carries
    the original's, "RT @author: ..."). The batch's token lines are joined into one string (no
    line holds a newline), searched for each keyword's first word with `str.find`, and only the
    lines where one occurs are matched against the keywords' regex.
    """

    name = "muted_keyword"
    independent = True

    def apply(self, query: FeedQuery, candidates: Candidates) -> Bools:
        keep = np.ones(len(candidates), np.bool_)
        keywords = query.viewer.muted_keywords
        pattern = muted_pattern(keywords)
        if pattern is None or not len(candidates):
            return keep
        lines = candidates.token_line
        if lines is None:
            raise ValueError("muted_keyword: the candidates were hydrated without their text")
        texts = lines.tolist()
        joined = "\n".join(texts)
        found = []
        for word in muted_words(keywords):
            at = joined.find(word)
            while at >= 0:
                found.append(at)
                at = joined.find(word, at + len(word))
        if not found:
            return keep
        spans = np.fromiter(map(len, texts), np.int64, len(texts)) + 1  # a line and its newline
        starts = np.cumsum(spans) - spans
        worth = np.unique(starts.searchsorted(np.array(found, np.int64), "right") - 1).tolist()
        keep[[i for i in worth if pattern.search(texts[i])]] = False
        return keep


class BlockedOrMutedAuthorFilter:
    """X's author social-graph filter: the author is muted or blocked by the viewer or blocks
    the viewer; the quoted post's author is blocked by the viewer or blocks the viewer; a
    repost's reposted author is blocked by the viewer."""

    name = "blocked_or_muted_author"
    independent = True

    def apply(self, query: FeedQuery, candidates: Candidates) -> Bools:
        c, viewer = candidates, query.viewer
        if not (viewer.blocked or viewer.muted or viewer.blocked_by):
            return np.ones(len(c), np.bool_)
        excluded = contains(viewer.excluded_author_ids, c.author_id)
        quoted = c.quoted_author_id
        excluded |= (quoted != 0) & contains(viewer.blocked_either_way_ids, quoted)
        original = c.original_author_id
        excluded |= (original != c.author_id) & contains(viewer.blocked_ids, original)
        return ~excluded


class VideoOnlyFilter:
    """For a video-only request, posts without a video (a repost of a video is a video)."""

    name = "video_only"
    independent = True

    def apply(self, query: FeedQuery, candidates: Candidates) -> Bools:
        if not query.video_only:
            return np.ones(len(candidates), np.bool_)
        return candidates.is_video.copy()


def first_per_key(keys: I64) -> Bools:
    """True at the first occurrence of each key."""
    keep = np.zeros(len(keys), np.bool_)
    keep[np.unique(keys, return_index=True)[1]] = True
    return keep


def dedup_conversations(keys: npt.ArrayLike, scores: npt.ArrayLike) -> I64:
    """Indices kept by X's conversation dedup (`Candidates.conversation_id` as the keys): each
    conversation keeps its best score (the first on a tie) in the slot where the conversation
    first appeared."""
    keys = np.asarray(keys, np.int64)
    scores = np.asarray(scores, np.float64)
    n = len(keys)
    if n == 0:
        return np.zeros(0, np.int64)
    _, first, group = np.unique(keys, return_index=True, return_inverse=True)
    by_group = np.lexsort((np.arange(n), -scores, group))  # best first within each group
    group_sorted = group[by_group]
    starts = np.flatnonzero(np.r_[True, group_sorted[1:] != group_sorted[:-1]])
    best = by_group[starts]  # one per group, groups in key order like `first`
    return best[np.argsort(first)]


def default_filters(max_age_ms: int = DEFAULT_MAX_AGE_MS) -> tuple[Filter, ...]:
    """The pre-scoring chain of docs/DESIGN.md §7, in its order."""
    return (
        DuplicateFilter(),
        AuthorUnknownFilter(),
        TooOldFilter(max_age_ms),
        OwnPostFilter(),
        OutOfNetworkReplyOrRepostFilter(),
        RepeatedRepostFilter(),
        PreviouslySeenFilter(),
        MutedKeywordFilter(),
        BlockedOrMutedAuthorFilter(),
        VideoOnlyFilter(),
    )


#: The default chain; the filters hold no per-request state, so sharing them is safe.
PRE_SCORING_FILTERS: tuple[Filter, ...] = default_filters()


def apply_filters(
    filters: Sequence[Filter],
    query: FeedQuery,
    candidates: Candidates,
    removed_ids: dict[str, list[int]] | None = None,
) -> tuple[Candidates, dict[str, int]]:
    """Run a chain; the survivors and how many candidates each filter removed (for metrics).
    With `removed_ids` given, it receives the ids each filter removed."""
    removed: dict[str, int] = {}
    alive = np.ones(len(candidates), np.bool_)  # over `candidates`
    survivors, current = candidates, True  # `survivors` is `candidates[alive]` when current
    for f in filters:
        if f.independent:
            gone = alive & ~f.apply(query, candidates)
        else:
            if not current:
                survivors, current = candidates.take(alive), True
            gone = np.zeros(len(candidates), np.bool_)
            gone[alive.nonzero()[0]] = ~f.apply(query, survivors)
        count = int(np.count_nonzero(gone))
        removed[f.name] = count
        if removed_ids is not None:
            removed_ids[f.name] = candidates.post_id[gone].tolist()
        if count:
            alive &= ~gone
            current = False
    if not current:
        survivors = candidates.take(alive)
    return survivors, removed
