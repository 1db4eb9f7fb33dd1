"""The retrieval corpus: which posts are indexed, search, removal and expiry (against the fake
Triton of tests/fakes, whose candidate tower embeds a post as `post_vector` of its hash)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from orchestrator.post_index import PostIndex
from orchestrator.retrieval import make_index
from orchestrator.state.posts import Post
from phoenix.config import get_config
from phoenix.features import pack_posts
from phoenix.hashing import IdHasher
from phoenix.serving import CANDIDATE_TOWER
from phoenix.snowflake import snowflake_id
from phoenix.world.schema import REPLY, REPOST
from tests.fakes.triton import FakeServer, FakeTriton, ModelSet, post_vector

CONFIG = get_config("tiny")
NOW = 1_780_000_000_000
HOUR = 3_600_000


#: The towers' own config: a hash layout unlike the ranker's, so hashing with the wrong one shows.
TOWERS = CONFIG.with_overrides(
    num_user_rows=CONFIG.num_user_rows + 3, num_post_rows=CONFIG.num_post_rows + 7
)


def _post(hours_ago: float, seq: int, kind: int = 0, sids: tuple[int, ...] = ()) -> Post:
    post_id = int(snowflake_id(NOW - int(hours_ago * HOUR), seq))
    return Post(post_id, author_id=7, kind=kind, semantic_ids=sids)


def _index(server: FakeServer | None = None) -> PostIndex:
    triton = FakeTriton(server or FakeServer({1: ModelSet(CONFIG, TOWERS)}))
    asyncio.run(triton.connect())
    return PostIndex(make_index("exact", dim=CONFIG.emb_dim), triton)


def _vector(post: Post) -> np.ndarray:
    """What the fake candidate tower answers for `post` (hashed with the towers' config)."""
    post_hash = IdHasher(TOWERS).posts(np.array([post.post_id]))[:, 0]
    return post_vector(post_hash, CONFIG.emb_dim)[0]


def test_the_candidate_tower_gets_its_own_packing_of_the_posts() -> None:
    server = FakeServer({1: ModelSet(CONFIG, TOWERS)})
    posts = [_post(1, 0, sids=(5, 6, 7, 8, 9, 10)), _post(1, 1), _post(1, 2, REPLY, (300, 1))]
    asyncio.run(_index(server).add(posts))
    (request,) = server.requests
    assert request.model == CANDIDATE_TOWER
    sent = request.arrays
    hasher = IdHasher(TOWERS)
    want = pack_posts(
        hasher,
        [p.post_id for p in posts],
        [p.author_id for p in posts],
        [[5, 6, 7, 8, 9, 10], [0] * 6, [300, 1, 0, 0, 0, 0]],
    )
    assert set(sent) == {"post_hash", "author_hash", "sids"}
    for name, array in want.items():
        np.testing.assert_array_equal(sent[name], array, err_msg=name)
    assert not np.array_equal(sent["post_hash"], IdHasher(CONFIG).posts([p.post_id for p in posts]))
    assert sent["sids"][1].tolist() == [0] * TOWERS.sid_levels  # no codes: X's missing row


def test_originals_and_replies_inside_the_window_are_embedded() -> None:
    index = _index()
    assert index.indexable(_post(1, 0), NOW)
    assert index.indexable(_post(47.9, 1), NOW)
    assert not index.indexable(_post(48.1, 2), NOW)
    assert index.indexable(_post(1, 3, REPLY), NOW)  # embedded for DPP, not searchable
    assert not index.indexable(_post(1, 4, REPOST), NOW)
    assert not index.indexable(_post(-1, 5), NOW)  # from the future


def test_added_posts_are_found_and_removed_ones_are_not() -> None:
    index = _index()
    posts = [_post(1, i) for i in range(10)] + [_post(1, 10, REPLY)]
    assert asyncio.run(index.add(posts)) == 10  # the reply is not searchable
    assert len(index) == 10
    target = posts[3]
    query = _vector(target)
    ids, scores = index.search(query, 3)
    assert ids[0] == target.post_id and scores[0] == pytest.approx(1.0)
    assert index.remove([target.post_id]) == 1
    ids, _ = index.search(query, 10)
    assert target.post_id not in ids.tolist()


def test_expire_drops_posts_past_the_window() -> None:
    index = _index()
    fresh, old = _post(1, 0), _post(30, 1)
    asyncio.run(index.add([fresh, old]))
    assert index.expire(NOW) == 0
    assert index.expire(NOW + 20 * HOUR) == 1  # `old` is now 50 h old
    assert index.index.ids().tolist() == [fresh.post_id]


def test_embeddings_of_originals_and_replies_for_dpp() -> None:
    index = _index()
    original, reply, never = _post(1, 0), _post(1, 1, REPLY), _post(1, 2)
    asyncio.run(index.add([original, reply]))
    vectors, found = index.embeddings(np.array([reply.post_id, never.post_id, original.post_id]))
    assert found.tolist() == [True, False, True]
    np.testing.assert_allclose(vectors[[0, 2]], [_vector(reply), _vector(original)], rtol=1e-6)
    assert not vectors[1].any()
    ids, _ = index.search(vectors[0], 10)
    assert reply.post_id not in ids.tolist()
    index.remove([reply.post_id])
    assert not index.embeddings(np.array([reply.post_id]))[1][0]
    asyncio.run(index.add([reply]))
    assert index.expire(NOW + 48 * HOUR) == 1  # counts the searchable posts
    assert not index.embeddings(np.array([reply.post_id]))[1].any()
