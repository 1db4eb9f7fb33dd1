"""Routes whose JSON body is parsed, and for a large body validated, in a worker thread.

A body of up to 1 MiB takes tens of milliseconds to parse and, when it is invalid everywhere
(10,000 bad ids), hundreds to validate; on the event loop that time would hold up every other
request (/healthz included). Bodies over INLINE_BYTES are therefore parsed (`parse_json`) and
checked against the route's body model in a thread; an invalid one is answered from there
(BodyRefused), a valid one goes on to FastAPI, whose own validation of it is then quick.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, TypeAdapter, ValidationError

from orchestrator.errors import BodyRefused
from orchestrator.json_body import parse_json

#: Bodies up to this size are parsed and validated on the event loop (a thread hop costs more
#: than a few kilobytes do).
INLINE_BYTES = 4 * 1024


def _checked(body: bytes, adapter: TypeAdapter[Any] | None) -> Any:
    value = parse_json(body)
    if adapter is not None:
        try:
            adapter.validate_python(value)
        except ValidationError as exc:
            raise BodyRefused.of(exc.errors()) from None
    return value


class _Request(Request):
    adapter: TypeAdapter[Any] | None = None

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            if len(body) <= INLINE_BYTES:
                self._json = parse_json(body)
            else:
                self._json = await anyio.to_thread.run_sync(_checked, body, self.adapter)
        return self._json


def _body_model(endpoint: Callable[..., Any]) -> type[BaseModel] | None:
    """The pydantic model of the endpoint's body parameter, if it has one."""
    hints = typing.get_type_hints(endpoint)
    hints.pop("return", None)
    models = [t for t in hints.values() if isinstance(t, type) and issubclass(t, BaseModel)]
    return models[0] if len(models) == 1 else None


class JsonRoute(APIRoute):
    """A FastAPI route whose large JSON bodies are parsed and validated in a worker thread."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        model = _body_model(self.endpoint)
        adapter = None if model is None else TypeAdapter(model)

        async def route(request: Request) -> Response:
            wrapped = _Request(request.scope, request.receive)
            wrapped.adapter = adapter
            return await handler(wrapped)

        return route
