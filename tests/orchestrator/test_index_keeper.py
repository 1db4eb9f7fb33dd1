"""The service as parts, on a fake Triton: the index keeper builds the post index when Triton first
answers, keeps posts it could not embed for later, switches to a newer model set with the posts
created and deleted meanwhile, and the one pipeline runs each feed on the set it started with."""

from __future__ import annotations

import asyncio

import pytest

from orchestrator.model_set import NOT_READY
from orchestrator.pipeline.candidate import FeedQuery
from orchestrator.post_index import PostIndex
from orchestrator.service import FeedService
from orchestrator.triton_client import PhoenixTriton, recorded_calls
from orchestrator.writes import NewPost
from phoenix.serving import RANKER, USER_TOWER
from tests.fakes.triton import FakeServer, model_set
from tests.fakes.viewers import follower_and_author


def _indexed(service: FeedService, post_id: int) -> bool:
    current = service.keeper.current
    assert current is not None
    return post_id in current.index.index


def test_before_triton_answers_there_is_no_set_and_feeds_say_why(
    service: FeedService, server: FakeServer
) -> None:
    server.down = True
    asyncio.run(service.maintain_once())
    assert service.keeper.current is None
    viewer, _ = follower_and_author(service, min_following=2)
    for in_network_only in (False, True):
        result = asyncio.run(service.feed(viewer, limit=50, in_network_only=in_network_only))
        assert result.degraded and result.degraded_reason == NOT_READY
        assert result.model_versions == {}
        assert result.candidates["phoenix_retrieval"] == 0
        ids = [p.post_id for p in result.posts]
        assert ids and ids == sorted(ids, reverse=True)
        assert all(p.in_network for p in result.posts)
    assert server.requests == []  # nothing reached the models


def test_the_first_answer_builds_the_index_and_feeds_are_ranked_on_that_set(
    service: FeedService, server: FakeServer
) -> None:
    asyncio.run(service.maintain_once())
    current = service.keeper.current
    assert current is not None and current.version == "1"
    indexable = [p for p in service.posts if current.index.indexable(p, service.clock.now_ms())]
    originals = [p for p in indexable if p.is_original]
    assert originals and len(current.index) == len(originals)
    viewer, _ = follower_and_author(service, min_following=2)
    result = asyncio.run(service.feed(viewer, limit=20))
    assert not result.degraded, result.degraded_reason
    assert result.model_versions == {"post_index": "1", RANKER: "1", USER_TOWER: "1"}
    assert result.candidates["phoenix_retrieval"] > 0
    assert asyncio.run(service.ready()) == {"triton": True, "index": True}


def test_a_post_created_while_triton_is_down_is_indexed_on_the_next_round(
    service: FeedService, server: FakeServer
) -> None:
    server.down = True
    _, author = follower_and_author(service, min_following=2)
    early = asyncio.run(service.writes.create_post(NewPost(author_id=author, text="early")))
    gone = asyncio.run(service.writes.create_post(NewPost(author_id=author, text="gone")))
    asyncio.run(service.writes.delete_post(gone.post_id))
    server.down = False
    asyncio.run(service.maintain_once())  # builds from the store: `early` is in it
    assert _indexed(service, early.post_id) and not _indexed(service, gone.post_id)

    server.down = True  # the index exists; Triton goes away
    late = asyncio.run(service.writes.create_post(NewPost(author_id=author, text="late")))
    assert not _indexed(service, late.post_id)
    assert [p.post_id for p in service.keeper.pending] == [late.post_id]
    server.down = False
    asyncio.run(service.maintain_once())
    assert _indexed(service, late.post_id) and service.keeper.pending == []


def test_a_newer_set_gets_its_own_index_with_the_writes_made_while_it_was_built(
    service: FeedService, server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    asyncio.run(service.maintain_once())
    first = service.keeper.current
    assert first is not None and first.version == "1"
    _, author = follower_and_author(service, min_following=2)
    doomed = asyncio.run(service.writes.create_post(NewPost(author_id=author, text="doomed")))
    made: list[int] = []
    build = service.keeper._new_index

    async def build_then_write(models: PhoenixTriton, now_ms: int) -> PostIndex:
        index = await build(models, now_ms)
        # Writes land while the new index is built: the old set keeps serving them.
        post = await service.writes.create_post(NewPost(author_id=author, text="meanwhile"))
        await service.writes.delete_post(doomed.post_id)
        made.append(post.post_id)
        assert service.keeper.current is first
        return index

    monkeypatch.setattr(service.keeper, "_new_index", build_then_write)
    server.publish(2, model_set())
    asyncio.run(service.maintain_once())
    second = service.keeper.current
    assert second is not None and second.version == "2" and second.index is not first.index
    assert made and _indexed(service, made[0])
    assert not _indexed(service, doomed.post_id)
    assert set(second.index.index.ids().tolist()) == set(first.index.index.ids().tolist())


def test_a_feed_runs_on_the_set_it_started_with_across_a_switch(
    service: FeedService, server: FakeServer
) -> None:
    asyncio.run(service.maintain_once())
    viewer_id, _ = follower_and_author(service, min_following=2)
    viewer = service.viewers.get(viewer_id)
    assert viewer is not None
    started = FeedQuery(
        viewer=viewer, now_ms=service.clock.now_ms(), limit=20, models=service.keeper.current
    )
    server.publish(2, model_set())
    asyncio.run(service.maintain_once())
    assert service.keeper.current is not None and service.keeper.current.version == "2"

    async def run(query: FeedQuery) -> set[tuple[str, str]]:
        with recorded_calls() as calls:
            result = await service.pipeline.run(query)
        assert not result.degraded, result.degraded_reason
        return calls

    assert asyncio.run(run(started)) == {(USER_TOWER, "1"), (RANKER, "1")}
    after = asyncio.run(service.feed(viewer_id, limit=20))
    assert after.model_versions == {"post_index": "2", RANKER: "2", USER_TOWER: "2"}
