"""The retrieval corpus: which posts are indexed, search, removal and expiry (Triton's candidate
tower replaced by a deterministic embedding)."""

from __future__ import annotations

import asyncio

import numpy as np

from orchestrator.post_index import PostIndex
from orchestrator.retrieval import make_index
from orchestrator.state.posts import Post
from orchestrator.triton_client import ServedModels
from phoenix.config import get_config
from phoenix.features import pack_posts
from phoenix.hashing import IdHasher
from phoenix.serving import CANDIDATE_TOWER, RANKER, USER_TOWER
from phoenix.snowflake import snowflake_id
from phoenix.world.schema import REPLY, REPOST

CONFIG = get_config("tiny")
NOW = 1_780_000_000_000
HOUR = 3_600_000


#: The towers' own config: a hash layout unlike the ranker's, so hashing with the wrong one shows.
TOWERS = CONFIG.with_overrides(
    num_user_rows=CONFIG.num_user_rows + 3, num_post_rows=CONFIG.num_post_rows + 7
)


class FakeTriton:
    """Embeds a post as the unit vector on axis (post hash % D); keeps what it was sent."""

    served = ServedModels(
        CONFIG,
        64,
        {RANKER: 8, USER_TOWER: 8, CANDIDATE_TOWER: 4},
        configs={RANKER: CONFIG, USER_TOWER: TOWERS, CANDIDATE_TOWER: TOWERS},
    )

    def __init__(self) -> None:
        self.sent: list[dict[str, np.ndarray]] = []

    async def embed_posts(self, posts: dict[str, np.ndarray]) -> np.ndarray:
        self.sent.append(posts)
        post_hash = posts["post_hash"]
        vectors = np.zeros((len(post_hash), CONFIG.emb_dim), np.float32)
        vectors[np.arange(len(post_hash)), post_hash[:, 0] % CONFIG.emb_dim] = 1.0
        return vectors


def _post(hours_ago: float, seq: int, kind: int = 0, sids: tuple[int, ...] = ()) -> Post:
    post_id = int(snowflake_id(NOW - int(hours_ago * HOUR), seq))
    return Post(post_id, author_id=7, kind=kind, semantic_ids=sids)


def _index(triton: FakeTriton | None = None) -> PostIndex:
    return PostIndex(make_index("exact", dim=CONFIG.emb_dim), triton or FakeTriton())  # type: ignore[arg-type]


def test_the_candidate_tower_gets_its_own_packing_of_the_posts() -> None:
    triton = FakeTriton()
    posts = [_post(1, 0, sids=(5, 6, 7, 8, 9, 10)), _post(1, 1), _post(1, 2, REPLY, (300, 1))]
    asyncio.run(_index(triton).add(posts))
    (sent,) = triton.sent
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
    hasher = IdHasher(TOWERS)
    target = posts[3]
    query = np.zeros(CONFIG.emb_dim, np.float32)
    query[hasher.posts(np.array([target.post_id]))[0, 0] % CONFIG.emb_dim] = 1.0
    ids, scores = index.search(query, 3)
    assert target.post_id in ids.tolist() and scores[0] == 1.0
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
    assert vectors[0].sum() == 1.0 and vectors[1].sum() == 0.0 and vectors[2].sum() == 1.0
    ids, _ = index.search(vectors[0], 10)
    assert reply.post_id not in ids.tolist()
    index.remove([reply.post_id])
    assert not index.embeddings(np.array([reply.post_id]))[1][0]
    asyncio.run(index.add([reply]))
    assert index.expire(NOW + 48 * HOUR) == 1  # counts the searchable posts
    assert not index.embeddings(np.array([reply.post_id]))[1].any()
