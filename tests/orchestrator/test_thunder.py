"""`orchestrator.thunder`: one test per rule of docs/DESIGN.md §6 on small hand-built stores, then
the vectorised lookup against a literal, loop-by-loop reading of the spec on random stores."""

from __future__ import annotations

import random
import threading
from collections.abc import Collection, Sequence

import numpy as np
import pytest
from pydantic import ValidationError

from orchestrator.state.posts import Post
from orchestrator.thunder import Thunder, ThunderSettings
from phoenix.errors import InputError
from phoenix.snowflake import snowflake_id
from phoenix.world.schema import ORIGINAL, REPLY, REPOST

NOW = 1_785_542_400_000  # 2026-08-01T00:00:00Z
HOUR = 3_600_000
A, B, C, D = 101, 102, 103, 104  # authors
VIEWER = 900

_seq = iter(range(1, 1 << 22))


def pid(age_ms: float) -> int:
    """A fresh id created `age_ms` before NOW (negative: in the future)."""
    return int(snowflake_id(NOW - round(age_ms), next(_seq)))


def original(author: int, age_ms: float, **kw: object) -> Post:
    post_id = pid(age_ms)
    return Post(post_id, author, ORIGINAL, conversation_id=post_id, **kw)  # type: ignore[arg-type]


def reply(author: int, age_ms: float, parent: Post) -> Post:
    return Post(
        pid(age_ms), author, REPLY, parent_id=parent.post_id, conversation_id=parent.thread_id
    )


def repost(
    author: int, age_ms: float, of: Post | int, *, is_video: bool = False, of_author: int = 0
) -> Post:
    """A repost; it names the reposted author (`of_author`, else the reposted post's)."""
    target = of if isinstance(of, int) else of.post_id
    source_user = of_author or (0 if isinstance(of, int) else of.author_id)
    post_id = pid(age_ms)
    return Post(
        post_id, author, REPOST, reposted_id=target, conversation_id=post_id, is_video=is_video,
        reposted_author_id=source_user,
    )  # fmt: skip


def store(*posts: Post, **settings: object) -> Thunder:
    thunder = Thunder(ThunderSettings(**settings))  # type: ignore[arg-type]
    for post in posts:
        assert thunder.ingest(post)
    return thunder


def ids(posts: Sequence[Post]) -> list[int]:
    return [p.post_id for p in posts]


def look(thunder: Thunder, following: Sequence[int], **kw: object) -> list[int]:
    kw.setdefault("now_ms", NOW)
    return ids(thunder.lookup(kw.pop("viewer", VIEWER), following, **kw))  # type: ignore[arg-type]


# ---------------------------------------------------------------- settings


def test_settings_are_x_defaults_frozen_and_validated() -> None:
    s = ThunderSettings()
    assert (s.retention_hours, s.max_followed, s.max_scanned_per_author) == (48, 10_000, 500)
    assert (s.max_originals_per_author, s.max_replies_per_author) == (50, 30)
    assert (s.max_videos_per_author, s.max_results, s.max_video_results) == (100, 1_200, 600)
    assert s.retention_ms == 48 * HOUR
    with pytest.raises(ValidationError):
        ThunderSettings(max_followed=0)
    with pytest.raises(ValidationError):
        ThunderSettings(retention_hours=0)
    with pytest.raises(ValidationError):
        ThunderSettings(max_result=5)  # type: ignore[call-arg]  # a typo is refused
    with pytest.raises(ValidationError):
        s.max_results = 5  # type: ignore[misc]


# ---------------------------------------------------------------- time


def test_retention_keeps_47h_drops_49h_and_the_future() -> None:
    p47, p49 = original(A, 47 * HOUR), original(A, 49 * HOUR)
    edge = Post(int(snowflake_id(NOW - 48 * HOUR, 0)), A)  # the first id of that millisecond
    now = original(A, 0)
    future = original(A, -1)  # one millisecond after NOW
    thunder = store(p49, edge, p47, now, future)  # oldest first: none is past the clock
    assert look(thunder, [A]) == ids([now, p47, edge])
    assert look(thunder, [A], now_ms=NOW + 1) == ids([future, now, p47])  # edge is now too old
    assert look(thunder, [A], now_ms=NOW - 2 * HOUR) == ids([p47, edge, p49])


