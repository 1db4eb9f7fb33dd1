"""The scorer, the retrieval source, the post index and a whole pipeline against the fake Triton
(tests/fakes/triton.py): the real client over an in-process server whose answers are known
functions of what it is sent. The real tritonserver is in tests/integration."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from orchestrator.metrics import Metrics
from orchestrator.model_set import ModelSet
from orchestrator.pipeline.candidate import RETRIEVAL, Candidates, FeedQuery
from orchestrator.pipeline.features import ModelFeatures
from orchestrator.pipeline.filters import default_filters
from orchestrator.pipeline.hydrator import PostHydrator
from orchestrator.pipeline.runner import FeedPipeline
from orchestrator.pipeline.scorer import PhoenixScorer
from orchestrator.pipeline.sources import RetrievalSource, ThunderSource
from orchestrator.post_index import PostIndex
from orchestrator.retrieval import make_index
from orchestrator.state.posts import InMemoryPostStore, Post
from orchestrator.state.viewers import Engagement, InMemoryViewerStore
from orchestrator.thunder import Thunder
from orchestrator.triton_client import (
    PhoenixTriton,
    TritonRefused,
    TritonUnavailable,
    recorded_calls,
)
from phoenix.actions import NUM_ACTIONS, POST_UNEXPLORED_COLUMN, Action, from_columns
from phoenix.ranking_config import RankingConfig
from phoenix.serving import CANDIDATE_TOWER, RANKER, USER_TOWER
from phoenix.snowflake import snowflake_id
from tests.fakes.triton import FakeServer, FakeTriton, dwell_s, model_set, probability

NOW = 1_780_000_000_000
MINUTE = 60_000
VIEWER, FRIEND = 1, 2
STRANGERS = range(100, 180)


class World:
    """VIEWER follows FRIEND (3 posts) and engaged with two of 80 strangers' posts."""

    def __init__(self) -> None:
        self.viewers = InMemoryViewerStore()
        for user in (VIEWER, FRIEND, *STRANGERS):
            self.viewers.add_user(user)
        self.viewers.follow(VIEWER, FRIEND)
        self.friend = [self._post(5 + i, FRIEND, i) for i in range(3)]
        self.strangers = [self._post(60 + i, a, i) for i, a in enumerate(STRANGERS)]
        self.posts = InMemoryPostStore([*self.friend, *self.strangers])
        self.engaged = self.strangers[7], self.strangers[42]
        self.viewers.load_histories(
            [
                (
                    VIEWER,
                    [
                        Engagement(p.post_id, p.author_id, _favorite(), 0, NOW - i * MINUTE)
                        for i, p in enumerate(self.engaged)
                    ],
                )
            ]
        )
        self.features = ModelFeatures(self.posts)

    @staticmethod
    def _post(minutes_ago: int, author: int, seq: int) -> Post:
        post_id = int(snowflake_id(NOW - minutes_ago * MINUTE, seq))
        return Post(post_id, author, conversation_id=post_id)

    def query(self, **kwargs: object) -> FeedQuery:
        viewer = self.viewers.get(VIEWER)
        assert viewer is not None
        return FeedQuery(viewer=viewer, now_ms=NOW, **kwargs)  # type: ignore[arg-type]


def _favorite() -> tuple[bool, ...]:
    return tuple(i == Action.FAVORITE for i in range(NUM_ACTIONS))


async def _connected(server: FakeServer | None = None) -> PhoenixTriton:
    triton = FakeTriton(server)
    return triton.pinned(await triton.connect())


async def _index(world: World, triton: PhoenixTriton) -> PostIndex:
    dim = triton.served.embedding_dim(CANDIDATE_TOWER)
    index = PostIndex(make_index("exact", dim=dim), triton)
    await index.add(list(world.posts))
    return index


async def _models(world: World, triton: PhoenixTriton) -> ModelSet:
    """The model set of a pinned client: it and a fresh post index of the world's posts."""
    return ModelSet(triton, await _index(world, triton))


def _pipeline(world: World) -> FeedPipeline:
    """The feed pipeline as the service wires it: retrieval and Thunder, hydration, the default
    filters, the ranker; retrieval, ranker and DPP read the query's model set."""
    thunder = Thunder()
    thunder.ingest_many(list(world.posts))
    return FeedPipeline(
        sources=(RetrievalSource(world.features, k=20), ThunderSource(thunder)),
        hydrator=PostHydrator(world.posts, world.viewers),
        filters=default_filters(),
        scorer=PhoenixScorer(world.features),
        ranking=RankingConfig(),
        metrics=Metrics(),
    )


