"""Pre-scoring filters and the conversation dedup (DESIGN.md 7): one test per rule, each with a
candidate that must go and one that must stay."""

from __future__ import annotations

import dataclasses

import pytest

from orchestrator.pipeline.candidate import RETRIEVAL, THUNDER, Candidate, FeedQuery
from orchestrator.pipeline.filters import (
    PRE_SCORING_FILTERS,
    AuthorUnknownFilter,
    BlockedOrMutedAuthorFilter,
    ConversationDedup,
    DuplicateFilter,
    MutedKeywordFilter,
    OutOfNetworkReplyOrRepostFilter,
    OwnPostFilter,
    PreviouslySeenFilter,
    RepeatedRepostFilter,
    TooOldFilter,
    apply_filters,
    default_filters,
)
from orchestrator.state.posts import Post
from orchestrator.state.viewers import Viewer
from phoenix.snowflake import snowflake_id
from phoenix.world.schema import ORIGINAL, REPLY, REPOST

NOW_MS = 1_790_000_000_000  # September 2026
HOUR_MS = 3600 * 1000
VIEWER = 7
_seq = iter(range(1, 1 << 20))


def pid(age_ms: int = HOUR_MS) -> int:
    """A fresh snowflake post id created `age_ms` before NOW_MS."""
    return int(snowflake_id(NOW_MS - age_ms, next(_seq)))


def post(
    post_id: int | None = None,
    author: int = 100,
    kind: int = ORIGINAL,
    text: str = "",
    **kw: int,
) -> Post:
    return Post(post_id=post_id or pid(), author_id=author, kind=kind, text=text, **kw)


def cand(p: Post | None, *, post_id: int | None = None, in_network: bool = True, **kw) -> Candidate:
    post_id = post_id if post_id is not None else p.post_id  # type: ignore[union-attr]
    source = THUNDER if in_network else RETRIEVAL
    return Candidate(
        post_id=post_id, source=source, in_network=in_network, post=p, author_known=True, **kw
    )


def query(**viewer_fields) -> FeedQuery:
    seen = viewer_fields.pop("seen_ids", frozenset())
    served = viewer_fields.pop("served_ids", frozenset())
    fields = {
        "viewer_id": VIEWER,
        "following": (),
        "followers": frozenset(),
        "blocked": frozenset(),
        "blocked_by": frozenset(),
        "muted": frozenset(),
        "muted_keywords": (),
    }
    fields.update(viewer_fields)
    return FeedQuery(viewer=Viewer(**fields), now_ms=NOW_MS, seen_ids=seen, served_ids=served)


def ids(candidates: list[Candidate]) -> list[int]:
    return [c.post_id for c in candidates]


def test_filters_never_mutate_their_input() -> None:
    p = post()
    candidates = [cand(p), cand(p, in_network=False), cand(None, post_id=pid())]
    before = list(candidates)
    q = query()
    for f in (*PRE_SCORING_FILTERS, ConversationDedup()):
        f.apply(q, candidates)
        assert candidates == before, f.name


def test_default_chain_order_and_names() -> None:
    assert [f.name for f in PRE_SCORING_FILTERS] == [
        "duplicate",
        "author_unknown",
        "too_old",
        "own_post",
        "out_of_network_reply_or_repost",
        "repeated_repost",
        "previously_seen",
        "muted_keyword",
        "blocked_or_muted_author",
    ]
    chain = default_filters(max_age_ms=HOUR_MS)
    assert [f.name for f in chain] == [f.name for f in PRE_SCORING_FILTERS]
    assert next(f for f in chain if isinstance(f, TooOldFilter)).max_age_ms == HOUR_MS


def test_duplicate_keeps_first_occurrence_which_is_in_network() -> None:
    a, b = post(), post()
    first = cand(a, in_network=True)
    second = cand(a, in_network=False)
    other = cand(b, in_network=False)
    kept = DuplicateFilter().apply(query(), [first, other, second])
    assert kept == [first, other]
    assert kept[0].in_network


def test_author_unknown() -> None:
    known = cand(post())
    missing_post = cand(None, post_id=pid())
    unknown_author = dataclasses.replace(cand(post()), author_known=False)
    kept = AuthorUnknownFilter().apply(query(), [missing_post, known, unknown_author])
    assert kept == [known]


