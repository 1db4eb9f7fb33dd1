"""Candidate filters (DESIGN.md 7): the pre-scoring chain, in order, and the post-selection
conversation dedup.

Each filter is a small class with a `name` (its Prometheus label) and an `apply` that returns the
kept candidates in their input order, never mutating the input list. Filters are stateless between
requests, so one instance serves every request. Order matters for the ones that keep "the first":
the sources are merged Thunder first, so a post found by both sources stays in-network.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

import numpy as np

from orchestrator.pipeline.candidate import Candidate, FeedQuery
from phoenix.snowflake import age_ms

#: Posts older than this are dropped (Thunder's retention, DESIGN.md 6 and 7).
DEFAULT_MAX_AGE_MS = 48 * 3600 * 1000


class Filter(Protocol):
    """One filtering rule of the request path."""

    name: str

    def apply(self, query: FeedQuery, candidates: list[Candidate]) -> list[Candidate]:
        """The kept candidates, in input order."""
        ...


class DuplicateFilter:
    """The same post from both sources (or twice from one): keep the first, which is the
    in-network one when the sources are merged Thunder first."""

    name = "duplicate"

    def apply(self, query: FeedQuery, candidates: list[Candidate]) -> list[Candidate]:
        return _first_per_key(candidates, lambda c: c.post_id)


class AuthorUnknownFilter:
    """Posts that could not be hydrated or whose author is not a known account: nothing to rank
    them by and nothing to show."""

    name = "author_unknown"

    def apply(self, query: FeedQuery, candidates: list[Candidate]) -> list[Candidate]:
        return [c for c in candidates if c.post is not None and c.author_known and c.author_id != 0]


class TooOldFilter:
    """Posts older than `max_age_ms` at the request time, from the snowflake id alone.

    Posts created after `query.now_ms` (a clock skew or a forged id) are dropped too: their age
    is negative and no other stage expects that.
    """

    name = "too_old"

    def __init__(self, max_age_ms: int = DEFAULT_MAX_AGE_MS) -> None:
        if max_age_ms < 0:
            raise ValueError(f"max_age_ms must be >= 0, got {max_age_ms}")
        self.max_age_ms = max_age_ms

    def apply(self, query: FeedQuery, candidates: list[Candidate]) -> list[Candidate]:
        if not candidates:
            return []
        # One vectorised pass: up to ~1,500 candidates per request.
        ids = np.fromiter((c.post_id for c in candidates), np.int64, len(candidates))
        ages = age_ms(ids, query.now_ms)
        keep = (ages >= 0) & (ages <= self.max_age_ms)
        return [c for c, k in zip(candidates, keep.tolist(), strict=True) if k]


class OwnPostFilter:
    """The viewer's own posts: nobody needs their own posts recommended back to them."""

    name = "own_post"

    def apply(self, query: FeedQuery, candidates: list[Candidate]) -> list[Candidate]:
        viewer_id = query.viewer.viewer_id
        return [c for c in candidates if c.author_id != viewer_id]


class OutOfNetworkReplyOrRepostFilter:
    """Out-of-network replies and reposts: without the conversation or the reposter in the
    viewer's graph they read out of context."""

    name = "out_of_network_reply_or_repost"

    def apply(self, query: FeedQuery, candidates: list[Candidate]) -> list[Candidate]:
        return [
            c
            for c in candidates
            if c.in_network or c.post is None or not (c.post.is_reply or c.post.is_repost)
        ]


class RepeatedRepostFilter:
    """Several reposts of one post, or an original alongside reposts of it: the viewer sees the
    underlying post once (the first occurrence, whichever form it takes)."""

    name = "repeated_repost"

    def apply(self, query: FeedQuery, candidates: list[Candidate]) -> list[Candidate]:
        return _first_per_key(candidates, _underlying_post_id)


class PreviouslySeenFilter:
    """Posts the viewer has seen or been served, checked on the post itself, the post it reposts
    and the post it replies to (a repost of something seen is a repeat too)."""

    name = "previously_seen"

    def apply(self, query: FeedQuery, candidates: list[Candidate]) -> list[Candidate]:
        seen = query.seen_ids | query.served_ids
        if not seen:
            return list(candidates)
        return [c for c in candidates if seen.isdisjoint(_related_post_ids(c))]


