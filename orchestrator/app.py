"""The HTTP API (FastAPI): feeds, writes, health, readiness and Prometheus metrics.

Client mistakes are 4xx naming the field, in one error body (orchestrator.errors lists the
statuses); Triton down or slow never is a 5xx on /v1/feed, which degrades instead, but Triton
refusing a request the orchestrator built is a 502 (our bug, reported, never hidden).

Every route but the operational ones (/healthz, /readyz, /metrics) takes a bearer token
(orchestrator.auth): a user's token reads only that user's feed and writes only as that user.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
from fastapi import Depends, FastAPI, Path, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from orchestrator.auth import Authenticator, Principal, principal_dependency
from orchestrator.body_route import JsonRoute
from orchestrator.errors import error_responses, install_error_handlers
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
from orchestrator.service import FeedService
from orchestrator.state.posts import Post
from orchestrator.writes import NewPost
from phoenix.actions import ACTIONS
from phoenix.errors import NotFound
from phoenix.world.schema import POST_KINDS

log = logging.getLogger(__name__)

#: Seconds an idle keep-alive connection stays open. uvicorn's default (5 s) races with clients
#: that reuse a connection after a pause: a request sent as the server closes fails (HTTP 0).
KEEP_ALIVE_S = 75

#: Largest request body accepted (seen_ids and served_ids of 10,000 ids each fit easily).
MAX_BODY_BYTES = 1 << 20


#: Statuses every authenticated route with a JSON body may answer.
_WRITE_ERRORS = (400, 401, 403, 404, 413, 422)


def create_app(service: FeedService, *, auth: Authenticator) -> FastAPI:
    """The app around a service; the service starts and stops with the app. `auth` decides who may
    call it (`Authenticator(None)`: everyone)."""

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
    app.router.route_class = JsonRoute
    metrics = service.metrics
    install_error_handlers(app)
    app.add_middleware(RequestObserver, metrics=metrics, max_body_bytes=MAX_BODY_BYTES)
    authenticated = Depends(principal_dependency(auth))

    @app.post(
        "/v1/feed",
        response_model=FeedResponse,
        tags=["feed"],
        responses=error_responses(*_WRITE_ERRORS, 502),
    )
    async def feed(body: FeedRequest, caller: Principal = authenticated) -> FeedResponse:
        """The viewer's For You feed: ranked in- and out-of-network posts. A user's token reads
        only that user's feed (a feed is private: it shows what the viewer follows and likes)."""
        caller.act_as("viewer_id", body.viewer_id)
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
                    predictions={} if c.predictions is None else _rounded(c.predictions),
                    explanation=explained.get(c.post_id),
                )
                for c in result.posts
            ],
            degraded=result.degraded,
            degraded_reason=result.degraded_reason,
            timings_ms=result.timings_ms,
            candidates=result.candidates,
            model_versions=result.model_versions,
            explain=_feed_explain(service, result, body) if body.explain else None,
        )

    @app.post(
        "/v1/posts",
        response_model=PostResponse,
        status_code=201,
        tags=["posts"],
        responses=error_responses(*_WRITE_ERRORS, 409, 502),
    )
    async def create_post(
        body: CreatePostRequest, caller: Principal = authenticated
    ) -> PostResponse:
        """Create a post; it streams into Thunder and the retrieval index at once."""
        caller.act_as("author_id", body.author_id)
        post = await service.writes.create_post(NewPost(**body.model_dump()))
        return _post_response(post)

    @app.delete(
        "/v1/posts/{post_id}",
        response_model=PostResponse,
        tags=["posts"],
        responses=error_responses(401, 403, 404, 422),
    )
    async def delete_post(
        post_id: Annotated[int, Path(gt=0, le=2**63 - 1)], caller: Principal = authenticated
    ) -> PostResponse:
        """Delete a post for good: it never appears in a feed again. A user's token deletes only
        that user's posts."""
        post = service.posts.get(post_id)
        if post is None:
            raise NotFound("post_id", post_id)
        caller.act_as("post_id", post.author_id)
        return _post_response(await service.writes.delete_post(post_id))

    @app.post(
        "/v1/engagements",
        response_model=Changed,
        status_code=201,
        tags=["viewers"],
        responses=error_responses(*_WRITE_ERRORS),
    )
    async def engage(body: EngagementRequest, caller: Principal = authenticated) -> Changed:
        """Append an engagement to the viewer's history (the ranker reads it next request)."""
        caller.act_as("viewer_id", body.viewer_id)
        wanted = set(body.actions)
        await service.writes.engage(
            body.viewer_id,
            body.post_id,
            tuple(a in wanted for a in ACTIONS),
            dwell_s=body.dwell_time_s,
            surface=body.surface,
        )
        return Changed(changed=True)

    for relation in ("follow", "block", "mute"):
        _relation_routes(app, service, relation, authenticated)

    @app.post(
        "/v1/muted_keywords",
        response_model=Changed,
        tags=["viewers"],
        responses=error_responses(*_WRITE_ERRORS),
    )
    async def add_keyword(body: MutedKeywordRequest, caller: Principal = authenticated) -> Changed:
        """Mute a word or phrase (case-insensitive, whole words)."""
        caller.act_as("viewer_id", body.viewer_id)
        return Changed(changed=await service.writes.muted_keyword(body.viewer_id, body.keyword))

    @app.delete(
        "/v1/muted_keywords",
        response_model=Changed,
        tags=["viewers"],
        responses=error_responses(*_WRITE_ERRORS),
    )
    async def remove_keyword(
        body: MutedKeywordRequest, caller: Principal = authenticated
    ) -> Changed:
        caller.act_as("viewer_id", body.viewer_id)
        return Changed(
            changed=await service.writes.muted_keyword(body.viewer_id, body.keyword, remove=True)
        )

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["operations"],
        responses={503: {"description": "Triton does not answer or the post index is not built"}},
    )
    async def readyz() -> JSONResponse:
        """Ready only when Triton answers and the post index is built."""
        checks = await service.ready()
        ready = all(checks.values())
        return JSONResponse({"ready": ready, **checks}, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
    async def prometheus() -> Response:
        """Prometheus text exposition."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _relation_routes(app: FastAPI, service: FeedService, relation: str, authenticated: Any) -> None:
    """POST /v1/{relation}s creates the relation, DELETE removes it (as the viewer only)."""
    path = f"/v1/{relation}s"

    async def create(body: RelationRequest, caller: Principal = authenticated) -> Changed:  # type: ignore[valid-type]
        caller.act_as("viewer_id", body.viewer_id)
        return Changed(
            changed=await service.writes.relate(relation, body.viewer_id, body.target_id)
        )

    async def remove(body: RelationRequest, caller: Principal = authenticated) -> Changed:  # type: ignore[valid-type]
        caller.act_as("viewer_id", body.viewer_id)
        changed = await service.writes.relate(relation, body.viewer_id, body.target_id, undo=True)
        return Changed(changed=changed)

    responses = error_responses(*_WRITE_ERRORS, 409)
    app.post(
        path, response_model=Changed, tags=["viewers"], summary=f"{relation} an account",
        responses=responses,
    )(create)  # fmt: skip
    app.delete(
        path, response_model=Changed, tags=["viewers"], summary=f"un{relation}",
        responses=responses,
    )(remove)  # fmt: skip


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


def _rounded(predictions: npt.NDArray[np.floating]) -> dict[str, float]:
    """Action -> probability to 6 decimals (rounded in one NumPy call: a feed has 35 x 19)."""
    values = np.round(np.asarray(predictions, np.float64), 6).tolist()
    return dict(zip(ACTIONS, values, strict=True))
