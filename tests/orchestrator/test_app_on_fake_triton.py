"""The HTTP layer over a service built by the composition root with a fake Triton client: ranked
feeds with the set's versions, a write as the service reaching a follower's feed, a user token
refused for someone else's write, and Triton going away (degraded, never a 5xx)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx

from orchestrator.app import create_app
from orchestrator.auth import Authenticator
from orchestrator.service import FeedService
from phoenix.actions import ACTIONS
from tests.fakes.triton import FakeServer
from tests.fakes.viewers import follower_and_author

SERVICE = {"Authorization": "Bearer service-token-0123456789"}


Calls = Callable[[httpx.AsyncClient], Awaitable[None]]


def serve(service: FeedService, calls: Calls) -> None:
    """Run `calls` against the app over ASGI, inside its lifespan (which starts the service)."""
    viewer, _ = follower_and_author(service)
    tokens = {"service-token-0123456789": "service", "viewer-token-0123456789": viewer}
    app = create_app(service, auth=Authenticator(tokens))

    async def run() -> None:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
                await calls(http)

    asyncio.run(run())


def test_feeds_are_ranked_on_the_fake_set_and_writes_reach_followers(
    service: FeedService, server: FakeServer
) -> None:
    viewer, author = follower_and_author(service)

    async def calls(http: httpx.AsyncClient) -> None:
        assert (await http.get("/readyz")).status_code == 200
        feed = (await http.post("/v1/feed", json={"viewer_id": viewer}, headers=SERVICE)).json()
        assert not feed["degraded"]
        assert feed["model_versions"]["phoenix_ranker"] == "1"
        scores = [p["score"] for p in feed["posts"]]
        assert scores and scores == sorted(scores, reverse=True)
        for post in feed["posts"]:
            assert list(post["predictions"]) == list(ACTIONS)  # every action, in X's order
            values = post["predictions"].values()
            assert all(0 < v < 1 and v == round(v, 6) for v in values)  # 6 decimals
        assert any(r.model == "phoenix_ranker" for r in server.requests)

        body = {"author_id": author, "text": "hi"}
        created = await http.post("/v1/posts", json=body, headers=SERVICE)
        assert created.status_code == 201
        post_id = created.json()["post_id"]
        body = {"viewer_id": viewer, "limit": 200}
        feed = (await http.post("/v1/feed", json=body, headers=SERVICE)).json()
        assert post_id in [p["post_id"] for p in feed["posts"]]

    serve(service, calls)


def test_a_user_token_writes_only_as_its_user(service: FeedService) -> None:
    viewer, author = follower_and_author(service)
    mine = {"Authorization": "Bearer viewer-token-0123456789"}

    async def calls(http: httpx.AsyncClient) -> None:
        feed = await http.post("/v1/feed", json={"viewer_id": viewer}, headers=mine)
        assert feed.status_code == 200
        refused = await http.post("/v1/posts", json={"author_id": author}, headers=mine)
        assert refused.status_code == 403
        assert (await http.post("/v1/posts", json={"author_id": author})).status_code == 401

    serve(service, calls)


def test_triton_down_degrades_feeds_without_a_5xx(service: FeedService, server: FakeServer) -> None:
    viewer, _ = follower_and_author(service)

    async def calls(http: httpx.AsyncClient) -> None:
        server.down = True
        answer = await http.post("/v1/feed", json={"viewer_id": viewer}, headers=SERVICE)
        assert answer.status_code == 200
        body = answer.json()
        assert body["degraded"] and body["posts"]
        assert all(not p["predictions"] for p in body["posts"])

    serve(service, calls)