def test_ingest_refuses_posts_already_past_retention_of_the_clock() -> None:
    thunder = store(original(A, 0))  # the clock is NOW
    assert not thunder.ingest(original(A, 49 * HOUR))
    assert thunder.ingest(original(A, 47 * HOUR))
    assert thunder.expire(NOW + 10 * HOUR) == 1  # the clock moves on: the 47 h post goes
    assert not thunder.ingest(original(A, 40 * HOUR))  # 50 h old at the new clock
    assert thunder.ingest(original(A, 37 * HOUR))
    assert thunder.ingest_many([original(B, 41 * HOUR), original(B, 30 * HOUR)]) == 1
    assert len(thunder) == 3


def test_expire_drops_old_posts_and_keeps_links_of_the_rest() -> None:
    root = original(B, 30 * HOUR)
    old1, old2 = original(A, 50 * HOUR), original(A, 49 * HOUR)
    answer, fresh = reply(A, 1 * HOUR, root), original(A, 2 * HOUR)
    thunder = store(old1, old2, root, fresh, answer)
    assert thunder.expire(NOW) == 2
    assert len(thunder) == 3
    assert thunder.get(old1.post_id) is None and thunder.get(root.post_id) == root
    assert thunder.expire(NOW) == 0
    # The reply's parent link survives the renumbering the expire did.
    assert look(thunder, [A]) == ids([answer, fresh])
    assert thunder.expire(NOW + 31 * HOUR) == 1  # the root, 61 h old by then
    assert look(thunder, [A], now_ms=NOW + 31 * HOUR) == [fresh.post_id]  # the reply lost it


# ---------------------------------------------------------------- per-author limits


def test_per_author_caps_of_50_originals_and_30_replies_and_reposts() -> None:
    root = original(B, 10 * HOUR)
    originals = [original(A, 60_000 * (i + 1)) for i in range(60)]
    secondary = [
        reply(A, 60_000 * (i + 1) + 1, root) if i % 2 else repost(A, 60_000 * (i + 1) + 1, root)
        for i in range(40)
    ]
    thunder = store(root, *originals, *secondary)
    got = look(thunder, [A])
    assert got == sorted(ids(originals[:50]) + ids(secondary[:30]), reverse=True)


def test_video_lookup_uses_the_video_list_with_100_per_author() -> None:
    videos = [original(A, 60_000 * (i + 1), is_video=True) for i in range(120)]
    plain = original(A, 1_000)
    thunder = store(plain, *videos)
    assert look(thunder, [A], video=True) == ids(videos[:100])
    assert look(thunder, [A])[:50] == ids([plain, *videos[:49]])  # 50 originals otherwise


def test_scan_limit_of_500_entries_counts_excluded_ones() -> None:
    posts = [original(A, 60_000 * (i + 1)) for i in range(600)]  # newest first
    thunder = store(*posts)
    newest_500 = ids(posts[:500])
    assert look(thunder, [A], exclude=newest_500) == []  # the 100 older are never reached
    assert look(thunder, [A], exclude=newest_500[:499]) == [posts[499].post_id]


def test_scan_limit_counts_deleted_posts() -> None:
    """X leaves a deleted post's entry in its author's list: it still uses up the scan."""
    posts = [original(A, 60_000 * (i + 1)) for i in range(510)]  # newest first
    thunder = store(*posts)
    assert len(look(thunder, [A], max_results=1_000)) == 50
    for p in posts[:499]:
        thunder.delete(p.post_id)
    assert look(thunder, [A]) == [posts[499].post_id]  # the 10 older are never reached
    thunder.expire(NOW)  # still inside retention: the deleted entries stay
    assert look(thunder, [A]) == [posts[499].post_id]


def test_video_lookup_returns_at_most_600() -> None:
    authors = range(300, 310)
    videos = [original(a, 60_000 * (i + 1), is_video=True) for a in authors for i in range(70)]
    thunder = store(*videos)
    assert len(look(thunder, list(authors), video=True)) == 600
    assert len(look(thunder, list(authors), video=True, max_results=650)) == 650
    assert len(look(thunder, list(authors))) == 500  # 50 originals per author otherwise