class MutedKeywordFilter:
    """Posts whose text, or for a repost the reposted post's text, contains one of the viewer's
    muted keywords: case-insensitive, whole words or phrases.

    A phrase of several words matches only as consecutive whole words; any run of whitespace or
    punctuation separates words ("art" does not match "party" but matches "art!" and "#art").
    """

    name = "muted_keyword"

    def apply(self, query: FeedQuery, candidates: list[Candidate]) -> list[Candidate]:
        pattern = keyword_pattern(query.viewer.muted_keywords)
        if pattern is None:
            return list(candidates)
        return [c for c in candidates if not any(pattern.search(t) for t in _texts(c))]


class BlockedOrMutedAuthorFilter:
    """Authors the viewer blocks or mutes and authors who block the viewer; for a repost the
    reposted post's author counts too (a repost must not smuggle a blocked author in)."""

    name = "blocked_or_muted_author"

    def apply(self, query: FeedQuery, candidates: list[Candidate]) -> list[Candidate]:
        viewer = query.viewer
        excluded = viewer.blocked | viewer.muted | viewer.blocked_by
        if not excluded:
            return list(candidates)
        return [c for c in candidates if excluded.isdisjoint(_related_author_ids(c))]


class ConversationDedup:
    """After selection: one post per conversation, the best scored (DESIGN.md 7).

    On equal scores the earlier candidate wins. The query is not needed; it is accepted so this
    class fits the `Filter` protocol and its metrics.
    """

    name = "conversation_dedup"

    def apply(self, query: FeedQuery | None, candidates: list[Candidate]) -> list[Candidate]:
        best: dict[int, int] = {}  # conversation -> index of its best candidate
        for i, c in enumerate(candidates):
            j = best.get(c.conversation_id)
            if j is None or c.score > candidates[j].score:
                best[c.conversation_id] = i
        keep = sorted(best.values())
        return [candidates[i] for i in keep]


def default_filters(max_age_ms: int = DEFAULT_MAX_AGE_MS) -> tuple[Filter, ...]:
    """The pre-scoring chain of DESIGN.md 7, in its order."""
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
    )


#: The default chain; the filters hold no per-request state, so sharing them is safe.
PRE_SCORING_FILTERS: tuple[Filter, ...] = default_filters()


def apply_filters(
    filters: Sequence[Filter], query: FeedQuery, candidates: list[Candidate]
) -> tuple[list[Candidate], dict[str, int]]:
    """Run a chain; the survivors and how many candidates each filter removed (for metrics)."""
    removed: dict[str, int] = {}
    for f in filters:
        kept = f.apply(query, candidates)
        removed[f.name] = len(candidates) - len(kept)
        candidates = kept
    return candidates, removed


@functools.lru_cache(maxsize=4096)
def keyword_pattern(keywords: tuple[str, ...]) -> re.Pattern[str] | None:
    """One case-insensitive regex matching any of `keywords` as whole words or phrases; None
    when there is nothing to match. Cached: a viewer's keywords rarely change between requests.

    Words of a phrase may be separated by any run of non-word characters; the lookarounds (rather
    than `\\b`) keep whole-word matching right for keywords that start or end with punctuation,
    such as "c++" or "#art".
    """
    alternatives = []
    for keyword in keywords:
        words = keyword.split()
        if words:
            alternatives.append(r"\W+".join(re.escape(w) for w in words))
    if not alternatives:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE)


def _first_per_key(
    candidates: Iterable[Candidate], key: Callable[[Candidate], int]
) -> list[Candidate]:
    seen: set[int] = set()
    kept = []
    for c in candidates:
        k = key(c)
        if k not in seen:
            seen.add(k)
            kept.append(c)
    return kept


def _underlying_post_id(c: Candidate) -> int:
    if c.post is not None and c.post.is_repost and c.post.reposted_id:
        return c.post.reposted_id
    return c.post_id


def _related_post_ids(c: Candidate) -> tuple[int, ...]:
    if c.post is None:
        return (c.post_id,)
    return tuple(i for i in (c.post_id, c.post.reposted_id, c.post.parent_id) if i)


def _related_author_ids(c: Candidate) -> tuple[int, ...]:
    if c.post is not None and c.post.is_repost and c.reposted is not None:
        return (c.author_id, c.reposted.author_id)
    return (c.author_id,)


def _texts(c: Candidate) -> tuple[str, ...]:
    if c.post is None:
        return ()
    if c.post.is_repost and c.reposted is not None:
        return (c.post.text, c.reposted.text)
    return (c.post.text,)