def test_too_old_at_48_hours_and_from_the_future() -> None:
    fresh = cand(post(pid(47 * HOUR_MS)))
    edge = cand(post(pid(48 * HOUR_MS)))
    old = cand(post(pid(48 * HOUR_MS + 1)))
    future = cand(post(pid(-1000)))
    kept = TooOldFilter().apply(query(), [old, fresh, future, edge])
    assert kept == [fresh, edge]


def test_too_old_max_age_is_configurable() -> None:
    two_hours = cand(post(pid(2 * HOUR_MS)))
    kept = TooOldFilter(max_age_ms=HOUR_MS).apply(query(), [two_hours])
    assert kept == []
    assert TooOldFilter(max_age_ms=3 * HOUR_MS).apply(query(), [two_hours]) == [two_hours]
    with pytest.raises(ValueError, match="max_age_ms"):
        TooOldFilter(max_age_ms=-1)


def test_own_post() -> None:
    mine = cand(post(author=VIEWER))
    theirs = cand(post(author=VIEWER + 1))
    assert OwnPostFilter().apply(query(), [mine, theirs]) == [theirs]


def test_out_of_network_replies_and_reposts() -> None:
    root = post()
    oon_reply = cand(post(kind=REPLY, parent_id=root.post_id), in_network=False)
    oon_repost = cand(post(kind=REPOST, reposted_id=root.post_id), in_network=False)
    oon_original = cand(post(), in_network=False)
    in_reply = cand(post(kind=REPLY, parent_id=root.post_id), in_network=True)
    in_repost = cand(post(kind=REPOST, reposted_id=root.post_id), in_network=True)
    kept = OutOfNetworkReplyOrRepostFilter().apply(
        query(), [oon_reply, oon_original, in_reply, oon_repost, in_repost]
    )
    assert kept == [oon_original, in_reply, in_repost]


def test_repeated_reposts_keep_first_occurrence_of_the_underlying_post() -> None:
    original = post()
    repost_a = cand(post(kind=REPOST, reposted_id=original.post_id, author=201))
    repost_b = cand(post(kind=REPOST, reposted_id=original.post_id, author=202))
    orig = cand(original)
    unrelated_repost = cand(post(kind=REPOST, reposted_id=post().post_id))
    f = RepeatedRepostFilter()
    assert f.apply(query(), [repost_a, orig, repost_b, unrelated_repost]) == [
        repost_a,
        unrelated_repost,
    ]
    assert f.apply(query(), [orig, repost_a, unrelated_repost]) == [orig, unrelated_repost]


@pytest.mark.parametrize("via", ["seen", "served"])
def test_previously_seen_post(via: str) -> None:
    seen, fresh = cand(post()), cand(post())
    q = query(**{f"{via}_ids": frozenset({seen.post_id})})
    assert PreviouslySeenFilter().apply(q, [seen, fresh]) == [fresh]


def test_previously_seen_via_reposted_post() -> None:
    original, other = post(), post()
    repost_of_seen = cand(post(kind=REPOST, reposted_id=original.post_id))
    repost_of_unseen = cand(post(kind=REPOST, reposted_id=other.post_id))
    q = query(seen_ids=frozenset({original.post_id}))
    assert PreviouslySeenFilter().apply(q, [repost_of_seen, repost_of_unseen]) == [repost_of_unseen]


def test_previously_seen_via_parent() -> None:
    parent, other = post(), post()
    reply_to_served = cand(post(kind=REPLY, parent_id=parent.post_id))
    reply_to_unseen = cand(post(kind=REPLY, parent_id=other.post_id))
    q = query(served_ids=frozenset({parent.post_id}))
    assert PreviouslySeenFilter().apply(q, [reply_to_served, reply_to_unseen]) == [reply_to_unseen]


def _muted(keywords: tuple[str, ...], *texts: str) -> list[str]:
    """The texts the muted-keyword filter removes."""
    candidates = [cand(post(text=t)) for t in texts]
    kept = MutedKeywordFilter().apply(query(muted_keywords=keywords), candidates)
    return [c.post.text for c in candidates if c not in kept]  # type: ignore[union-attr]


