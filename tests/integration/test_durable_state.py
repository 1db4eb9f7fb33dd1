"""Every acknowledged write survives a `kill -9` of a real `phoenix serve` over a real SQLite data
directory: one write of every kind over HTTP, SIGKILL, a restart with the same command line, and
the writes are all back (a deleted post stays deleted). No Triton behind it: degraded feeds show
the in-network posts, which is what the checks read."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from orchestrator.state.sqlite_store import SqliteStore
from orchestrator.state.world_state import load_state, load_world_state
from phoenix.actions import ACTIONS
from phoenix.world.generate import generate_world
from phoenix.world.io import load_world
from phoenix.world.spec import WorldSpec

if TYPE_CHECKING:
    from conftest import ServeProcess  # tests/conftest.py: the phoenix_serve fixture's type


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world") / "w"
    return generate_world(WorldSpec(seed=11, num_users=60, num_authors=12), out, progress=False)


def _cast(world: Path) -> tuple[int, int, int, int, int, int]:
    """A viewer who follows two accounts or more (`author`, `dropped`), and three other users:
    one to follow, one to block, one to mute (none followed, blocked or muted yet)."""
    viewers = load_world_state(load_world(world)).viewers
    for viewer_id in viewers.user_ids():
        v = viewers.get(viewer_id)
        assert v is not None
        if len(v.following) < 2:
            continue
        taken = {viewer_id, *v.following, *v.blocked, *v.blocked_by, *v.muted}
        others = [u for u in viewers.user_ids() if u not in taken][:3]
        if len(others) == 3:
            return viewer_id, v.following[0], v.following[1], *others  # type: ignore[return-value]
    raise AssertionError("no viewer follows two accounts in the test world")


def _feed_ids(http: httpx.Client, viewer_id: int) -> set[int]:
    response = http.post("/v1/feed", json={"viewer_id": viewer_id, "limit": 200})
    assert response.status_code == 200, response.text
    return {p["post_id"] for p in response.json()["posts"]}


def _ok(response: httpx.Response, status: int = 200) -> dict:
    assert response.status_code == status, response.text
    return response.json()


def test_every_acknowledged_write_survives_kill_9(
    world: Path, tmp_path: Path, phoenix_serve: ServeProcess
) -> None:
    viewer, author, dropped, followed, blocked, muted = _cast(world)
    options = ("--data", str(tmp_path / "data"), "--world", str(world), "--insecure")
    process, url = phoenix_serve.start(*options)
    with httpx.Client(base_url=url, timeout=30.0) as http:
        post = _ok(http.post("/v1/posts", json={"author_id": author, "text": "still here"}), 201)
        gone = _ok(http.post("/v1/posts", json={"author_id": author, "text": "regretted"}), 201)
        hidden = _ok(http.post("/v1/posts", json={"author_id": author, "text": "zebra news"}), 201)
        reply = _ok(
            http.post(
                "/v1/posts",
                json={"author_id": followed, "text": "a reply", "parent_id": hidden["post_id"]},
            ),
            201,
        )
        _ok(http.delete(f"/v1/posts/{gone['post_id']}"))
        engagement = {"viewer_id": viewer, "post_id": post["post_id"], "actions": ["favorite"]}
        _ok(http.post("/v1/engagements", json=engagement), 201)
        for path, target in (
            ("/v1/follows", followed),
            ("/v1/blocks", blocked),
            ("/v1/mutes", muted),
        ):
            assert _ok(http.post(path, json={"viewer_id": viewer, "target_id": target}))["changed"]
        relation = {"viewer_id": viewer, "target_id": dropped}
        assert _ok(http.request("DELETE", "/v1/follows", json=relation))["changed"]
        keyword = {"viewer_id": viewer, "keyword": "zebra"}
        assert _ok(http.post("/v1/muted_keywords", json=keyword))["changed"]
        before = _feed_ids(http, viewer)
    assert post["post_id"] in before and reply["post_id"] in before
    assert gone["post_id"] not in before and hidden["post_id"] not in before

    phoenix_serve.kill(process)  # no shutdown code runs: only what was committed survives
    process, url = phoenix_serve.start(*options)  # the same command line, world included
    with httpx.Client(base_url=url, timeout=30.0) as http:
        after = _feed_ids(http, viewer)
        assert post["post_id"] in after and reply["post_id"] in after  # created, and kept
        assert gone["post_id"] not in after  # deleted, and kept deleted
        assert hidden["post_id"] not in after  # the muted keyword is still muted
        refused = _ok(http.delete(f"/v1/posts/{gone['post_id']}"), 404)
        assert refused["error"] == "not_found" and "post_id" in refused["detail"]
        for path, target in (
            ("/v1/follows", followed),
            ("/v1/blocks", blocked),
            ("/v1/mutes", muted),
        ):  # already there: nothing changes
            assert not _ok(http.post(path, json={"viewer_id": viewer, "target_id": target}))[
                "changed"
            ]
        assert not _ok(http.request("DELETE", "/v1/follows", json=relation))["changed"]
        assert not _ok(http.post("/v1/muted_keywords", json=keyword))["changed"]
        newer = _ok(http.post("/v1/posts", json={"author_id": author, "text": "later"}), 201)
        assert newer["post_id"] > hidden["post_id"]  # the clock did not go back
    phoenix_serve.stop(process)

    # What the next start rebuilds, read from the store the server wrote: the engagement is in
    # the viewer's history and on the post's counts; the world was imported once.
    store = SqliteStore(tmp_path / "data" / "state.sqlite")
    try:
        state = load_state(*store.load())
    finally:
        store.close()
    assert len(state.viewers) == load_world(world).users.num_rows
    history = state.viewers.get(viewer).history  # type: ignore[union-attr]
    assert history.post_ids[0] == post["post_id"]
    assert history.actions[0].tolist() == [a == "favorite" for a in ACTIONS]
    assert state.posts.counts(post["post_id"]).tolist() == [1, 0, 0, 0, 1]  # a favorite, a view
    assert state.posts.counts(hidden["post_id"]).tolist() == [0, 1, 0, 0, 0]  # the reply
    assert state.posts.is_deleted(gone["post_id"])


def test_an_empty_data_directory_without_a_world_starts_with_no_users(
    tmp_path: Path, phoenix_serve: ServeProcess
) -> None:
    process, url = phoenix_serve.start("--data", str(tmp_path / "data"), "--insecure")
    with httpx.Client(base_url=url, timeout=30.0) as http:
        refused = http.post("/v1/feed", json={"viewer_id": 1})
        assert refused.status_code == 404 and "viewer_id" in refused.json()["detail"]
        refused = http.post("/v1/posts", json={"author_id": 1, "text": "hello"})
        assert refused.status_code == 404 and "author_id" in refused.json()["detail"]
    out = phoenix_serve.stop(process)
    assert "no users yet" in out
    assert (tmp_path / "data" / "state.sqlite").is_file()
