"""The HTTP API (FastAPI): feeds, writes, health, readiness and Prometheus metrics.

Client mistakes are 4xx naming the field (422 for malformed bodies, 404 for unknown ids, 409 for
requests that contradict the stored state, 413 for oversized bodies); Triton trouble never is a 5xx
on /v1/feed, which degrades instead.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import FastAPI, Path, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from orchestrator.http_observer import RequestObserver
from orchestrator.pipeline.runner import FeedResult
from orchestrator.schemas import (
    Changed,
    CreatePostRequest,
    EngagementRequest,
    FeedExplain,
    FeedPost,
    FeedRequest,
    FeedResponse,
    MutedKeywordRequest,
    PostResponse,
    RelationRequest,
)
from orchestrator.service import Conflict, FeedService, NewPost, NotFound
from orchestrator.state.posts import Post
from phoenix.actions import ACTIONS
from phoenix.world.schema import POST_KINDS

log = logging.getLogger(__name__)

#: Seconds an idle keep-alive connection stays open. uvicorn's default (5 s) races with clients
#: that reuse a connection after a pause: a request sent as the server closes fails (HTTP 0).
KEEP_ALIVE_S = 75

#: Largest request body accepted (seen_ids and served_ids of 10,000 ids each fit easily).
MAX_BODY_BYTES = 1 << 20


def create_app(service: FeedService) -> FastAPI:
    """The app around a service; the service starts and stops with the app."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(
        title="phoenix-triton orchestrator",
        summary="X's For You request path: Thunder + retrieval, filters, Phoenix ranking on Triton",
        version="0.1.0",
        lifespan=lifespan,
    )
    metrics = service.metrics

    app.add_middleware(RequestObserver, metrics=metrics, max_body_bytes=MAX_BODY_BYTES)

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(Conflict)
    async def conflict(request: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.post("/v1/feed", response_model=FeedResponse, tags=["feed"])
    async def feed(body: FeedRequest) -> FeedResponse:
        """The viewer's For You feed: ranked in- and out-of-network posts."""
        result = await service.feed(
            body.viewer_id,
            limit=body.limit,
            seen_ids=frozenset(body.seen_ids),
            served_ids=frozenset(body.served_ids),
            in_network_only=body.in_network_only,
            video_only=body.video_only,
            explain=body.explain,
        )
        explained = result.explanations or {}
        return FeedResponse(
            posts=[
                FeedPost(
                    post_id=c.post_id,
                    author_id=c.author_id,
                    score=c.score,
                    in_network=c.in_network,
                    source=c.source,
                    predictions={}
                    if c.predictions is None
                    else {
                        a: round(float(p), 6) for a, p in zip(ACTIONS, c.predictions, strict=True)
                    },
                    explanation=explained.get(c.post_id),
                )
                for c in result.posts
            ],
            degraded=result.degraded,
            degraded_reason=result.degraded_reason,
            timings_ms=result.timings_ms,
            candidates=result.candidates,
            explain=_feed_explain(service, result, body) if body.explain else None,
        )

    @app.post("/v1/posts", response_model=PostResponse, status_code=201, tags=["posts"])
    async def create_post(body: CreatePostRequest) -> PostResponse:
        """Create a post; it streams into Thunder and the retrieval index at once."""
        post = await service.create_post(NewPost(**body.model_dump()))
        return _post_response(post)

    @app.delete("/v1/posts/{post_id}", response_model=PostResponse, tags=["posts"])
    async def delete_post(post_id: Annotated[int, Path(gt=0)]) -> PostResponse:
        """Delete a post for good: it never appears in a feed again."""
        return _post_response(service.delete_post(post_id))

    @app.post("/v1/engagements", response_model=Changed, status_code=201, tags=["viewers"])
    async def engage(body: EngagementRequest) -> Changed:
        """Append an engagement to the viewer's history (the ranker reads it next request)."""
        wanted = set(body.actions)
        service.engage(body.viewer_id, body.post_id, tuple(a in wanted for a in ACTIONS))
        return Changed(changed=True)

    for relation in ("follow", "block", "mute"):
        _relation_routes(app, service, relation)

    @app.post("/v1/muted_keywords", response_model=Changed, tags=["viewers"])
    async def add_keyword(body: MutedKeywordRequest) -> Changed:
        """Mute a word or phrase (case-insensitive, whole words)."""
        return Changed(changed=service.muted_keyword(body.viewer_id, body.keyword))

    @app.delete("/v1/muted_keywords", response_model=Changed, tags=["viewers"])
    async def remove_keyword(body: MutedKeywordRequest) -> Changed:
        return Changed(changed=service.muted_keyword(body.viewer_id, body.keyword, remove=True))

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    async def readyz() -> JSONResponse:
        """Ready only when Triton answers and the post index is built."""
        checks = await service.ready()
        ready = all(checks.values())
        return JSONResponse({"ready": ready, **checks}, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["operations"])
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _relation_routes(app: FastAPI, service: FeedService, relation: str) -> None:
    """POST /v1/{relation}s creates the relation, DELETE removes it."""
    path = f"/v1/{relation}s"

    async def create(body: RelationRequest) -> Changed:
        return Changed(changed=service.relate(relation, body.viewer_id, body.target_id))

    async def remove(body: RelationRequest) -> Changed:
        return Changed(changed=service.relate(relation, body.viewer_id, body.target_id, undo=True))

    app.post(path, response_model=Changed, tags=["viewers"], summary=f"{relation} an account")(
        create
    )
    app.delete(path, response_model=Changed, tags=["viewers"], summary=f"un{relation}")(remove)


def _feed_explain(service: FeedService, result: FeedResult, body: FeedRequest) -> FeedExplain:
    """The feed-level explanation: what each source gave and each filter removed."""
    ranking = service.settings.ranking
    return FeedExplain(
        sources=result.candidates,
        filters=result.removed,
        removed_ids=result.removed_ids if body.explain_removed_ids else None,
        constants={
            "score_offset": ranking.score_offset,
            "negative_score_scale": ranking.negative_score_scale,
            "positive_weight_sum": ranking.positive_weight_sum,
            "negative_weight_sum": ranking.negative_weight_sum,
            "diversity_floor": ranking.diversity_floor,
            "diversity_decay": ranking.diversity_decay,
        },
    )


def _post_response(post: Post) -> PostResponse:
    return PostResponse(
        post_id=post.post_id,
        author_id=post.author_id,
        kind=POST_KINDS[post.kind],
        created_ms=post.created_ms,
        conversation_id=post.thread_id,
    )
