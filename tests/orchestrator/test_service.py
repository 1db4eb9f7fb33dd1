"""The feed service's writes and its Thunder-only answer before Triton was ever reached (no
Triton here: the address points at a closed port)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from orchestrator.build import build_service
from orchestrator.pipeline.sources import ThunderSource
from orchestrator.service import FeedService
from orchestrator.settings import OrchestratorSettings
from orchestrator.writes import NewPost
from phoenix.actions import ACTIONS
from phoenix.errors import Conflict, NotFound
from phoenix.triton.server import free_port
from phoenix.world.generate import generate_world
from phoenix.world.spec import WorldSpec
from tests.fakes.viewers import follower_and_author


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world") / "w"
    return generate_world(WorldSpec(seed=9, num_users=150, num_authors=25), out, progress=False)


@pytest.fixture
def service(world_dir: Path, tmp_path: Path) -> FeedService:
    settings = OrchestratorSettings(
        data=tmp_path / "data",
        world=world_dir,
        triton_url=f"127.0.0.1:{free_port()}",
        triton_timeout_s=0.2,
    )
    return build_service(settings)


def test_a_new_post_gets_a_snowflake_id_from_the_service_clock(service: FeedService) -> None:
    _, author = follower_and_author(service)
    before = service.clock.now_ms()
    post = asyncio.run(service.writes.create_post(NewPost(author_id=author, text="hello")))
    assert before <= post.created_ms <= service.clock.now_ms()
    assert post.is_original and post.thread_id == post.post_id
    assert service.posts.get(post.post_id) == post
    assert service.thunder.get(post.post_id) == post


def test_replies_and_reposts_link_to_what_they_answer(service: FeedService) -> None:
    _, author = follower_and_author(service)
    root = asyncio.run(service.writes.create_post(NewPost(author_id=author)))
    reply = asyncio.run(
        service.writes.create_post(NewPost(author_id=author, parent_id=root.post_id))
    )
    assert reply.is_reply and reply.conversation_id == root.post_id
    video = asyncio.run(
        service.writes.create_post(NewPost(author_id=author, is_video=True, video_duration_s=12.0))
    )
    repost = asyncio.run(
        service.writes.create_post(NewPost(author_id=author, reposted_id=video.post_id))
    )
    assert repost.is_repost and repost.is_video and repost.video_duration_s == 12.0


@pytest.mark.parametrize(
    ("post", "error", "field"),
    [
        (NewPost(author_id=1), NotFound, "author_id"),
        (NewPost(author_id=0, parent_id=1), NotFound, "author_id"),
    ],
)
def test_unknown_authors_are_refused(
    service: FeedService, post: NewPost, error: type, field: str
) -> None:
    with pytest.raises(error, match=field):
        asyncio.run(service.writes.create_post(post))


def test_replies_reposts_and_quotes_count_on_the_post_they_point_at(service: FeedService) -> None:
    _, author = follower_and_author(service)
    root = asyncio.run(service.writes.create_post(NewPost(author_id=author)))
    asyncio.run(service.writes.create_post(NewPost(author_id=author, parent_id=root.post_id)))
    asyncio.run(service.writes.create_post(NewPost(author_id=author, reposted_id=root.post_id)))
    asyncio.run(service.writes.create_post(NewPost(author_id=author, quoted_id=root.post_id)))
    asyncio.run(service.writes.create_post(NewPost(author_id=author, quoted_id=root.post_id)))
    assert service.posts.counts(root.post_id).tolist() == [0, 1, 1, 2, 0]


def test_the_world_s_profiles_and_counts_are_loaded(service: FeedService) -> None:
    viewer, _ = follower_and_author(service)
    profile = service.viewers.get(viewer).profile  # type: ignore[union-attr]
    assert np.asarray(profile.timezone).shape == (1,) and np.asarray(profile.ip_id)[0] != 0
    views = sum(int(service.posts.counts(p.post_id)[-1]) for p in service.posts)
    assert views > 0


def test_inconsistent_posts_are_refused_and_nothing_is_stored(service: FeedService) -> None:
    _, author = follower_and_author(service)
    root = asyncio.run(service.writes.create_post(NewPost(author_id=author)))
    count = len(service.posts)
    with pytest.raises(NotFound, match="parent_id"):
        asyncio.run(service.writes.create_post(NewPost(author_id=author, parent_id=12345)))
    with pytest.raises(Conflict, match="not both"):
        asyncio.run(
            service.writes.create_post(
                NewPost(author_id=author, parent_id=root.post_id, reposted_id=root.post_id)
            )
        )
    repost = asyncio.run(
        service.writes.create_post(NewPost(author_id=author, reposted_id=root.post_id))
    )
    with pytest.raises(Conflict, match="reposted_id"):
        asyncio.run(
            service.writes.create_post(NewPost(author_id=author, reposted_id=repost.post_id))
        )
    assert len(service.posts) == count + 1  # only the valid repost


def test_a_deleted_post_is_gone_everywhere_and_cannot_come_back(service: FeedService) -> None:
    _, author = follower_and_author(service)
    post = asyncio.run(service.writes.create_post(NewPost(author_id=author)))
    assert asyncio.run(service.writes.delete_post(post.post_id)) == post
    assert service.posts.get(post.post_id) is None and service.thunder.get(post.post_id) is None
    with pytest.raises(NotFound, match="post_id"):
        asyncio.run(service.writes.delete_post(post.post_id))
    assert service.posts.add(post) is False


def test_engagements_and_relations(service: FeedService) -> None:
    viewer, author = follower_and_author(service)
    post = asyncio.run(service.writes.create_post(NewPost(author_id=author)))
    actions = tuple(a in {"favorite", "share"} for a in ACTIONS)
    before = service.clock.now_ms()
    asyncio.run(service.writes.engage(viewer, post.post_id, actions, dwell_s=7.5, surface=2))
    history = service.viewers.get(viewer).history  # type: ignore[union-attr]
    assert history.post_ids[0] == post.post_id and history.author_ids[0] == author
    assert history.dwell_s[0] == 7.5 and history.surfaces[0] == 2
    assert before <= history.served_ms[0] <= service.clock.now_ms()
    assert service.posts.counts(post.post_id).tolist() == [1, 0, 0, 0, 1]  # a favorite, a view
    asyncio.run(
        service.writes.engage(viewer, post.post_id, tuple(a in {"reply", "quote"} for a in ACTIONS))
    )
    assert service.posts.counts(post.post_id).tolist() == [1, 1, 0, 1, 2]
    assert asyncio.run(service.writes.relate("block", viewer, author)) is True
    assert asyncio.run(service.writes.relate("block", viewer, author)) is False
    assert asyncio.run(service.writes.relate("block", viewer, author, undo=True)) is True
    assert asyncio.run(service.writes.muted_keyword(viewer, "spoilers")) is True
    assert "spoilers" in service.viewers.get(viewer).muted_keywords  # type: ignore[union-attr]
    with pytest.raises(Conflict, match="themselves"):
        asyncio.run(service.writes.relate("follow", viewer, viewer))
    with pytest.raises(NotFound, match="target_id"):
        asyncio.run(service.writes.relate("mute", viewer, 777))
    with pytest.raises(NotFound, match="post_id"):
        asyncio.run(service.writes.engage(viewer, 777, actions))


def test_before_triton_answers_feeds_are_in_network_and_degraded(service: FeedService) -> None:
    viewer, author = follower_and_author(service)
    post = asyncio.run(service.writes.create_post(NewPost(author_id=author, text="news")))
    result = asyncio.run(service.feed(viewer, limit=200))
    assert result.degraded and "Triton" in (result.degraded_reason or "")
    ids = [c.post_id for c in result.posts]
    assert post.post_id in ids and all(c.in_network for c in result.posts)
    assert ids == sorted(ids, reverse=True)
    with pytest.raises(NotFound, match="viewer_id"):
        asyncio.run(service.feed(4242, limit=10))


def test_readiness_reports_each_dependency(service: FeedService) -> None:
    assert asyncio.run(service.ready()) == {"triton": False, "index": False}


def test_a_scoring_budget_caps_what_thunder_builds_and_what_is_ranked(
    world_dir: Path, tmp_path: Path
) -> None:
    settings = OrchestratorSettings(
        data=tmp_path / "data",
        world=world_dir,
        triton_url=f"127.0.0.1:{free_port()}",
        scoring_budget=3,
    )
    service = build_service(settings)
    thunder = next(s for s in service.pipeline.sources if isinstance(s, ThunderSource))
    assert thunder.max_results == 6
    viewer = max(
        service.viewers.user_ids(),
        key=lambda v: len(service.viewers.get(v).following),  # type: ignore[union-attr]
    )
    result = asyncio.run(service.feed(viewer, limit=50))
    assert result.candidates["thunder"] <= 6
    assert 0 < len(result.posts) <= 3  # the budget keeps three for the (degraded) ranking
