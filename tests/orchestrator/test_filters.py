"""Pre-scoring filters and the conversation dedup (docs/DESIGN.md §7): one test per rule, each with
a candidate that must go and one that must stay, and the literal cases of X's filter tests
(home-mixer/filters/*.rs) restated."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from orchestrator.pipeline.candidate import RETRIEVAL, THUNDER, Candidates, FeedQuery
from orchestrator.pipeline.filters import (
    PRE_SCORING_FILTERS,
    AuthorUnknownFilter,
    BlockedOrMutedAuthorFilter,
    DuplicateFilter,
    Filter,
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
from orchestrator.pipeline.hydrator import PostHydrator
from orchestrator.state.posts import InMemoryPostStore, Post
from orchestrator.state.viewers import InMemoryViewerStore, Viewer
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


@dataclass(frozen=True)
class Spec:
    """One candidate to build: its post (None: an id the store does not hold)."""

    post: Post | None
    post_id: int
    in_network: bool
    author_known: bool


def cand(
    p: Post | None,
    *,
    post_id: int | None = None,
    in_network: bool = True,
    author_known: bool = True,
) -> Spec:
    post_id = post_id if post_id is not None else p.post_id  # type: ignore[union-attr]
    return Spec(p, post_id, in_network, author_known)


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


def hydrated(q: FeedQuery, specs: list[Spec], known: tuple[Post, ...] = ()) -> Candidates:
    """The specs as one batch, hydrated by the real hydrator from a store holding their posts
    and `known` (the parents, reposted and quoted posts that exist); Thunder gives the in-network
    ones, retrieval the others. Every author is a known account unless the spec says not."""
    posts = [s.post for s in specs if s.post is not None] + list(known)
    store = InMemoryPostStore(posts)
    viewers = InMemoryViewerStore()
    for author in {p.author_id for p in posts}:
        viewers.add_user(author)
    parts = [
        Candidates.of(THUNDER if s.in_network else RETRIEVAL, [s.post_id], s.in_network)
        for s in specs
    ]
    batch = Candidates.concat(parts) if parts else Candidates.empty()
    PostHydrator(store, viewers).hydrate(q, batch)
    batch.author_known &= np.array([s.author_known for s in specs], np.bool_)
    return batch


def kept(f: Filter, q: FeedQuery, specs: list[Spec], known: tuple[Post, ...] = ()) -> list[int]:
    """Positions (in `specs`) of the candidates `f` keeps."""
    return np.flatnonzero(f.apply(q, hydrated(q, specs, known))).tolist()


def test_filters_never_change_their_input() -> None:
    p = post()
    q = query(muted_keywords=("spam",), blocked=frozenset({100}))
    batch = hydrated(q, [cand(p), cand(p, in_network=False), cand(None, post_id=pid())])
    before = {k: None if v is None else v.copy() for k, v in vars(batch).items()}
    for f in PRE_SCORING_FILTERS:
        f.apply(q, batch)
        for k, v in vars(batch).items():
            assert (v is None and before[k] is None) or np.array_equal(
                v, before[k], equal_nan=v.dtype.kind == "f"
            ), (f.name, k)


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
    q = query()
    batch = hydrated(q, [first, other, second])
    keep = DuplicateFilter().apply(q, batch)
    assert np.flatnonzero(keep).tolist() == [0, 1]
    assert batch.in_network[keep].tolist() == [True, False]


def test_author_unknown() -> None:
    known = cand(post())
    missing_post = cand(None, post_id=pid())
    unknown_author = cand(post(), author_known=False)
    assert kept(AuthorUnknownFilter(), query(), [missing_post, known, unknown_author]) == [1]


def test_too_old_at_48_hours_and_from_the_future() -> None:
    fresh = cand(post(pid(47 * HOUR_MS)))
    edge = cand(post(pid(48 * HOUR_MS)))
    old = cand(post(pid(48 * HOUR_MS + 1)))
    future = cand(post(pid(-1000)))
    assert kept(TooOldFilter(), query(), [old, fresh, future, edge]) == [1, 3]


def test_too_old_max_age_is_configurable() -> None:
    two_hours = cand(post(pid(2 * HOUR_MS)))
    assert kept(TooOldFilter(max_age_ms=HOUR_MS), query(), [two_hours]) == []
    assert kept(TooOldFilter(max_age_ms=3 * HOUR_MS), query(), [two_hours]) == [0]
    with pytest.raises(ValueError, match="max_age_ms"):
        TooOldFilter(max_age_ms=-1)


def test_own_post() -> None:
    mine = cand(post(author=VIEWER))
    theirs = cand(post(author=VIEWER + 1))
    assert kept(OwnPostFilter(), query(), [mine, theirs]) == [1]


def test_out_of_network_replies_and_reposts() -> None:
    root = post()
    oon_reply = cand(post(kind=REPLY, parent_id=root.post_id), in_network=False)
    oon_repost = cand(post(kind=REPOST, reposted_id=root.post_id), in_network=False)
    oon_original = cand(post(), in_network=False)
    in_reply = cand(post(kind=REPLY, parent_id=root.post_id), in_network=True)
    in_repost = cand(post(kind=REPOST, reposted_id=root.post_id), in_network=True)
    batch = [oon_reply, oon_original, in_reply, oon_repost, in_repost]
    assert kept(OutOfNetworkReplyOrRepostFilter(), query(), batch, known=(root,)) == [1, 2, 4]


def test_x_case_replies_missing_their_ancestors_are_dropped_in_network_too() -> None:
    """oon_retweet_reply_filter.rs: of 1-6 and 8 (9 and 7 have no in-network value here),
    1 (OON repost), 2 (OON reply), 8 (in-network reply without ancestors) go."""
    parent = post()
    c1 = cand(post(kind=REPOST, reposted_id=pid()), in_network=False)
    c2 = cand(post(kind=REPLY, parent_id=parent.post_id), in_network=False)
    c3 = cand(post(), in_network=False)
    c4 = cand(post(kind=REPOST, reposted_id=pid()), in_network=True)
    c5 = cand(post(kind=REPLY, parent_id=parent.post_id), in_network=True)
    c6 = cand(post(), in_network=True)
    c8 = cand(post(kind=REPLY, parent_id=pid()), in_network=True)  # parent not in the store
    batch = [c1, c2, c3, c4, c5, c6, c8]
    assert kept(OutOfNetworkReplyOrRepostFilter(), query(), batch, known=(parent,)) == [2, 3, 4, 5]


def test_repeated_reposts_keep_first_occurrence_of_the_underlying_post() -> None:
    original = post()
    repost_a = cand(post(kind=REPOST, reposted_id=original.post_id, author=201))
    repost_b = cand(post(kind=REPOST, reposted_id=original.post_id, author=202))
    orig = cand(original)
    unrelated_repost = cand(post(kind=REPOST, reposted_id=post().post_id))
    f = RepeatedRepostFilter()
    assert kept(f, query(), [repost_a, orig, repost_b, unrelated_repost]) == [0, 3]
    assert kept(f, query(), [orig, repost_a, unrelated_repost]) == [0, 2]


@pytest.mark.parametrize("via", ["seen", "served"])
def test_previously_seen_post(via: str) -> None:
    seen, fresh = cand(post()), cand(post())
    q = query(**{f"{via}_ids": frozenset({seen.post_id})})
    assert kept(PreviouslySeenFilter(), q, [seen, fresh]) == [1]


def test_previously_seen_via_reposted_post() -> None:
    original, other = post(), post()
    repost_of_seen = cand(post(kind=REPOST, reposted_id=original.post_id))
    repost_of_unseen = cand(post(kind=REPOST, reposted_id=other.post_id))
    q = query(seen_ids=frozenset({original.post_id}))
    assert kept(PreviouslySeenFilter(), q, [repost_of_seen, repost_of_unseen]) == [1]


def test_previously_seen_via_parent() -> None:
    parent, other = post(), post()
    reply_to_served = cand(post(kind=REPLY, parent_id=parent.post_id))
    reply_to_unseen = cand(post(kind=REPLY, parent_id=other.post_id))
    q = query(served_ids=frozenset({parent.post_id}))
    assert kept(PreviouslySeenFilter(), q, [reply_to_served, reply_to_unseen]) == [1]


def _muted(keywords: tuple[str, ...], *texts: str) -> list[str]:
    """The texts the muted-keyword filter removes."""
    specs = [cand(post(text=t)) for t in texts]
    kept_at = set(kept(MutedKeywordFilter(), query(muted_keywords=keywords), specs))
    return [s.post.text for i, s in enumerate(specs) if i not in kept_at]  # type: ignore[union-attr]


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
    repost_muted = cand(post(kind=REPOST, reposted_id=original.post_id, text="RT"))
    repost_clean = cand(post(kind=REPOST, reposted_id=clean.post_id, text="spoilers"))
    q = query(muted_keywords=("spoilers",))
    specs = [repost_muted, repost_clean]
    assert kept(MutedKeywordFilter(), q, specs, known=(original, clean)) == [1]


def test_muted_keyword_matches_on_each_candidates_own_line() -> None:
    """The batch's texts are searched together: a phrase split across two posts matches none,
    and a match in the last or the first text removes that one only."""
    texts = ("the crypto", "scam is here", "just crypto", "ok", "crypto scam")
    assert _muted(("crypto scam",), *texts) == ["crypto scam"]
    assert _muted(("the",), *texts) == ["the crypto"]


def test_muted_keyword_without_a_token_keeps_everything() -> None:
    specs = [cand(post(text="anything at all"))]
    assert kept(MutedKeywordFilter(), query(muted_keywords=("  ", "!!")), specs) == [0]


def test_muted_keyword_needs_hydrated_text() -> None:
    q = query(muted_keywords=("spam",))
    batch = hydrated(query(), [cand(post(text="spam"))])  # hydrated for a viewer muting nothing
    with pytest.raises(ValueError, match="text"):
        MutedKeywordFilter().apply(q, batch)


@pytest.mark.parametrize("relation", ["blocked", "muted", "blocked_by"])
def test_blocked_or_muted_author(relation: str) -> None:
    bad, good = cand(post(author=500)), cand(post(author=501))
    q = query(**{relation: frozenset({500})})
    assert kept(BlockedOrMutedAuthorFilter(), q, [bad, good]) == [1]


def test_x_case_blocked_and_muted_authors_go() -> None:
    """author_socialgraph_filter.rs: blocked 100, muted 300 of authors 100..400."""
    specs = [cand(post(author=a)) for a in (100, 200, 300, 400)]
    q = query(blocked=frozenset({100}), muted=frozenset({300}))
    batch = hydrated(q, specs)
    keep = BlockedOrMutedAuthorFilter().apply(q, batch)
    assert batch.author_id[keep].tolist() == [200, 400]


def test_x_case_quoted_author_blocked_or_blocking() -> None:
    blocked_quoted, blocking_quoted, fine = post(author=800), post(author=801), post(author=802)

    def quoting(q: Post) -> Spec:
        return cand(post(author=500, quoted_id=q.post_id))

    specs = [quoting(blocked_quoted), quoting(blocking_quoted), quoting(fine)]
    q = query(blocked=frozenset({800}), blocked_by=frozenset({801}))
    known = (blocked_quoted, blocking_quoted, fine)
    assert kept(BlockedOrMutedAuthorFilter(), q, specs, known) == [2]


def test_reposted_author_counts_when_the_viewer_blocks_them() -> None:
    """X checks a repost's reposted author against the viewer's blocks only."""
    by_blocked, by_muted = post(author=600), post(author=601)

    def repost_of(p: Post) -> Spec:
        return cand(post(kind=REPOST, reposted_id=p.post_id, author=602))

    bad, fine = repost_of(by_blocked), repost_of(by_muted)
    q = query(blocked=frozenset({600}), muted=frozenset({601}))
    assert kept(BlockedOrMutedAuthorFilter(), q, [bad, fine], (by_blocked, by_muted)) == [1]


def test_a_repost_names_its_author_when_the_original_is_not_stored() -> None:
    """Without the reposted post in the store, the author the repost names counts."""
    gone = post(author=600)
    repost = cand(post(kind=REPOST, reposted_id=gone.post_id, author=602, reposted_author_id=600))
    q = query(blocked=frozenset({600}))
    assert kept(BlockedOrMutedAuthorFilter(), q, [repost]) == []
    assert kept(BlockedOrMutedAuthorFilter(), query(blocked=frozenset({601})), [repost]) == [0]


def test_video_only_keeps_videos_and_video_reposts() -> None:
    video = post(is_video=True)
    plain, video_repost = (
        cand(post()),
        cand(post(kind=REPOST, reposted_id=video.post_id, is_video=True)),
    )
    specs = [cand(video), plain, video_repost]
    assert kept(VideoOnlyFilter(), query(video_only=True), specs) == [0, 2]
    assert kept(VideoOnlyFilter(), query(), specs) == [0, 1, 2]


def test_x_case_conversation_dedup_keeps_the_best_per_conversation() -> None:
    """dedup_conversation_filter.rs: the key is the lowest ancestor (a repost's reposted post)."""

    def dedup(keys: list[int], scores: list[float]) -> list[int]:
        return dedup_conversations(keys, scores).tolist()

    # 10 (ancestors [1]) 0.5, 11 ([2, 1]) 0.9, 12 ([1]) 0.7, 20 ([2]) 0.3 -> 11 and 20
    assert dedup([1, 1, 1, 2], [0.5, 0.9, 0.7, 0.3]) == [1, 3]
    assert dedup([42, 42], [1.0, 1.0]) == [0]  # a tie keeps the first
    assert dedup([1, 2], [1.0, 2.0]) == [0, 1]  # no shared conversation
    # a repost of 1 and a reply under 1: one survives, the better
    assert dedup([1, 1], [0.5, 0.9]) == [1]
    assert dedup([1, 1], [0.4, 0.8]) == [1]
    assert dedup([], []) == []


def test_conversation_dedup_keeps_each_conversations_first_slot() -> None:
    # conversations 7, 3, 7, 5, 3: 7's best is its second post, in 7's first slot
    assert dedup_conversations([7, 3, 7, 5, 3], [0.1, 0.9, 0.8, 0.2, 0.9]).tolist() == [2, 1, 3]


def test_conversation_keys_of_replies_and_reposts() -> None:
    root = post()
    reply = cand(post(kind=REPLY, parent_id=root.post_id, conversation_id=root.post_id))
    repost = cand(post(kind=REPOST, reposted_id=root.post_id))
    original = cand(root)
    batch = hydrated(query(), [reply, repost, original])
    assert batch.conversation_id.tolist() == [root.post_id] * 3
    assert dedup_conversations(batch.conversation_id, np.zeros(3)).tolist() == [0]
    missing = hydrated(query(), [cand(None, post_id=12345)])
    assert missing.conversation_id.tolist() == [12345]  # not in the store: its own


def test_apply_filters_counts_removals() -> None:
    p = post()
    own = cand(post(author=VIEWER))
    q = query()
    batch = hydrated(q, [cand(p), cand(p), own])
    removed_ids: dict[str, list[int]] = {}
    survivors, removed = apply_filters(PRE_SCORING_FILTERS, q, batch, removed_ids)
    assert survivors.post_id.tolist() == [p.post_id]
    assert removed["duplicate"] == 1
    assert removed["own_post"] == 1
    assert sum(removed.values()) == 2
    assert removed_ids["duplicate"] == [p.post_id]
    assert removed_ids["own_post"] == [own.post_id]
    assert removed_ids["too_old"] == []


def test_each_removal_counts_once_under_the_first_filter_that_removes_it() -> None:
    """A candidate several filters would drop counts for the first of them in chain order."""
    mine = post(author=VIEWER)
    old_and_mine = post(pid(49 * HOUR_MS), author=VIEWER)
    original = post(author=300)
    repost = post(kind=REPOST, reposted_id=original.post_id, author=301)
    specs = [cand(mine), cand(mine), cand(old_and_mine), cand(original), cand(repost), cand(post())]
    q = query()
    removed_ids: dict[str, list[int]] = {}
    survivors, removed = apply_filters(PRE_SCORING_FILTERS, q, hydrated(q, specs), removed_ids)
    assert removed_ids["duplicate"] == [mine.post_id]
    assert removed_ids["too_old"] == [old_and_mine.post_id]
    assert removed_ids["own_post"] == [mine.post_id]
    assert removed_ids["repeated_repost"] == [repost.post_id]
    assert sum(removed.values()) == 4 and len(survivors) == 2
    assert survivors.post_id.tolist() == [original.post_id, specs[-1].post_id]
