"""Pre-scoring filters and the conversation dedup (DESIGN.md 7): one test per rule, each with a
candidate that must go and one that must stay, and the literal cases of X's filter tests
(home-mixer/filters/*.rs) restated."""

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
    VideoOnlyFilter,
    apply_filters,
    dedup_conversations,
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
    video_only = viewer_fields.pop("video_only", False)
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
    return FeedQuery(
        viewer=Viewer(**fields),
        now_ms=NOW_MS,
        seen_ids=seen,
        served_ids=served,
        video_only=video_only,
    )


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
        "video_only",
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
    oon_reply = cand(post(kind=REPLY, parent_id=root.post_id), in_network=False, parent=root)
    oon_repost = cand(post(kind=REPOST, reposted_id=root.post_id), in_network=False)
    oon_original = cand(post(), in_network=False)
    in_reply = cand(post(kind=REPLY, parent_id=root.post_id), in_network=True, parent=root)
    in_repost = cand(post(kind=REPOST, reposted_id=root.post_id), in_network=True)
    kept = OutOfNetworkReplyOrRepostFilter().apply(
        query(), [oon_reply, oon_original, in_reply, oon_repost, in_repost]
    )
    assert kept == [oon_original, in_reply, in_repost]


def test_x_case_replies_missing_their_ancestors_are_dropped_in_network_too() -> None:
    """oon_retweet_reply_filter.rs: of 1-6 and 8 (9 and 7 have no in-network value here),
    1 (OON repost), 2 (OON reply), 8 (in-network reply without ancestors) go."""
    parent = post()
    c1 = cand(post(kind=REPOST, reposted_id=pid()), in_network=False)
    c2 = cand(post(kind=REPLY, parent_id=parent.post_id), in_network=False, parent=parent)
    c3 = cand(post(), in_network=False)
    c4 = cand(post(kind=REPOST, reposted_id=pid()), in_network=True)
    c5 = cand(post(kind=REPLY, parent_id=parent.post_id), in_network=True, parent=parent)
    c6 = cand(post(), in_network=True)
    c8 = cand(post(kind=REPLY, parent_id=pid()), in_network=True)  # parent not in the store
    kept = OutOfNetworkReplyOrRepostFilter().apply(query(), [c1, c2, c3, c4, c5, c6, c8])
    assert kept == [c3, c4, c5, c6]


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


def test_x_case_simple_keyword() -> None:
    assert _muted(("spam",), "This is spam content", "This is good content") == [
        "This is spam content"
    ]


def test_x_case_keyword_mutes_the_hashtag_too() -> None:
    texts = ("#widget launch event", "widget speaks at summit", "unrelated product news")
    assert _muted(("widget",), *texts) == list(texts[:2])


def test_x_case_hashtag_keyword_mutes_only_the_hashtag() -> None:
    texts = ("#LAUNCH day", "support launch movement", "unrelated tweet")
    assert _muted(("#launch",), *texts) == ["#LAUNCH day"]


def test_x_case_keyword_mutes_the_mention() -> None:
    texts = ("Hey @exampleuser check this out", "exampleuser posted something", "different user")
    assert _muted(("exampleuser",), *texts) == list(texts[:2])


def test_x_case_phrase_needs_consecutive_tokens() -> None:
    texts = ("This is a crypto scam warning", "crypto is great, scam artists are bad", "unrelated")
    assert _muted(("crypto scam",), *texts) == ["This is a crypto scam warning"]


def test_x_case_several_keywords() -> None:
    texts = ("This is spam content", "This is a scam alert", "#blocked user posting", "good")
    assert _muted(("spam", "scam", "#blocked"), *texts) == list(texts[:3])


def test_x_case_case_insensitive() -> None:
    texts = ("This is SPAM content", "This is spam content", "This is SpAm content", "good")
    assert _muted(("SPAM",), *texts) == list(texts[:3])


def test_x_case_accent_insensitive() -> None:
    texts = ("I love café culture", "I love cafe culture", "I love coffee culture")
    assert _muted(("café",), *texts) == list(texts[:2])
    assert _muted(("cafe",), *texts) == list(texts[:2])  # "café" is muted by "cafe"


def test_x_case_every_candidate_removed_and_none() -> None:
    assert _muted(("spam",), "spam spam spam", "more spam here") == [
        "spam spam spam",
        "more spam here",
    ]
    assert _muted(("spam",)) == []
    assert _muted((), "This is spam content") == []


def test_x_case_punctuation_separates_tokens() -> None:
    texts = ("Buy bitcoin! It's great!!!", "bitcoin, ethereum, and more", "(bitcoin is volatile)")
    assert _muted(("bitcoin",), *texts, "stocks and bonds") == list(texts)


def test_muted_keyword_whole_tokens_only() -> None:
    removed = _muted(("art",), "a party tonight", "modern art", "artist talk", "smart move")
    assert removed == ["modern art"]


