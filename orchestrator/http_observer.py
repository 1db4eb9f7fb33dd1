"""An ASGI middleware that refuses oversized bodies and records every request's route, status and
latency in Prometheus.

Written against ASGI directly rather than with Starlette's `BaseHTTPMiddleware`, which wraps every
response in a stream and cost about 12% of the orchestrator's CPU under load."""

from __future__ import annotations

import time
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.metrics import Metrics


class RequestObserver:
    def __init__(self, app: ASGIApp, metrics: Metrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            refusal = JSONResponse(
                {"detail": f"body: larger than {self.max_body_bytes} bytes"}, status_code=413
            )
            await refusal(scope, receive, send)
            self._observe(scope, 413, 0.0)
            return
        start = time.perf_counter()
        status = 500  # if the app fails before starting a response

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self._observe(scope, status, time.perf_counter() - start)

    def _observe(self, scope: dict[str, Any], status: int, seconds: float) -> None:
        # The router records the matched route in the scope it was given.
        path = getattr(scope.get("route"), "path", "unmatched")
        self.metrics.http_requests.labels(path, str(status)).inc()
        self.metrics.http_latency.labels(path).observe(seconds)
