"""The whole request path against the real stack: `tritonserver` serving a freshly exported tiny
repository, and the orchestrator's FastAPI app on uvicorn, called over HTTP.

One stack for the module. The feed invariants of DESIGN.md 7 are checked on real feeds; posts are
created and deleted through the API; Triton is stopped and restarted under the running service.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from export.checkpoint import Checkpoint, save_checkpoint
from export.repository.build import ExportSettings, export_repository
from orchestrator.local_stack import LocalStack
from phoenix.config import get_config
from phoenix.snowflake import created_ms
from phoenix.world.generate import generate_world
from phoenix.world.spec import WorldSpec

pytestmark = pytest.mark.triton

MAX_AGE_MS = 48 * 3_600_000


class Stack:
    """The running stack and an HTTP client for the orchestrator."""

    def __init__(self, local: LocalStack) -> None:
        self.local = local
        self.triton = local.triton
        self.service = local.service
        self.http = httpx.Client(base_url=local.url, timeout=30.0)

    def feed(self, viewer_id: int, **body: object) -> dict:
        response = self.http.post("/v1/feed", json={"viewer_id": viewer_id, **body})
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("stack")
    world_dir = generate_world(
        WorldSpec(seed=5, num_users=300, num_authors=60), work / "world", progress=False
    )
    checkpoint = save_checkpoint(Checkpoint.initialise(get_config("tiny"), seed=3), work / "ckpt")
    repository = work / "model_repository"
    export_repository(checkpoint, repository, ExportSettings(max_candidates=512))
    local = LocalStack(repository, world_dir, triton_timeout_s=5.0, reconnect_s=0.5)
    with local:
        stack = Stack(local)
        try:
            yield stack
        finally:
            stack.http.close()


def _ordinary_viewers(stack: Stack, count: int) -> list[int]:
    """Viewers who follow several accounts and have a history: the common case."""
    viewers = stack.service.viewers
    chosen = []
    for user_id in viewers.user_ids():
        v = viewers.get(user_id)
        if v is not None and len(v.following) >= 8 and len(v.history) >= 5:
            chosen.append(user_id)
        if len(chosen) == count:
            break
    assert chosen, "the test world has no ordinary viewer"
    return chosen


def test_feeds_keep_every_invariant(stack: Stack) -> None:
    service = stack.service
    sources: set[str] = set()
    for viewer_id in _ordinary_viewers(stack, 5):
        viewer = service.viewers.get(viewer_id)
        assert viewer is not None
        body = stack.feed(viewer_id, limit=100)  # long: both sources show, whatever the scores
        assert body["degraded"] is False, body.get("degraded_reason")
        posts = body["posts"]
        assert 0 < len(posts) <= 100
        ids = [p["post_id"] for p in posts]
        assert len(ids) == len(set(ids)), "duplicates"
        scores = [p["score"] for p in posts]
        assert scores == sorted(scores, reverse=True)
        now = service.clock.now_ms()
        conversations = set()
        for p in posts:
            post = service.posts.get(p["post_id"])
            assert post is not None
            assert post.author_id != viewer_id, "own post"
            assert post.author_id not in viewer.blocked | viewer.muted | viewer.blocked_by
            assert now - int(created_ms(post.post_id)) <= MAX_AGE_MS, "older than 48 h"
            key = post.reposted_id if post.is_repost else post.thread_id
            assert key not in conversations, "two posts of one conversation"
            conversations.add(key)
            assert set(p["predictions"]) and all(0 <= v <= 1 for v in p["predictions"].values())
            if not p["in_network"]:
                assert post.is_original, "out-of-network reply or repost"
            sources.add(p["source"])
        for key in ("sources", "hydrate", "filters", "ranker", "select", "total"):
            assert key in body["timings_ms"]
    assert sources == {"thunder", "phoenix_retrieval"}, sources


def test_seen_and_served_ids_are_excluded(stack: Stack) -> None:
    viewer_id = _ordinary_viewers(stack, 1)[0]
    first = [p["post_id"] for p in stack.feed(viewer_id, limit=20)["posts"]]
    seen, served = first[:10], first[10:]
    second = [
        p["post_id"]
        for p in stack.feed(viewer_id, limit=20, seen_ids=seen, served_ids=served)["posts"]
    ]
    assert second and not set(second) & set(first)


def test_limit_and_in_network_only(stack: Stack) -> None:
    viewer_id = _ordinary_viewers(stack, 1)[0]
    assert len(stack.feed(viewer_id, limit=3)["posts"]) <= 3
    body = stack.feed(viewer_id, limit=50, in_network_only=True)
    assert body["posts"] and all(p["in_network"] for p in body["posts"])
    assert body["candidates"].get("phoenix_retrieval", 0) == 0


def reproduce(explanation: dict, constants: dict) -> float:
    """A post's score from its explanation alone, by docs/RANKING.md's arithmetic."""
    e = explanation
    raw = sum(e["contributions"].values()) + sum(e["adjustments"].values())
    assert raw == pytest.approx(e["raw"], abs=1e-9)
    pos, neg = constants["positive_weight_sum"], constants["negative_weight_sum"]
    if raw >= 0:
        squashed = raw + constants["score_offset"]
    else:
        squashed = (raw + neg) / (pos + neg) * constants["negative_score_scale"]
    assert squashed == pytest.approx(e["squashed"], abs=1e-9)
    lifted = e["new_author_lift"]
    assert lifted == squashed or lifted > squashed  # the lift only raises a score
    floor, decay = constants["diversity_floor"], constants["diversity_decay"]
    multiplier = (1 - floor) * decay ** e["diversity_k"] + floor
    assert multiplier == pytest.approx(e["diversity_multiplier"], abs=1e-12)
    final = lifted * multiplier * e["oon_factor"] if e["dpp_kept"] else 0.0
    assert final == pytest.approx(e["final"], abs=1e-9)
    return final


def test_explained_feeds_reproduce_every_score(stack: Stack) -> None:
    for viewer_id in _ordinary_viewers(stack, 3):
        plain = stack.feed(viewer_id, limit=60)
        assert plain["explain"] is None and all(p["explanation"] is None for p in plain["posts"])
        body = stack.feed(viewer_id, limit=60, explain=True, explain_removed_ids=True)
        explain = body["explain"]
        assert explain["sources"] == body["candidates"]
        for name, count in explain["filters"].items():
            assert len(explain["removed_ids"][name]) == count, name
        assert body["posts"]
        for p in body["posts"]:
            e = p["explanation"]
            assert reproduce(e, explain["constants"]) == pytest.approx(p["score"], abs=1e-9)
            assert e["final"] == p["score"]
            assert set(e["probabilities"]) >= set(p["predictions"])
        kept = [p for p in body["posts"] if p["explanation"]["dpp_kept"]]
        assert 0 < len(kept) <= 50


def test_video_only_feeds_hold_videos(stack: Stack) -> None:
    viewer_id = _ordinary_viewers(stack, 1)[0]
    body = stack.feed(viewer_id, limit=50, video_only=True, explain=True)
    posts = body["posts"]
    assert all(stack.service.posts.get(p["post_id"]).is_video for p in posts)  # type: ignore[union-attr]
    assert body["explain"]["filters"]["video_only"] >= 0


def _scroll(stack: Stack, viewer_id: int, pages: int = 20) -> list[int]:
    """Every post the viewer is shown while scrolling: pages of 200, each passing the ids served
    so far as served_ids, until a page comes back empty. (Where a post ranks depends on the
    random model's scores; that it is reachable does not.)"""
    served: list[int] = []
    for _ in range(pages):
        page = [p["post_id"] for p in stack.feed(viewer_id, limit=200, served_ids=served)["posts"]]
        if not page:
            break
        served += page
    return served


def test_a_created_post_reaches_followers_and_a_deleted_one_never_returns(stack: Stack) -> None:
    service = stack.service
    viewer_id = _ordinary_viewers(stack, 1)[0]
    author_id = service.viewers.get(viewer_id).following[0]  # type: ignore[union-attr]
    created = stack.http.post("/v1/posts", json={"author_id": author_id, "text": "fresh words"})
    assert created.status_code == 201, created.text
    post_id = created.json()["post_id"]
    assert post_id in _scroll(stack, viewer_id), "not in the follower's feed"
    assert stack.http.delete(f"/v1/posts/{post_id}").status_code == 200
    assert post_id not in _scroll(stack, viewer_id)
    assert stack.http.delete(f"/v1/posts/{post_id}").status_code == 404


def test_writes_change_the_next_feed(stack: Stack) -> None:
    viewer_id = _ordinary_viewers(stack, 1)[0]
    posts = stack.feed(viewer_id, limit=35)["posts"]
    blocked = posts[0]["author_id"]
    r = stack.http.post("/v1/blocks", json={"viewer_id": viewer_id, "target_id": blocked})
    assert r.status_code == 200 and r.json() == {"changed": True}
    assert blocked not in {p["author_id"] for p in stack.feed(viewer_id, limit=200)["posts"]}
    stack.http.request("DELETE", "/v1/blocks", json={"viewer_id": viewer_id, "target_id": blocked})
    engaged = posts[1]["post_id"]
    r = stack.http.post(
        "/v1/engagements",
        json={"viewer_id": viewer_id, "post_id": engaged, "actions": ["favorite", "reply"]},
    )
    assert r.status_code == 201
    history = stack.service.viewers.get(viewer_id).history  # type: ignore[union-attr]
    assert history.post_ids[0] == engaged and history.actions[0].sum() == 2


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/v1/feed", {"viewer_id": 0}, "viewer_id"),
        ("POST", "/v1/feed", {"viewer_id": 1, "limit": 201}, "limit"),
        ("POST", "/v1/feed", {"viewer_id": "x"}, "viewer_id"),
        ("POST", "/v1/feed", {"viewer_id": 1, "seen_ids": list(range(10_001))}, "seen_ids"),
        ("POST", "/v1/feed", {"viewer_id": 1, "colour": "red"}, "colour"),
        ("POST", "/v1/engagements", {"viewer_id": 1, "post_id": 1, "actions": ["hug"]}, "actions"),
        ("POST", "/v1/posts", {"author_id": 1, "text": "x" * 1001}, "text"),
        ("POST", "/v1/muted_keywords", {"viewer_id": 1, "keyword": "   "}, "keyword"),
    ],
)
def test_malformed_requests_get_422_naming_the_field(
    stack: Stack, method: str, path: str, body: dict, field: str
) -> None:
    response = stack.http.request(method, path, json=body)
    assert response.status_code == 422, response.text
    assert field in response.text