def test_connect_reads_the_served_set_from_the_models_configs() -> None:
    models = model_set("tiny", max_candidates=48)
    served = asyncio.run(FakeTriton(FakeServer({3: models})).connect())
    assert served.version == "3" and served.max_candidates == 48
    assert served.config == models.ranker and served.config_of(USER_TOWER) == models.towers
    assert served.max_batch == models.max_batch


def test_the_scorer_takes_the_rankers_columns_in_candidate_order() -> None:
    world = World()
    server = FakeServer({1: model_set("tiny", max_candidates=64)})

    async def score() -> Candidates:
        query = world.query(models=await _models(world, await _connected(server)))
        ids = [p.post_id for p in world.strangers[:70]]  # over the limit: two requests
        candidates = Candidates.of(RETRIEVAL, ids, in_network=False)
        PostHydrator(world.posts, world.viewers).hydrate(query, candidates)
        await PhoenixScorer(world.features).score(query, candidates)
        return candidates

    candidates = asyncio.run(score())
    sent = [r for r in server.requests if r.model == RANKER]
    assert [r.arrays["candidate_post_hash"].shape[1] for r in sent] == [64, 16]  # 64, 6 padded
    hashes = np.concatenate([r.arrays["candidate_post_hash"][0, :, 0] for r in sent])
    hashes = np.concatenate([hashes[:64], hashes[64:70]])  # the padding dropped
    config = server.versions[1].ranker
    columns = probability(hashes, config.num_action_columns)
    np.testing.assert_allclose(candidates.predictions, from_columns(columns), rtol=1e-6)
    np.testing.assert_allclose(
        candidates.post_unexplored, columns[:, POST_UNEXPLORED_COLUMN], rtol=1e-6
    )
    np.testing.assert_allclose(candidates.dwell_time_s, dwell_s(hashes))
    assert sent[0].arrays["history_post_hash"].shape[1] == config.history_len


def test_retrieval_finds_the_posts_the_viewer_engaged_with_first() -> None:
    world = World()

    async def fetch() -> Candidates:
        models = await _models(world, await _connected())
        return await RetrievalSource(world.features, k=5).fetch(world.query(models=models))

    found = asyncio.run(fetch())
    assert len(found) == 5
    assert set(found.post_id[:2].tolist()) == {p.post_id for p in world.engaged}
    assert (np.diff(found.retrieval_score) <= 1e-6).all()  # best first


def test_a_feed_names_the_pinned_version_even_after_a_newer_one_appears() -> None:
    world = World()
    server = FakeServer({1: model_set()})

    async def feeds() -> tuple[list[object], set[tuple[str, str]], str]:
        triton = FakeTriton(server)
        models = await _models(world, triton.pinned(await triton.connect()))
        server.publish(2, model_set())
        with recorded_calls() as calls:
            result = await _pipeline(world).run(world.query(limit=10, models=models))
        assert not result.degraded, result.degraded_reason
        return result.posts, calls, (await triton.newest_set()).version

    posts, calls, newest = asyncio.run(feeds())
    assert len(posts) == 10
    assert calls == {(USER_TOWER, "1"), (RANKER, "1")}
    assert newest == "2"
    assert {r.version for r in server.requests} == {"1"}


def test_triton_down_degrades_the_feed_to_thunder() -> None:
    world = World()
    server = FakeServer()

    async def feed() -> object:
        models = await _models(world, await _connected(server))
        server.down = True
        return await _pipeline(world).run(world.query(models=models))

    result = asyncio.run(feed())
    assert result.degraded  # type: ignore[attr-defined]
    assert {c.post_id for c in result.posts} == {p.post_id for p in world.friend}  # type: ignore[attr-defined]


def test_a_request_the_model_does_not_take_is_refused_not_unavailable() -> None:
    metrics = Metrics()

    async def rank() -> None:
        triton = FakeTriton(metrics=metrics)
        await triton.connect()
        surface = np.zeros(4, np.int64)
        await triton.rank({}, {"candidate_surface": surface})  # no viewer, no candidate ids

    with pytest.raises(TritonRefused, match=r"phoenix_ranker: .*expected inputs"):
        asyncio.run(rank())
    assert metrics.triton_refused.labels(RANKER)._value.get() == 1


def test_unreachable_triton_is_unavailable_and_opens_the_circuit() -> None:
    server = FakeServer()
    server.down = True
    triton = FakeTriton(server)
    with pytest.raises(TritonUnavailable, match=r"fake-triton:8001"):
        asyncio.run(triton.connect())
    assert not asyncio.run(triton.is_ready())
