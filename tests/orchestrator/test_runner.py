"""The pipeline runner with fake sources and a fake ranker (unit level; the real stack is in
tests/integration/test_feed_service.py): merge order, filters, degraded mode."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from orchestrator.metrics import Metrics
from orchestrator.pipeline.candidate import RETRIEVAL, THUNDER, Candidates, FeedQuery
from orchestrator.pipeline.filters import default_filters
from orchestrator.pipeline.hydrator import PostHydrator
from orchestrator.pipeline.runner import FeedPipeline
from orchestrator.state.posts import InMemoryPostStore, Post
from orchestrator.state.viewers import InMemoryViewerStore
from orchestrator.triton_client import TritonUnavailable
from phoenix.actions import NUM_ACTIONS, Action
from phoenix.ranking_config import RankingConfig
from phoenix.snowflake import snowflake_id

NOW = 1_780_000_000_000
VIEWER, FRIEND, STRANGER = 1, 2, 3


def _post(minutes_ago: int, author: int, seq: int = 0) -> Post:
    post_id = int(snowflake_id(NOW - minutes_ago * 60_000, seq))
    return Post(post_id, author, conversation_id=post_id)


class FakeSource:
    """Gives these post ids (in-network for Thunder), or raises."""

    def __init__(self, name: str, post_ids: list[int] | Exception) -> None:
        self.name = name
        self._post_ids = post_ids

    async def fetch(self, query: FeedQuery) -> Candidates:
        if isinstance(self._post_ids, Exception):
            raise self._post_ids
        return Candidates.of(self.name, self._post_ids, in_network=self.name == THUNDER)


class FakeScorer:
    """Favorite probability from a table; raises TritonUnavailable when told to."""

    name = "ranker"

    def __init__(self, favorite: dict[int, float], fail: bool = False) -> None:
        self.favorite = favorite
        self.fail = fail
        self.calls = 0

    async def score(self, query: FeedQuery, candidates: Candidates) -> None:
        self.calls += 1
        if self.fail:
            raise TritonUnavailable("phoenix_ranker: StatusCode.UNAVAILABLE")
        p = np.zeros((len(candidates), NUM_ACTIONS), np.float32)
        p[:, Action.FAVORITE] = [self.favorite[i] for i in candidates.post_id.tolist()]
        candidates.predictions = p


def _setup(scorer: FakeScorer, retrieval_error: Exception | None = None):  # type: ignore[no-untyped-def]
    """A viewer following FRIEND (two posts, via Thunder) and STRANGER's post via retrieval."""
    viewers = InMemoryViewerStore()
    for user in (VIEWER, FRIEND, STRANGER):
        viewers.add_user(user)
    viewers.follow(VIEWER, FRIEND)
    friend_old, friend_new, stranger = _post(30, FRIEND), _post(5, FRIEND, 1), _post(10, STRANGER)
    posts = InMemoryPostStore([friend_old, friend_new, stranger])
    thunder = [friend_new.post_id, friend_old.post_id]
    retrieval = retrieval_error or [stranger.post_id]
    pipeline = FeedPipeline(
        sources=(FakeSource(RETRIEVAL, retrieval), FakeSource(THUNDER, thunder)),
        hydrator=PostHydrator(posts, viewers),
        filters=default_filters(),
        scorer=scorer,  # type: ignore[arg-type]
        ranking=RankingConfig(),
        metrics=Metrics(),
    )
    query = FeedQuery(viewer=viewers.get(VIEWER), now_ms=NOW)  # type: ignore[arg-type]
    return pipeline, query, (friend_old, friend_new, stranger)


def test_ranked_feed_from_both_sources_in_score_order() -> None:
    scorer = FakeScorer({})
    pipeline, query, (old, new, stranger) = _setup(scorer)
    scorer.favorite = {old.post_id: 0.9, new.post_id: 0.1, stranger.post_id: 0.5}
    result = asyncio.run(pipeline.run(query))
    assert not result.degraded
    assert [c.post_id for c in result.posts] == [old.post_id, stranger.post_id, new.post_id]
    assert result.candidates == {RETRIEVAL: 1, THUNDER: 2}
    assert [c.in_network for c in result.posts] == [True, False, True]
    assert {"sources", "hydrate", "filters", "ranker", "select", "total"} <= set(result.timings_ms)


def test_ranker_down_gives_in_network_posts_newest_first() -> None:
    scorer = FakeScorer({}, fail=True)
    pipeline, query, (old, new, _) = _setup(scorer)
    result = asyncio.run(pipeline.run(query))
    assert result.degraded and "ranker" in (result.degraded_reason or "")
    assert [c.post_id for c in result.posts] == [new.post_id, old.post_id]
    assert all(c.score == 0.0 for c in result.posts)


def test_retrieval_down_degrades_without_calling_the_ranker() -> None:
    scorer = FakeScorer({})
    pipeline, query, (old, new, _) = _setup(scorer, TritonUnavailable("phoenix_user_tower: down"))
    result = asyncio.run(pipeline.run(query))
    assert result.degraded and result.degraded_reason.startswith("phoenix_retrieval")  # type: ignore[union-attr]
    assert scorer.calls == 0
    assert [c.post_id for c in result.posts] == [new.post_id, old.post_id]


def test_a_bug_in_a_source_is_not_hidden_as_degraded() -> None:
    pipeline, query, _ = _setup(FakeScorer({}), RuntimeError("bug"))
    with pytest.raises(RuntimeError, match="bug"):
        asyncio.run(pipeline.run(query))


def test_the_page_carries_predictions_and_explanations_of_its_own_posts() -> None:
    scorer = FakeScorer({})
    pipeline, query, (old, new, stranger) = _setup(scorer)
    scorer.favorite = {old.post_id: 0.9, new.post_id: 0.1, stranger.post_id: 0.5}
    explained = FeedQuery(viewer=query.viewer, now_ms=NOW, explain=True)
    result = asyncio.run(pipeline.run(explained))
    by_id = {c.post_id: c for c in result.posts}
    for post_id, favorite in scorer.favorite.items():
        assert by_id[post_id].predictions[Action.FAVORITE] == pytest.approx(favorite)  # type: ignore[index]
    assert result.explanations is not None and set(result.explanations) == set(by_id)
    for c in result.posts:
        assert result.explanations[c.post_id]["final"] == c.score
    assert result.removed_ids is not None and result.removed_ids["duplicate"] == []


def test_a_retrieved_post_of_a_followed_author_is_in_network() -> None:
    scorer = FakeScorer({})
    pipeline, query, (old, _, stranger) = _setup(scorer)
    pipeline.sources = (FakeSource(RETRIEVAL, [old.post_id, stranger.post_id]),)
    scorer.favorite = {old.post_id: 0.9, stranger.post_id: 0.5}
    result = asyncio.run(pipeline.run(query))
    assert [(c.post_id, c.in_network, c.source) for c in result.posts] == [
        (old.post_id, True, RETRIEVAL),
        (stranger.post_id, False, RETRIEVAL),
    ]