def test_unknown_ids_get_404_and_bad_json_a_4xx(stack: Stack) -> None:
    r = stack.http.post("/v1/feed", json={"viewer_id": 12345})
    assert r.status_code == 404 and "viewer_id" in r.text
    r = stack.http.post("/v1/posts", json={"author_id": 12345})
    assert r.status_code == 404 and "author_id" in r.text
    r = stack.http.post(
        "/v1/feed", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert 400 <= r.status_code < 500
    r = stack.http.post(
        "/v1/feed", content=b"x" * (2 << 20), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413


def test_metrics_and_openapi(stack: Stack) -> None:
    viewer_id = _ordinary_viewers(stack, 1)[0]
    stack.feed(viewer_id)
    text = stack.http.get("/metrics").text
    for name in (
        "phoenix_stage_seconds_bucket",
        "phoenix_candidates_bucket",
        "phoenix_triton_call_seconds_bucket",
        'phoenix_http_requests_total{route="/v1/feed",status="200"}',
    ):
        assert name in text
    schema = stack.http.get("/openapi.json").json()
    assert {"/v1/feed", "/v1/posts", "/v1/engagements", "/readyz"} <= set(schema["paths"])


def test_triton_down_degrades_then_recovers(stack: Stack) -> None:
    """Runs last in the module: it stops and restarts Triton."""
    viewer_id = _ordinary_viewers(stack, 1)[0]
    stack.triton.stop()
    try:
        for _ in range(3):
            body = stack.feed(viewer_id, limit=20)
            assert body["degraded"] is True
            assert all(p["in_network"] for p in body["posts"])
            ids = [p["post_id"] for p in body["posts"]]
            assert ids == sorted(ids, reverse=True), "recency order"
        assert stack.http.get("/readyz").status_code == 503
    finally:
        stack.triton.start()
    deadline = time.monotonic() + 60
    while True:
        body = stack.feed(viewer_id, limit=20)
        if not body["degraded"]:
            break
        assert time.monotonic() < deadline, "the service did not recover"
        time.sleep(0.5)
    assert body["posts"] and np.all([p["predictions"] for p in body["posts"]])
    stack.local.wait_ready(60)
