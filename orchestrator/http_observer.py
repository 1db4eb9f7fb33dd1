"""An ASGI middleware that refuses oversized bodies and records every request's route, status and
latency in Prometheus.

The body limit holds for the bytes that arrive, not for what Content-Length claims: the body is
read here, chunk by chunk (chunked transfer encoding has no Content-Length), and a body that
passes the limit is refused with 413 at once, before the rest is read; the app then gets the
body from memory.

Written against ASGI directly rather than with Starlette's `BaseHTTPMiddleware`, which wraps every
response in a stream and cost about 12% of the orchestrator's CPU under load."""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.errors import error_json
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
            await self._refuse(scope, receive, send)
            return
        start = time.perf_counter()
        body = await self._read_body(receive)
        if body is None:
            await self._refuse(scope, receive, send)
            return
        receive = _replay(body, receive)
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

    async def _read_body(self, receive: Receive) -> list[Message] | None:
        """The request's body messages, or None once they pass the limit (the rest unread)."""
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":  # the client went away: let the app see it
                return messages
            size += len(message.get("body", b""))
            if size > self.max_body_bytes:
                return None
            if not message.get("more_body", False):
                return messages

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = error_json(413, f"body: larger than {self.max_body_bytes} bytes")
        refusal.headers["Connection"] = "close"
        await refusal(scope, receive, send)
        self._observe(scope, 413, 0.0)

    def _observe(self, scope: dict[str, Any], status: int, seconds: float) -> None:
        # The router records the matched route in the scope it was given.
        path = getattr(scope.get("route"), "path", "unmatched")
        self.metrics.http_requests.labels(path, str(status)).inc()
        self.metrics.http_latency.labels(path).observe(seconds)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A `receive` that returns the body already read, then waits on the client as before."""
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