def test_scan_limit_counts_replies_that_fail_the_reply_rule() -> None:
    root = original(B, 20 * HOUR)
    wanted = [reply(A, 10 * HOUR + i, root) for i in range(5)]
    unknown_parent = [Post(pid(60_000 * (i + 1)), A, REPLY, parent_id=7) for i in range(500)]
    thunder = store(root, *wanted, *unknown_parent)
    assert look(thunder, [A]) == []
    thunder = store(root, *wanted, *unknown_parent[:499])
    assert look(thunder, [A]) == [wanted[0].post_id]


def test_only_the_first_max_followed_accounts_are_read() -> None:
    posts = {a: original(a, 1_000) for a in (A, B, C, D)}
    thunder = store(*posts.values(), max_followed=3)
    assert set(look(thunder, [D, A, B, C])) == {posts[a].post_id for a in (D, A, B)}
    assert set(look(thunder, [A, A, B, C])) == {posts[a].post_id for a in (A, B)}
    assert set(look(thunder, [999, C, D])) == {posts[a].post_id for a in (C, D)}


# ---------------------------------------------------------------- deletes, exclusions, reposts


def test_deleted_posts_are_skipped_and_deletes_win_over_late_creates() -> None:
    keep, gone = original(A, 2_000), original(A, 1_000)
    thunder = store(keep, gone)
    assert thunder.delete(gone.post_id)
    assert not thunder.delete(gone.post_id)
    assert look(thunder, [A]) == [keep.post_id]
    assert thunder.get(gone.post_id) is None and len(thunder) == 1
    assert not thunder.ingest(gone)  # a create after the delete loses

    late = original(B, 500)
    assert not thunder.delete(late.post_id)  # deleted before it was ever created
    assert not thunder.ingest(late)
    assert thunder.ingest_many([late, original(B, 400)]) == 1
    assert late.post_id not in look(thunder, [A, B])


def test_ingest_of_a_duplicate_id_is_a_no_op() -> None:
    first = original(A, 1_000)
    thunder = store(first)
    twin = Post(first.post_id, B, ORIGINAL, text="other")
    assert not thunder.ingest(twin)
    assert thunder.get(first.post_id) is first and len(thunder) == 1
    assert look(thunder, [B]) == []


def test_excluded_ids_are_skipped() -> None:
    posts = [original(A, 1_000 * (i + 1)) for i in range(4)]
    thunder = store(*posts)
    assert look(thunder, [A], exclude={posts[1].post_id, 12345}) == ids(posts[:1] + posts[2:])


def test_reposts_of_the_viewers_own_posts_are_skipped() -> None:
    mine, theirs = original(VIEWER, 5_000), original(C, 5_000)
    of_mine, of_theirs = repost(A, 1_000, mine), repost(A, 2_000, theirs)
    of_unknown = repost(A, 3_000, pid(3 * HOUR))
    thunder = store(mine, theirs, of_mine, of_theirs, of_unknown)
    assert look(thunder, [A]) == ids([of_theirs, of_unknown])
    assert look(thunder, [A], viewer=C) == ids([of_mine, of_unknown])
    thunder.delete(mine.post_id)  # the repost still names the viewer as the source user
    assert look(thunder, [A]) == ids([of_theirs, of_unknown])


def test_repost_of_the_viewers_unstored_post_is_dropped_by_its_source_user() -> None:
    """X's case: a repost of post 5000, never stored, whose source user is the viewer."""
    of_unstored = repost(B, 1_000, 5_000, of_author=VIEWER)
    of_other = repost(B, 2_000, 5_001, of_author=C)
    thunder = store(of_unstored, of_other)
    assert look(thunder, [B]) == [of_other.post_id]
    assert look(thunder, [B], viewer=C) == [of_unstored.post_id]


def test_video_list_holds_video_posts_and_video_reposts_never_replies() -> None:
    root = original(B, 10_000)
    video = original(A, 1_000, is_video=True)
    video_repost = repost(A, 2_000, root, is_video=True)
    plain_repost = repost(A, 2_500, root)
    video_reply = Post(
        pid(3_000), A, REPLY, parent_id=root.post_id, conversation_id=root.post_id, is_video=True
    )
    mine = original(VIEWER, 9_000, is_video=True)
    video_repost_of_mine = repost(A, 4_000, mine, is_video=True)
    thunder = store(root, mine, video, video_repost, plain_repost, video_reply)
    thunder.ingest(video_repost_of_mine)
    assert look(thunder, [A], video=True) == ids([video, video_repost])
    assert look(thunder, [A], video=True, viewer=C) == ids(
        [video, video_repost, video_repost_of_mine]
    )
    assert video_reply.post_id in look(thunder, [A])  # an ordinary reply otherwise


