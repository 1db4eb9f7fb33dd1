"""The features the orchestrator sends are `phoenix.features`' packing of the facts its stores hold:
the viewer's profile, the history oldest first with its served times, surfaces, actions and dwell,
the follow bits from the graph, the posts' counts (as they stand) and semantic ids; candidates
stamped at the query's time, a repost scored as its original."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.pipeline.candidate import RETRIEVAL, THUNDER, Candidates, FeedQuery
from orchestrator.pipeline.features import FOR_YOU_SURFACE, ModelFeatures
from orchestrator.pipeline.hydrator import PostHydrator
from orchestrator.state.posts import InMemoryPostStore, Post, engagement_counts
from orchestrator.state.viewers import Engagement, InMemoryViewerStore
from phoenix.actions import NUM_ACTIONS, Action
from phoenix.config import get_config
from phoenix.features import (
    PROFILE_FIELDS,
    PostFacts,
    UserProfile,
    local_context,
    pack_candidates,
    pack_history,
    pack_user,
)
from phoenix.hashing import IdHasher
from phoenix.snowflake import snowflake_id
from phoenix.world.schema import REPOST

CONFIG = get_config("tiny")
HASHER = IdHasher(CONFIG)
NOW_MS = 1_780_000_000_000
HOUR_MS = 3_600_000
VIEWER, FOLLOWED, FOLLOWER, STRANGER = 11, 22, 33, 44
#: A profile with every field set (timezone 16 is UTC+8).
PROFILE = {name: i + 2 for i, name in enumerate(PROFILE_FIELDS)} | {
    "timezone": 16,
    "latitude": 48.5,
    "longitude": 2.25,
    "inferred_gender_score": 0.75,
}


def _id(hours_ago: float, seq: int) -> int:
    return int(snowflake_id(NOW_MS - int(hours_ago * HOUR_MS), seq))


def _actions(*which: Action) -> tuple[bool, ...]:
    return tuple(i in which for i in range(NUM_ACTIONS))


class World:
    """VIEWER follows FOLLOWED and is followed by FOLLOWER; four posts, one a repost."""

    def __init__(self) -> None:
        self.viewers = InMemoryViewerStore()
        for user in (VIEWER, FOLLOWED, FOLLOWER, STRANGER):
            self.viewers.add_user(user)
        self.viewers.set_profiles(
            [VIEWER], UserProfile(**{k: np.array([v]) for k, v in PROFILE.items()})
        )
        self.viewers.follow(VIEWER, FOLLOWED)
        self.viewers.follow(FOLLOWER, VIEWER)
        self.a = Post(_id(30, 1), FOLLOWED, semantic_ids=(5, 6, 7, 8, 9, 10))
        self.b = Post(_id(20, 2), FOLLOWER, semantic_ids=(300, 1))  # codes past the codebook
        self.c = Post(_id(10, 3), STRANGER)  # no semantic ids
        self.repost = Post(
            _id(1, 4),
            STRANGER,
            kind=REPOST,
            reposted_id=self.a.post_id,
            reposted_author_id=FOLLOWED,
        )
        self.posts = InMemoryPostStore(
            [self.a, self.b, self.c, self.repost],
            counts=(
                np.array([self.a.post_id, self.b.post_id, self.c.post_id, self.repost.post_id]),
                np.array([[3, 1, 2, 0, 40], [0, 0, 0, 0, 7], [1, 1, 1, 1, 9], [9, 9, 9, 9, 99]]),
            ),
        )
        # Engagements newest first, as the store keeps them.
        self.engagements = [
            Engagement(self.c.post_id, STRANGER, _actions(Action.CLICK), 3, NOW_MS - 2 * HOUR_MS),
            Engagement(
                self.b.post_id, FOLLOWER, _actions(Action.REPLY), 1, NOW_MS - 3 * HOUR_MS, 12.5
            ),
            Engagement(
                self.a.post_id,
                FOLLOWED,
                _actions(Action.FAVORITE, Action.DWELL),
                0,
                NOW_MS - 5 * HOUR_MS,
                4.0,
            ),
        ]
        self.viewers.load_histories([(VIEWER, list(self.engagements))])
        self.features = ModelFeatures(self.posts)

    def query(self) -> FeedQuery:
        viewer = self.viewers.get(VIEWER)
        assert viewer is not None
        return FeedQuery(viewer=viewer, now_ms=NOW_MS)

    def counts(self, post: Post) -> list[int]:
        return self.posts.counts(post.post_id).tolist()


def _history_facts(world: World) -> tuple[PostFacts, np.ndarray, np.ndarray]:
    """The viewer's history written out by hand, oldest first: (facts, actions, dwell)."""
    rows = world.engagements[::-1]
    authors = [e.author_id for e in rows]
    posts = {p.post_id: p for p in (world.a, world.b, world.c)}
    facts = PostFacts(
        post_ids=[e.post_id for e in rows],
        author_ids=authors,
        surface=[e.surface for e in rows],
        impression_s=[e.served_ms // 1000 for e in rows],
        created_s=[posts[e.post_id].created_ms // 1000 for e in rows],
        followed_by_viewer=[a == FOLLOWED for a in authors],
        following_viewer=[a == FOLLOWER for a in authors],
        counts=[world.counts(posts[e.post_id]) for e in rows],
        sids=[
            list(posts[e.post_id].semantic_ids) + [0] * (6 - len(posts[e.post_id].semantic_ids))
            for e in rows
        ],
    )
    actions = np.array([e.actions for e in rows])
    dwell = np.array([e.dwell_s for e in rows], np.float32)
    return facts, actions, dwell


def _assert_same(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert set(got) == set(want)
    for name, array in want.items():
        assert got[name].dtype == array.dtype, name
        np.testing.assert_array_equal(got[name], array, err_msg=name)


def test_viewer_features_pack_the_profile_and_the_history_oldest_first() -> None:
    world = World()
    got = world.features.viewer(HASHER, world.query())
    profile = UserProfile(**{k: np.array([v]) for k, v in PROFILE.items()})
    facts, actions, dwell = _history_facts(world)
    want = {
        **pack_user(HASHER, [VIEWER], profile),
        **pack_history(HASHER, facts, actions, dwell, np.zeros(3, np.int64), np.array([16])),
    }
    _assert_same(got, want)
    # The same facts read off the arrays directly, so the packing above is not all we trust.
    order = [world.a, world.b, world.c]  # by served time: a (5 h ago), b (3 h), c (2 h)
    hashes = HASHER.posts([p.post_id for p in order])
    np.testing.assert_array_equal(got["history_post_hash"][0, :3], hashes)
    assert not got["history_post_hash"][0, 3:].any()  # left-aligned, zeros after
    assert got["history_follow"][0, :3].tolist() == [[1, 0], [0, 1], [0, 0]]
    assert got["history_counts"][0, :3].tolist() == [
        [3, 1, 2, 0, 40],
        [0, 0, 0, 0, 7],
        [1] * 4 + [9],
    ]
    assert got["history_surface"][0, :3].tolist() == [0, 1, 3]
    np.testing.assert_allclose(got["history_dwell"][0, :3], [4.0, 12.5, 0.0])
    assert got["history_context"][0, 0, 0] == 16  # the viewer's timezone
    assert got["user_categorical"].any() and got["user_apps"].any()


def test_an_unknown_profile_packs_as_unknown() -> None:
    world = World()
    world.viewers.add_user(55)
    viewer = world.viewers.get(55)
    assert viewer is not None
    got = world.features.viewer(HASHER, FeedQuery(viewer=viewer, now_ms=NOW_MS))
    _assert_same(
        {k: v for k, v in got.items() if k.startswith("user_")},
        pack_user(HASHER, [55], UserProfile.unknown(1)),
    )
    assert not got["history_post_hash"].any()  # no history: all padding


def test_only_the_newest_history_len_engagements_are_sent() -> None:
    world = World()
    config = CONFIG.with_overrides(history_len=2)
    got = world.features.viewer(IdHasher(config), world.query())
    hashes = IdHasher(config).posts([world.b.post_id, world.c.post_id])
    np.testing.assert_array_equal(got["history_post_hash"][0], hashes)  # a, the oldest, dropped


def test_candidates_are_stamped_now_and_a_repost_is_scored_as_its_original() -> None:
    world = World()
    query = world.query()
    batch = Candidates.concat(
        [
            Candidates.of(THUNDER, [world.a.post_id], in_network=True),
            Candidates.of(RETRIEVAL, [world.c.post_id, world.repost.post_id], in_network=False),
        ]
    )
    PostHydrator(world.posts, world.viewers).hydrate(query, batch)
    got = world.features.candidates(HASHER, query, batch)
    now_s = NOW_MS // 1000
    originals = [world.a, world.c, world.a]  # the repost becomes the post it reposts
    facts = PostFacts(
        post_ids=[p.post_id for p in originals],
        author_ids=[p.author_id for p in originals],
        surface=[FOR_YOU_SURFACE] * 3,
        impression_s=[now_s] * 3,
        created_s=[p.created_ms // 1000 for p in originals],
        followed_by_viewer=[True, False, True],
        following_viewer=[False, False, False],
        counts=[world.counts(p) for p in originals],
        sids=[[5, 6, 7, 8, 9, 10], [0] * 6, [5, 6, 7, 8, 9, 10]],
    )
    _assert_same(got, pack_candidates(HASHER, facts, 16))
    assert got["candidate_counts"][2].tolist() == [3, 1, 2, 0, 40]  # not the repost's own
    assert got["candidate_context"][0].tolist() == local_context(16, now_s).tolist()
    assert (got["candidate_time"][:, 0] == now_s).all()


def test_an_author_following_the_viewer_sets_the_second_follow_bit() -> None:
    world = World()
    query = world.query()
    batch = Candidates.of(RETRIEVAL, [world.b.post_id], in_network=False)
    PostHydrator(world.posts, world.viewers).hydrate(query, batch)
    assert world.features.candidates(HASHER, query, batch)["candidate_follow"].tolist() == [[0, 1]]


def test_an_engagement_shows_in_the_counts_the_next_features_read() -> None:
    world = World()
    before = world.features.viewer(HASHER, world.query())["history_counts"][0, 0].tolist()
    world.posts.add_counts(world.a.post_id, engagement_counts(_actions(Action.FAVORITE)))
    after = world.features.viewer(HASHER, world.query())["history_counts"][0, 0].tolist()
    assert after == [before[0] + 1, *before[1:4], before[4] + 1]


@pytest.mark.parametrize("followed", [True, False])
def test_follow_bits_follow_the_graph_at_request_time(followed: bool) -> None:
    world = World()
    if not followed:
        world.viewers.unfollow(VIEWER, FOLLOWED)
    got = world.features.viewer(HASHER, world.query())
    assert got["history_follow"][0, 0].tolist() == [int(followed), 0]
