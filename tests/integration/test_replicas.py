"""Two real `phoenix serve` replicas, each with its own data directory, sharing one real
redis-server (tests/redis_server.py): a write through one shows in the other's feeds within a
second, a delete is never undone, and a replica killed with `kill -9` catches up when it comes
back. No Triton behind them: degraded feeds hold the in-network posts, which the checks read."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import numpy as np
import pytest

from orchestrator.state.dataset import TABLES
from orchestrator.state.sqlite_store import SqliteStore
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


def _cast(world: Path) -> tuple[int, int, int]:
    """A viewer, an account the viewer follows (whose posts are in the viewer's feed) and one
    the viewer does not follow yet."""
    viewers = load_world_state(load_world(world)).viewers
    for viewer_id in viewers.user_ids():
        v = viewers.get(viewer_id)
        assert v is not None
        if v.following and not v.blocked and not v.muted and not v.muted_keywords:
            taken = {viewer_id, *v.following, *v.blocked_by}
            other = next(u for u in viewers.user_ids() if u not in taken)
            return viewer_id, v.following[0], other
    raise AssertionError("nobody follows anybody in the test world")


def _ok(response: httpx.Response, status: int = 200) -> dict:
    assert response.status_code == status, response.text
    return response.json()


def _feed_ids(http: httpx.Client, viewer_id: int) -> set[int]:
    body = _ok(http.post("/v1/feed", json={"viewer_id": viewer_id, "limit": 200}))
    return {p["post_id"] for p in body["posts"]}


def _unchanged(http: httpx.Client, path: str, body: dict) -> bool:
    return not _ok(http.post(path, json=body))["changed"]


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
    viewer, author, other = _cast(world)
    shared = ("--redis", redis_server.url, "--world", str(world), "--insecure")
    a_options = ("--data", str(tmp_path / "a"), *shared)
    b_options = ("--data", str(tmp_path / "b"), *shared)  # its world is not published again
    a, a_url = phoenix_serve.start(*a_options)
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
        b, b_url = phoenix_serve.start(*b_options)
        b_http = httpx.Client(base_url=b_url, timeout=30.0)
        after = _feed_ids(b_http, viewer)  # caught up before it answers
        assert later["post_id"] in after and from_a["post_id"] in after
        assert from_b["post_id"] not in after and post["post_id"] not in after
        assert _ok(b_http.delete(f"/v1/posts/{post['post_id']}"), 404)["error"] == "not_found"
        assert _feed_ids(a_http, viewer) == after
        ready = b_http.get("/readyz").json()
        assert ready["replication"] is True  # the consumer runs (Triton is absent: not ready)

        # every other kind of write, through either replica, becomes the other's state too
        relation = {"viewer_id": viewer, "target_id": other}
        assert _ok(a_http.post("/v1/follows", json=relation))["changed"]
        engagement = {"viewer_id": viewer, "post_id": later["post_id"], "actions": ["favorite"]}
        _ok(b_http.post("/v1/engagements", json=engagement), 201)
        keyword = {"viewer_id": viewer, "keyword": "zebra"}
        assert _ok(b_http.post("/v1/muted_keywords", json=keyword))["changed"]
        for replica in (a_http, b_http):  # already so on both: nothing changes
            for path, body in (("/v1/follows", relation), ("/v1/muted_keywords", keyword)):
                _seconds_until(lambda r=replica, p=path, b=body: _unchanged(r, p, b))
        outputs = [phoenix_serve.stop(p) for p in (a, b)]
        assert all("Traceback" not in out for out in outputs), outputs
    finally:
        a_http.close()
        b_http.close()

    # both replicas' stores hold the same state: every table, every deleted id, every count
    loaded = []
    for name in ("a", "b"):
        store = SqliteStore(tmp_path / name / "state.sqlite")
        try:
            loaded.append(store.load())
        finally:
            store.close()
    (a_data, a_extras), (b_data, b_extras) = loaded
    for table in TABLES:
        assert a_data.table(table).equals(b_data.table(table)), table
    assert a_data.table("engagements").num_rows == load_world(world).engagements.num_rows + 1
    assert dict(a_extras.deleted) == dict(b_extras.deleted)
    assert np.array_equal(a_extras.link_ids, b_extras.link_ids)
    assert np.array_equal(a_extras.link_counts, b_extras.link_counts)
    assert {post["post_id"], from_b["post_id"]} <= set(a_extras.deleted)