# ---------------------------------------------------------------- the reply rule


def test_reply_to_a_held_original_is_kept() -> None:
    root = original(B, 5_000)
    answer = reply(A, 1_000, root)
    assert look(store(root, answer), [A]) == [answer.post_id]


def test_reply_whose_parent_is_unknown_or_deleted_is_dropped() -> None:
    root = original(B, 5_000)
    answer = reply(A, 1_000, root)
    assert look(store(answer), [A]) == []
    thunder = store(root, answer)
    thunder.delete(root.post_id)
    assert look(thunder, [A]) == []


def test_reply_whose_parent_arrives_later_is_kept() -> None:
    root = original(B, 5_000)
    answer = reply(A, 1_000, root)
    thunder = store(answer)
    assert thunder.ingest(root)
    assert look(thunder, [A]) == [answer.post_id]


def test_reply_to_a_direct_reply_to_the_root_needs_its_author_followed() -> None:
    root = original(D, 9_000)
    direct = reply(B, 5_000, root)  # answers the root
    deeper = reply(A, 1_000, direct)
    thunder = store(root, direct, deeper)
    assert deeper.post_id in look(thunder, [A, B])
    assert look(thunder, [A]) == []  # B is not followed
    assert look(thunder, [A, C]) == []


def test_reply_to_a_reply_that_does_not_answer_the_root_is_dropped() -> None:
    root = original(D, 9_000)
    direct = reply(B, 5_000, root)
    second = reply(C, 4_000, direct)  # answers a reply, not the root
    third = reply(A, 1_000, second)
    thunder = store(root, direct, second, third)
    assert third.post_id not in look(thunder, [A, B, C])
    assert second.post_id in look(thunder, [A, B, C])  # second's own parent answers the root


def test_reply_to_a_repost_is_dropped() -> None:
    shared = repost(B, 5_000, original(D, 9_000))
    answer = Post(pid(1_000), A, REPLY, parent_id=shared.post_id, conversation_id=shared.post_id)
    assert look(store(shared, answer), [A, B]) == [shared.post_id]


# ---------------------------------------------------------------- order and arguments


def test_results_are_newest_first_and_cut_to_max_results() -> None:
    posts = [original(author, 1_000 * i + author) for i in range(1, 6) for author in (A, B, C)]
    thunder = store(*random.Random(0).sample(posts, len(posts)), max_results=7)
    want = sorted(ids(posts), reverse=True)
    assert look(thunder, [C, A, B]) == want[:7]
    assert look(thunder, [C, A, B], max_results=100) == want
    assert look(thunder, [C, A, B], max_results=3) == want[:3]
    assert look(thunder, [C, A, B], max_results=0) == []


def test_a_late_arrival_takes_its_place_in_the_author_list() -> None:
    newer, older = original(A, 1_000), original(A, 2_000)
    thunder = store(newer, older, max_originals_per_author=1)
    assert look(thunder, [A]) == [newer.post_id]


@pytest.mark.parametrize(
    ("argument", "kwargs"),
    [
        ("max_results", {"max_results": -1}),
        ("now_ms", {"now_ms": -5}),
        ("now_ms", {"now_ms": 1.5}),
        ("viewer_id", {"viewer_id": "me"}),
        ("following", {"following": "abc"}),
        ("following", {"following": [A, "b"]}),
        ("exclude", {"exclude": [1, None]}),
    ],
)
def test_bad_lookup_arguments_raise_input_error_naming_them(
    argument: str, kwargs: dict[str, object]
) -> None:
    thunder = store(original(A, 1_000))
    call: dict[str, object] = {"viewer_id": VIEWER, "following": [A], "now_ms": NOW}
    call.update(kwargs)
    with pytest.raises(InputError, match=rf"^{argument}: "):
        thunder.lookup(**call)  # type: ignore[arg-type]


