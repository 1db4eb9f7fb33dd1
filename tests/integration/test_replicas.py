"""Two real `phoenix serve` replicas, each with its own data directory, sharing one real
redis-server (tests/redis_server.py): a write through one shows in the other's feeds within a
second, a delete is never undone, and a replica killed with `kill -9` catches up when it comes
back. No Triton behind them: degraded feeds hold the in-network posts, which the checks read."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from orchestrator.state.world_state import load_world_state
from phoenix.snowflake import WORKER_BITS
from phoenix.world.generate import generate_world
from phoenix.world.io import load_world
from phoenix.world.spec import WorldSpec

if TYPE_CHECKING:
    from conftest import ServeProcess  # tests/conftest.py: the phoenix_serve fixture's type
    from redis_server import RedisServer

#: The acceptance bound: a write through one replica is in the other's feeds within this.
CONVERGE_S = 1.0


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world") / "w"
    return generate_world(WorldSpec(seed=12, num_users=60, num_authors=12), out, progress=False)


def _viewer_and_author(world: Path) -> tuple[int, int]:
    """A viewer and an account the viewer follows (whose posts are in the viewer's feed)."""
    viewers = load_world_state(load_world(world)).viewers
    for viewer_id in viewers.user_ids():
        v = viewers.get(viewer_id)
        assert v is not None
        if v.following and not v.blocked and not v.muted:
            return viewer_id, v.following[0]
    raise AssertionError("nobody follows anybody in the test world")


def _ok(response: httpx.Response, status: int = 200) -> dict:
    assert response.status_code == status, response.text
    return response.json()


def _feed_ids(http: httpx.Client, viewer_id: int) -> set[int]:
    body = _ok(http.post("/v1/feed", json={"viewer_id": viewer_id, "limit": 200}))
    return {p["post_id"] for p in body["posts"]}


def _seconds_until(condition: object, timeout_s: float = 10.0) -> float:
    """Poll `condition()` until true; the seconds it took (fails after `timeout_s`)."""
    started = time.monotonic()
    while not condition():  # type: ignore[operator]
        assert time.monotonic() - started < timeout_s, f"not within {timeout_s} s"
        time.sleep(0.01)
    return time.monotonic() - started


def test_two_replicas_converge_within_a_second_and_a_killed_one_catches_up(
    world: Path, tmp_path: Path, phoenix_serve: ServeProcess, redis_server: RedisServer
) -> None:
    viewer, author = _viewer_and_author(world)
    shared = ("--redis", redis_server.url, "--world", str(world), "--insecure")
    a_options = ("--data", str(tmp_path / "a"), *shared)
    b_options = ("--data", str(tmp_path / "b"), *shared)  # its world is not published again
    _, a_url = phoenix_serve.start(*a_options)
    b, b_url = phoenix_serve.start(*b_options)
    a_http = httpx.Client(base_url=a_url, timeout=30.0)
    b_http = httpx.Client(base_url=b_url, timeout=30.0)
    try:
        world_posts = _feed_ids(a_http, viewer)
        assert world_posts and _feed_ids(b_http, viewer) == world_posts  # one dataset, imported

        # created through A: in B's in-network feed within a second
        post = _ok(a_http.post("/v1/posts", json={"author_id": author, "text": "via A"}), 201)
        assert post["post_id"] in _feed_ids(a_http, viewer)  # read-your-writes on A
        took = _seconds_until(lambda: post["post_id"] in _feed_ids(b_http, viewer))
        assert took < CONVERGE_S, f"B saw A's post after {took:.3f} s"

        # deleted through B: gone from A within a second, and not found there any more
        _ok(b_http.delete(f"/v1/posts/{post['post_id']}"))
        assert post["post_id"] not in _feed_ids(b_http, viewer)
        took = _seconds_until(lambda: post["post_id"] not in _feed_ids(a_http, viewer))
        assert took < CONVERGE_S, f"A dropped B's delete after {took:.3f} s"
        assert _ok(a_http.delete(f"/v1/posts/{post['post_id']}"), 404)["error"] == "not_found"

        # the replicas make different ids (their worker numbers) at the same moment
        from_b = _ok(b_http.post("/v1/posts", json={"author_id": author, "text": "via B"}), 201)
        from_a = _ok(a_http.post("/v1/posts", json={"author_id": author, "text": "via A"}), 201)
        mask = (1 << WORKER_BITS) - 1
        assert (from_a["post_id"] >> 12) & mask != (from_b["post_id"] >> 12) & mask

        # B killed: A goes on writing (a create, a delete of an older post), B comes back
        phoenix_serve.kill(b)
        b_http.close()
        later = _ok(a_http.post("/v1/posts", json={"author_id": author, "text": "meanwhile"}), 201)
        _ok(a_http.delete(f"/v1/posts/{from_b['post_id']}"))
        _, b_url = phoenix_serve.start(*b_options)
        b_http = httpx.Client(base_url=b_url, timeout=30.0)
        after = _feed_ids(b_http, viewer)  # caught up before it answers
        assert later["post_id"] in after and from_a["post_id"] in after
        assert from_b["post_id"] not in after and post["post_id"] not in after
        assert _ok(b_http.delete(f"/v1/posts/{post['post_id']}"), 404)["error"] == "not_found"
        assert _feed_ids(a_http, viewer) == after
        ready = b_http.get("/readyz").json()
        assert ready["replication"] is True  # the consumer runs (Triton is absent: not ready)
    finally:
        a_http.close()
        b_http.close()