def test_muted_keyword_whole_words_only() -> None:
    removed = _muted(("art",), "a party tonight", "modern art", "artist talk", "smart move")
    assert removed == ["modern art"]


def test_muted_keyword_is_case_insensitive() -> None:
    assert _muted(("Art",), "MODERN ART museum", "no match") == ["MODERN ART museum"]
    assert _muted(("spoilers",), "No SpOiLeRs here") == ["No SpOiLeRs here"]


def test_muted_keyword_punctuation_is_a_word_boundary() -> None:
    texts = ("I love art!", "(art)", "art, music", "#art", "art's", "party-time", "arty")
    assert _muted(("art",), *texts) == ["I love art!", "(art)", "art, music", "#art", "art's"]


def test_muted_keyword_phrase_matches_consecutive_whole_words() -> None:
    texts = (
        "Game of Thrones: the finale",  # not the phrase
        "the game finale tonight",  # words consecutive
        "The GAME, finale!",  # punctuation between
        "game tonight, then the finale",  # both words, not consecutive
        "endgame finale",  # not a whole word
        "game finales",  # not a whole word
    )
    assert _muted(("game finale",), *texts) == ["the game finale tonight", "The GAME, finale!"]


def test_muted_keyword_escapes_regex_characters() -> None:
    assert _muted(("c++",), "I write c++ daily", "c and cpp", "cxx") == ["I write c++ daily"]
    assert _muted(("a.b",), "axb", "see a.b now") == ["see a.b now"]


def test_muted_keyword_checks_reposted_text() -> None:
    original = post(text="Big spoilers inside", author=300)
    clean = post(text="nothing to see", author=301)
    repost_muted = cand(post(kind=REPOST, reposted_id=original.post_id), reposted=original)
    repost_clean = cand(post(kind=REPOST, reposted_id=clean.post_id), reposted=clean)
    q = query(muted_keywords=("spoilers",))
    assert MutedKeywordFilter().apply(q, [repost_muted, repost_clean]) == [repost_clean]


def test_muted_keyword_without_keywords_keeps_everything() -> None:
    candidates = [cand(post(text="anything at all"))]
    assert MutedKeywordFilter().apply(query(muted_keywords=("  ",)), candidates) == candidates


@pytest.mark.parametrize("relation", ["blocked", "muted", "blocked_by"])
def test_blocked_or_muted_author(relation: str) -> None:
    bad, good = cand(post(author=500)), cand(post(author=501))
    q = query(**{relation: frozenset({500})})
    assert BlockedOrMutedAuthorFilter().apply(q, [bad, good]) == [good]


def test_repost_of_a_muted_authors_post() -> None:
    by_muted, by_other = post(author=600), post(author=601)
    repost_bad = cand(
        post(kind=REPOST, reposted_id=by_muted.post_id, author=602), reposted=by_muted
    )
    repost_good = cand(
        post(kind=REPOST, reposted_id=by_other.post_id, author=602), reposted=by_other
    )
    q = query(muted=frozenset({600}))
    assert BlockedOrMutedAuthorFilter().apply(q, [repost_bad, repost_good]) == [repost_good]


def test_conversation_dedup_keeps_best_scored_in_order() -> None:
    root = post()
    a = cand(post(), score=0.5)
    low = cand(post(kind=REPLY, parent_id=root.post_id, conversation_id=root.post_id), score=0.1)
    high = cand(post(kind=REPLY, parent_id=root.post_id, conversation_id=root.post_id), score=0.9)
    kept = ConversationDedup().apply(None, [low, a, high])
    assert kept == [a, high]


def test_conversation_dedup_tie_keeps_first() -> None:
    root = post()
    first = cand(root, score=0.3)
    second = cand(post(kind=REPLY, conversation_id=root.post_id), score=0.3)
    assert ConversationDedup().apply(None, [first, second]) == [first]


def test_apply_filters_counts_removals() -> None:
    p = post()
    own = cand(post(author=VIEWER))
    kept, removed = apply_filters(PRE_SCORING_FILTERS, query(), [cand(p), cand(p), own])
    assert ids(kept) == [p.post_id]
    assert removed["duplicate"] == 1
    assert removed["own_post"] == 1
    assert sum(removed.values()) == 2