def test_bad_writes_raise_input_error() -> None:
    thunder = Thunder()
    with pytest.raises(InputError, match=r"^post: "):
        thunder.ingest(Post(0, A))
    with pytest.raises(InputError, match=r"^post\.kind: "):
        thunder.ingest(Post(pid(1), A, kind=7))
    with pytest.raises(InputError, match=r"^post: "):
        thunder.ingest_many([original(A, 1), "not a post"])  # type: ignore[list-item]
    with pytest.raises(InputError, match=r"^post_id: "):
        thunder.delete(-3)
    with pytest.raises(InputError, match=r"^now_ms: "):
        thunder.expire(-1)
    assert len(thunder) == 0


# ---------------------------------------------------------------- against a literal reading


def reference_lookup(
    listed: Sequence[Post],
    held: dict[int, Post],
    settings: ThunderSettings,
    viewer: int,
    following: Sequence[int],
    now_ms: int,
    exclude: Collection[int] = (),
    video: bool = False,
) -> list[int]:
    """docs/DESIGN.md §6 walked post by post, with Thunder's documented choices."""
    s = settings
    followed = list(dict.fromkeys(following[: s.max_followed]))
    kept: list[Post] = []
    for author in followed:
        mine = sorted(  # deleted posts stay on the lists: they count toward the scan
            (p for p in listed if p.author_id == author and p.created_ms <= now_ms),
            key=lambda p: p.post_id,
            reverse=True,
        )
        if video:
            lists = [([p for p in mine if p.is_video and not p.is_reply], s.max_videos_per_author)]
        else:
            lists = [
                ([p for p in mine if p.is_original], s.max_originals_per_author),
                ([p for p in mine if not p.is_original], s.max_replies_per_author),
            ]
        for entries, cap in lists:
            taken = 0
            for p in entries[: s.max_scanned_per_author]:
                if p.created_ms < now_ms - s.retention_ms or taken == cap:
                    break
                if p.post_id in exclude or p.post_id not in held:
                    continue
                target = held.get(p.reposted_id)
                own = target is not None and target.author_id == viewer
                if p.is_repost and (own or p.reposted_author_id == viewer):
                    continue
                if p.is_reply and not video:
                    parent = held.get(p.parent_id)
                    answers_root = (
                        parent is not None
                        and parent.is_reply
                        and parent.parent_id == parent.conversation_id
                        and parent.author_id in followed
                    )
                    if not (parent is not None and parent.is_original) and not answers_root:
                        continue
                kept.append(p)
                taken += 1
    kept.sort(key=lambda p: p.post_id, reverse=True)
    return ids(kept[: s.max_results])