def test_muted_keyword_checks_a_reposts_original_text() -> None:
    original = post(text="Big spoilers inside", author=300)
    clean = post(text="nothing to see", author=301)
    repost_muted = cand(post(kind=REPOST, reposted_id=original.post_id), reposted=original)
    repost_clean = cand(post(kind=REPOST, reposted_id=clean.post_id), reposted=clean)
    q = query(muted_keywords=("spoilers",))
    assert MutedKeywordFilter().apply(q, [repost_muted, repost_clean]) == [repost_clean]


def test_muted_keyword_without_a_token_keeps_everything() -> None:
    candidates = [cand(post(text="anything at all"))]
    assert MutedKeywordFilter().apply(query(muted_keywords=("  ", "!!")), candidates) == candidates


@pytest.mark.parametrize("relation", ["blocked", "muted", "blocked_by"])
def test_blocked_or_muted_author(relation: str) -> None:
    bad, good = cand(post(author=500)), cand(post(author=501))
    q = query(**{relation: frozenset({500})})
    assert BlockedOrMutedAuthorFilter().apply(q, [bad, good]) == [good]


def test_x_case_blocked_and_muted_authors_go() -> None:
    """author_socialgraph_filter.rs: blocked 100, muted 300 of authors 100..400."""
    batch = [cand(post(author=a)) for a in (100, 200, 300, 400)]
    q = query(blocked=frozenset({100}), muted=frozenset({300}))
    assert [c.author_id for c in BlockedOrMutedAuthorFilter().apply(q, batch)] == [200, 400]


def test_x_case_quoted_author_blocked_or_blocking() -> None:
    blocked_quoted, blocking_quoted, fine = post(author=800), post(author=801), post(author=802)

    def quoting(q: Post) -> Candidate:
        return cand(post(author=500, quoted_id=q.post_id), quoted=q)

    batch = [quoting(blocked_quoted), quoting(blocking_quoted), quoting(fine)]
    q = query(blocked=frozenset({800}), blocked_by=frozenset({801}))
    assert BlockedOrMutedAuthorFilter().apply(q, batch) == [batch[2]]


def test_reposted_author_counts_when_the_viewer_blocks_them() -> None:
    """X checks a repost's reposted author against the viewer's blocks only."""
    by_blocked, by_muted = post(author=600), post(author=601)

    def repost_of(p: Post) -> Candidate:
        return cand(post(kind=REPOST, reposted_id=p.post_id, author=602), reposted=p)

    bad, kept = repost_of(by_blocked), repost_of(by_muted)
    q = query(blocked=frozenset({600}), muted=frozenset({601}))
    assert BlockedOrMutedAuthorFilter().apply(q, [bad, kept]) == [kept]


def test_video_only_keeps_videos_and_video_reposts() -> None:
    video = post(is_video=True)
    plain, video_repost = (
        cand(post()),
        cand(post(kind=REPOST, reposted_id=video.post_id, is_video=True)),
    )
    batch = [cand(video), plain, video_repost]
    assert VideoOnlyFilter().apply(query(video_only=True), batch) == [batch[0], video_repost]
    assert VideoOnlyFilter().apply(query(), batch) == batch


def test_x_case_conversation_dedup_keeps_the_best_per_conversation() -> None:
    """dedup_conversation_filter.rs: the key is the lowest ancestor (a repost's reposted post)."""
    # 10 (ancestors [1]) 0.5, 11 ([2, 1]) 0.9, 12 ([1]) 0.7, 20 ([2]) 0.3 -> 11 and 20
    assert dedup_conversations([1, 1, 1, 2], [0.5, 0.9, 0.7, 0.3]) == [1, 3]
    assert dedup_conversations([42, 42], [1.0, 1.0]) == [0]  # a tie keeps the first
    assert dedup_conversations([1, 2], [1.0, 2.0]) == [0, 1]  # no shared conversation
    # a repost of 1 and a reply under 1: one survives, the better
    assert dedup_conversations([1, 1], [0.5, 0.9]) == [1]
    assert dedup_conversations([1, 1], [0.4, 0.8]) == [1]


def test_conversation_keys_of_replies_and_reposts() -> None:
    root = post()
    reply = cand(post(kind=REPLY, parent_id=root.post_id, conversation_id=root.post_id))
    repost = cand(post(kind=REPOST, reposted_id=root.post_id))
    original = cand(root)
    assert reply.conversation_id == repost.conversation_id == original.conversation_id
    assert ConversationDedup().apply(None, [reply, repost, original]) == [reply]


def test_apply_filters_counts_removals() -> None:
    p = post()
    own = cand(post(author=VIEWER))
    kept, removed = apply_filters(PRE_SCORING_FILTERS, query(), [cand(p), cand(p), own])
    assert ids(kept) == [p.post_id]
    assert removed["duplicate"] == 1
    assert removed["own_post"] == 1
    assert sum(removed.values()) == 2
