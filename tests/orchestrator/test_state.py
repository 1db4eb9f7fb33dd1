"""The embedded stores: posts (deletes win), viewers (relations, histories, snapshots), and
loading both from a world."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from orchestrator.state.posts import InMemoryPostStore, Post, engagement_counts
from orchestrator.state.viewers import Engagement, History, InMemoryViewerStore
from orchestrator.state.world_state import load_world_state
from phoenix.actions import ACTIONS, NUM_ACTIONS, Action
from phoenix.features import PROFILE_FIELDS
from phoenix.snowflake import snowflake_id
from phoenix.world.generate import generate_world
from phoenix.world.io import load_world
from phoenix.world.schema import REPLY, REPOST, SID_LEVELS
from phoenix.world.spec import WorldSpec

NOW = 1_780_000_000_000


def _actions(*which: Action) -> tuple[bool, ...]:
    return tuple(i in which for i in range(NUM_ACTIONS))


def test_post_facts_come_from_the_snowflake_id() -> None:
    post_id = int(snowflake_id(NOW, 5))
    post = Post(post_id=post_id, author_id=9, kind=REPOST, reposted_id=3)
    assert post.created_ms == NOW
    assert post.is_repost and not post.is_original and not post.is_reply
    assert post.thread_id == post_id  # no conversation id: its own thread


def test_a_delete_wins_over_a_late_create() -> None:
    store = InMemoryPostStore([Post(1, 10), Post(2, 10)])
    assert store.delete(1) == Post(1, 10)
    assert store.get(1) is None and store.is_deleted(1)
    assert store.add(Post(1, 10)) is False and store.get(1) is None
    assert store.delete(99) is None and store.is_deleted(99)
    assert store.add(Post(99, 10)) is False
    assert store.add(Post(3, 11)) is True and store.get(3) == Post(3, 11)
    assert sorted(p.post_id for p in store) == [2, 3]


def test_relations_report_whether_they_changed() -> None:
    store = InMemoryViewerStore()
    for user in (1, 2, 3):
        store.add_user(user)
    assert store.follow(1, 2) and not store.follow(1, 2)
    assert store.follow(1, 3)
    assert store.follower_count(2) == 1
    assert store.unfollow(1, 2) and not store.unfollow(1, 2)
    assert store.follower_count(2) == 0
    assert store.block(2, 1) and not store.block(2, 1)
    assert store.mute(1, 3) and store.unmute(1, 3) and not store.unmute(1, 3)
    assert store.add_muted_keyword(1, "spoiler") and not store.add_muted_keyword(1, "spoiler")
    viewer = store.get(1)
    assert viewer is not None
    assert viewer.following == (3,)
    assert viewer.blocked_by == frozenset({2}) and viewer.blocked == frozenset()
    assert viewer.muted_keywords == ("spoiler",)
    assert store.remove_muted_keyword(1, "spoiler") and not store.remove_muted_keyword(1, "x")
    assert store.get(2).blocked == frozenset({1})  # type: ignore[union-attr]
    assert store.get(42) is None and not store.exists(42)


def test_following_keeps_follow_order() -> None:
    store = InMemoryViewerStore()
    store.add_user(1)
    for target in (7, 3, 9, 5):
        store.follow(1, target)
    store.unfollow(1, 3)
    assert store.get(1).following == (7, 9, 5)  # type: ignore[union-attr]


def test_snapshots_do_not_change_with_later_writes() -> None:
    store = InMemoryViewerStore(max_history=3)
    store.add_user(1)
    before = store.get(1)
    store.follow(1, 2)
    store.record_engagement(1, Engagement(10, 2, _actions(Action.FAVORITE)))
    assert before is not None and before.following == () and len(before.history) == 0


def test_history_is_newest_first_and_bounded() -> None:
    store = InMemoryViewerStore(max_history=3)
    store.add_user(1)
    for post_id in (10, 11, 12, 13):
        store.record_engagement(
            1,
            Engagement(post_id, 100 + post_id, _actions(Action.REPLY), 2, post_id * 1000, post_id),
        )
    history = store.get(1).history  # type: ignore[union-attr]
    assert history.post_ids.tolist() == [13, 12, 11]
    assert history.author_ids.tolist() == [113, 112, 111]
    assert history.surfaces.tolist() == [2, 2, 2]
    assert history.served_ms.tolist() == [13000, 12000, 11000]
    assert history.dwell_s.tolist() == [13.0, 12.0, 11.0]
    assert history.actions[:, Action.REPLY].all() and history.actions.sum() == 3
    assert history.newest(5).post_ids.tolist() == [13, 12, 11]
    assert history.newest(2).post_ids.tolist() == [13, 12]
    assert len(History.empty()) == 0 and History.empty().actions.shape == (0, NUM_ACTIONS)


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world") / "w"
    return generate_world(WorldSpec(seed=3, num_users=120, num_authors=20), out, progress=False)


def test_world_state_matches_the_world_tables(world_dir: Path) -> None:
    world = load_world(world_dir)
    state = load_world_state(world)
    assert len(state.viewers) == world.users.num_rows
    assert len(state.posts) == world.posts.num_rows
    assert state.now_ms == world.now_ms
    follows = world.follows.to_pydict()
    follower, followee = follows["follower_id"][0], follows["followee_id"][0]
    assert followee in state.viewers.get(follower).following  # type: ignore[union-attr]
    # Histories: the viewer's impressions with at least one action, newest first.
    eng = world.engagements.to_pydict()
    for viewer in eng["viewer_id"][:50:10]:
        acted = [
            (-eng["served_ms"][i], i)
            for i in range(len(eng["viewer_id"]))
            if eng["viewer_id"][i] == viewer and any(eng[a][i] for a in ACTIONS)
        ]
        expected = [eng["post_id"][i] for _, i in sorted(acted)]
        history = state.viewers.get(viewer).history  # type: ignore[union-attr]
        assert history.post_ids.tolist() == expected
        rows = [i for _, i in sorted(acted)]
        assert history.served_ms.tolist() == [eng["served_ms"][i] for i in rows]
        assert history.surfaces.tolist() == [eng["surface"][i] for i in rows]
        np.testing.assert_allclose(history.dwell_s, [eng["dwell_time_s"][i] for i in rows])
    post = state.posts.get(world.posts.column("post_id")[0].as_py())
    assert post is not None and post.author_id == world.posts.column("author_id")[0].as_py()
    # Profiles: the users table's columns, unknown for a user added later.
    users = world.users.to_pydict()
    for row in (0, len(users["user_id"]) // 2):
        profile = state.viewers.get(users["user_id"][row]).profile  # type: ignore[union-attr]
        for name in PROFILE_FIELDS:
            assert np.asarray(getattr(profile, name)).tolist() == pytest.approx([users[name][row]])
    state.viewers.add_user(1)
    assert not any(np.any(v) for v in vars(state.viewers.get(1).profile).values())  # type: ignore[union-attr]
    # Counts: every served row a view, every favorite/reply/repost/quote one more.
    served = eng["post_id"]
    for post_id in served[:200:40]:
        rows = [i for i, p in enumerate(served) if p == post_id]
        want = [sum(eng[a][i] for i in rows) for a in ("favorite", "reply", "repost", "quote")]
        assert state.posts.counts(post_id).tolist() == [*want, len(rows)]
    sids = world.posts.to_pydict()
    coded = next(i for i, s in enumerate(sids["semantic_ids"]) if any(s))
    cols = state.posts.columns(np.array([sids["post_id"][coded]]))
    assert cols.sids[0].tolist() == sids["semantic_ids"][coded]


def test_accounts_answer_for_a_whole_batch_and_follow_the_writes() -> None:
    store = InMemoryViewerStore()
    for user in (30, 10, 20):
        store.add_user(user)
    store.follow(10, 30)
    store.follow(20, 30)
    known, followers = store.accounts(np.array([30, 99, 10, 0, 30]))
    assert known.tolist() == [True, False, True, False, True]
    assert followers.tolist() == [2, 0, 0, 0, 2]
    store.unfollow(10, 30)
    store.follow(30, 5)  # 5 is no account yet: counted once it is one
    store.add_user(5)
    known, followers = store.accounts(np.array([30, 5]))
    assert known.tolist() == [True, True] and followers.tolist() == [1, 1]


def test_a_snapshot_is_reused_until_a_write_touches_its_viewer() -> None:
    store = InMemoryViewerStore()
    for user in (1, 2, 3):
        store.add_user(user)
    first = store.get(1)
    assert store.get(1) is first
    store.follow(2, 3)  # not about viewer 1
    assert store.get(1) is first
    writes = [
        (lambda: store.follow(2, 1), lambda v: v.followers == {2}),
        (lambda: store.block(3, 1), lambda v: v.blocked_by == {3}),
        (lambda: store.mute(1, 2), lambda v: v.muted == {2}),
        (lambda: store.add_muted_keyword(1, "x"), lambda v: v.muted_keywords == ("x",)),
        (
            lambda: store.record_engagement(1, Engagement(10, 2, _actions(Action.FAVORITE))),
            lambda v: v.history.post_ids.tolist() == [10],
        ),
    ]
    for write, shows in writes:
        before = store.get(1)
        write()
        after = store.get(1)
        assert after is not None and after is not before and shows(after)
        assert not shows(before)


def test_posts_are_read_as_columns_by_id() -> None:
    reply = Post(9, 11, kind=REPLY, parent_id=5, conversation_id=5, is_video=True,
                 video_duration_s=12.3456)  # fmt: skip
    late = Post(7, 12, kind=REPOST, reposted_id=5, reposted_author_id=10)  # out of id order
    root = Post(5, 10, conversation_id=5, text="Café culture", semantic_ids=(3, 4, 5))
    store = InMemoryPostStore(
        [root, reply], counts=(np.array([9, 7]), np.array([[1, 0, 0, 0, 4], [0, 0, 0, 1, 2]]))
    )
    assert store.add(late)  # its counts were kept for it
    store.add_counts(9, engagement_counts(_actions(Action.FAVORITE, Action.QUOTE)))
    cols = store.columns(np.array([9, 7, 5, 6, 0]))
    assert cols.found.tolist() == [True, True, True, False, False]
    assert cols.author_id.tolist() == [11, 12, 10, 0, 0]
    assert cols.kind.tolist() == [REPLY, REPOST, 0, 0, 0]
    assert cols.parent_id.tolist() == [5, 0, 0, 0, 0]
    assert cols.reposted_id.tolist() == [0, 5, 0, 0, 0]
    assert cols.thread_id.tolist() == [5, 7, 5, 0, 0]
    assert cols.reposted_author_id.tolist() == [0, 10, 0, 0, 0]
    assert cols.is_video.tolist() == [True, False, False, False, False]
    assert cols.video_ms.tolist() == [12346, 0, 0, 0, 0]
    assert cols.impressions.tolist() == [5, 2, 0, 0, 0]
    assert cols.counts.tolist()[:2] == [[2, 0, 0, 1, 5], [0, 0, 0, 1, 2]]
    assert store.counts(9).tolist() == [2, 0, 0, 1, 5]
    assert cols.sids.shape == (5, SID_LEVELS) and cols.sids[2].tolist() == [3, 4, 5, 0, 0, 0]
    assert not cols.sids[[0, 1, 3, 4]].any()  # no codes, or no post: missing
    assert store.token_lines(np.array([5, 6])).tolist() == [" cafe culture ", ""]
    store.delete(5)
    assert store.columns(np.array([5, 9])).found.tolist() == [False, True]
    assert store.token_lines(np.array([5])).tolist() == [""]


def test_a_recorded_engagement_goes_in_front_of_the_history_arrays() -> None:
    store = InMemoryViewerStore(max_history=3)
    store.add_user(1)
    for post_id in (10, 11):
        store.record_engagement(1, Engagement(post_id, 100 + post_id, _actions(Action.REPLY), 2))
    assert store.get(1).history.post_ids.tolist() == [11, 10]  # type: ignore[union-attr]
    for post_id in (12, 13):  # arrays already built: each engagement is prepended
        store.record_engagement(1, Engagement(post_id, 100 + post_id, _actions(Action.SHARE), 1))
    history = store.get(1).history  # type: ignore[union-attr]
    rebuilt = History.of([Engagement(13, 113, _actions(Action.SHARE), 1),
                          Engagement(12, 112, _actions(Action.SHARE), 1),
                          Engagement(11, 111, _actions(Action.REPLY), 2)])  # fmt: skip
    for f in fields(History):
        assert np.array_equal(getattr(history, f.name), getattr(rebuilt, f.name)), f.name
    assert history.actions.dtype == np.bool_ and history.post_ids.dtype == np.int64