def random_world(seed: int, n: int = 1_500, span_h: float = 60.0) -> tuple[list[Post], list[int]]:
    """Posts by 12 authors (the viewer among them) over `span_h` hours before NOW plus a few in
    the future, with replies to anything (unknown posts too), reposts and videos; and ids to
    delete, some never created."""
    rng = random.Random(seed)
    authors = [A, B, C, D, VIEWER, *range(200, 207)]
    posts: list[Post] = []
    ages = sorted((rng.uniform(-HOUR, span_h * HOUR) for _ in range(n)), reverse=True)
    for age in ages:
        author, roll = rng.choice(authors), rng.random()
        if not posts or roll < 0.5:
            posts.append(original(author, age, is_video=rng.random() < 0.3))
        elif roll < 0.8:
            parent = rng.choice(posts[-200:])
            if rng.random() < 0.1:  # an unknown parent
                parent = Post(pid(age + 1_000), A, ORIGINAL)
            post = reply(author, age, parent)
            if rng.random() < 0.2:
                post = Post(post.post_id, author, REPLY, post.parent_id, 0, post.conversation_id,
                            is_video=True)  # fmt: skip
            posts.append(post)
        else:
            target = rng.choice(posts[-300:])
            posts.append(repost(author, age, target, is_video=target.is_video))
    doomed = [p.post_id for p in rng.sample(posts, n // 20)] + [pid(HOUR) for _ in range(5)]
    return posts, doomed


SMALL_LIMITS = {
    "max_followed": 9,
    "max_scanned_per_author": 25,
    "max_originals_per_author": 8,
    "max_replies_per_author": 5,
    "max_videos_per_author": 6,
    "max_results": 60,
}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("limits", [{}, SMALL_LIMITS], ids=["defaults", "small"])
def test_lookup_matches_a_literal_reading_of_the_spec(seed: int, limits: dict) -> None:
    settings = ThunderSettings(**limits)
    posts, doomed = random_world(seed)
    thunder = Thunder(settings)
    for post_id in doomed[-5:]:  # deleted before they exist
        thunder.delete(post_id)
    assert thunder.ingest_many(posts) == len(posts)
    for post_id in doomed[:-5]:
        assert thunder.delete(post_id)
    held = {p.post_id: p for p in posts if p.post_id not in set(doomed)}
    assert len(thunder) == len(held)

    rng = random.Random(seed)
    everyone = [A, B, C, D, VIEWER, *range(200, 207), 999]
    for _ in range(40):
        viewer = rng.choice([VIEWER, A, 12345])
        following = rng.sample(everyone, rng.randint(1, len(everyone)))
        now = NOW - rng.choice([0, 0, 5 * HOUR, 20 * HOUR])
        exclude = {p.post_id for p in rng.sample(posts, 30)}
        video = rng.random() < 0.3
        got = look(thunder, following, viewer=viewer, now_ms=now, exclude=exclude, video=video)
        want = reference_lookup(posts, held, settings, viewer, following, now, exclude, video)
        assert got == want
        ids = thunder.lookup_ids(viewer, following, now, exclude=exclude, video=video)
        assert ids.dtype == np.int64 and ids.tolist() == want  # the pipeline's form


@pytest.mark.parametrize("seed", [3, 4])
def test_ingest_many_equals_repeated_ingest(seed: int) -> None:
    posts, doomed = random_world(seed, n=1_200, span_h=40.0)
    batch = posts + random.Random(seed).sample(posts, 50)  # duplicates are no-ops
    random.Random(seed).shuffle(batch)
    one_by_one, shuffled, bulk = Thunder(), Thunder(), Thunder()
    for thunder in (one_by_one, shuffled, bulk):
        for post_id in doomed[::3]:
            thunder.delete(post_id)
    added = [one_by_one.ingest(p) for p in sorted(batch, key=lambda p: p.post_id)]
    shuffled_added = [shuffled.ingest(p) for p in batch]
    assert bulk.ingest_many(batch) == sum(added) == sum(shuffled_added) < len(batch)
    # A small batch into a bigger store goes one by one; it must agree too.
    small = [original(A, 10), original(B, 20), reply(C, 5, posts[-1])]
    assert bulk.ingest_many(small) == 3
    for thunder in (one_by_one, shuffled):
        for post in small:
            thunder.ingest(post)

    assert len(one_by_one) == len(shuffled) == len(bulk)
    rng = random.Random(seed)
    for _ in range(30):
        following = rng.sample([A, B, C, D, *range(200, 207)], rng.randint(1, 11))
        video = rng.random() < 0.3
        want = look(one_by_one, following, video=video)
        assert look(shuffled, following, video=video) == want
        assert look(bulk, following, video=video) == want
    for post in posts[::50]:
        assert one_by_one.get(post.post_id) == bulk.get(post.post_id)


def test_many_authors_through_single_ingests() -> None:
    """More authors than the first author table holds, added one at a time."""
    thunder = Thunder()
    posts = [original(10_000 + i, 1_000 + i) for i in range(3_000)]
    for post in posts:
        thunder.ingest(post)
    following = [10_000 + i for i in range(0, 3_000, 7)]
    assert look(thunder, following) == sorted(ids(posts[::7]), reverse=True)
    assert look(thunder, [1, 2, 3]) == []
    assert look(thunder, [0, -1]) == []  # 0 means nothing; the table marks empty slots with it


def test_lookups_and_writes_from_several_threads() -> None:
    posts, _ = random_world(5, n=1_000, span_h=40.0)
    thunder = Thunder()
    thunder.ingest_many(posts[:500])
    errors: list[BaseException] = []

    def read() -> None:
        try:
            for _ in range(100):
                found = thunder.lookup(VIEWER, [A, B, C, D], NOW)
                assert all(isinstance(p, Post) for p in found)
        except Exception as exc:  # reported by the main thread
            errors.append(exc)

    def write() -> None:
        try:
            for post in posts[500:]:
                thunder.ingest(post)
            for post in posts[:100]:
                thunder.delete(post.post_id)
            thunder.expire(NOW)
        except Exception as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(2)] + [threading.Thread(target=write)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(thunder) == 900
