"""The API's one error surface: every error the orchestrator answers with, its HTTP status, and the
one JSON body all of them share (`ErrorResponse`), also for FastAPI's own validation errors.

The statuses (phoenix.errors holds the hierarchy):

    400  the body is not JSON
    401  Unauthenticated: no bearer token, or an unknown one
    403  Forbidden: the token may not act for the user the request names
    404  NotFound: an id the request names does not exist
    409  Conflict: well formed, but contradicts the stored state
    413  the body is larger than the limit (orchestrator.http_observer)
    422  a field is missing, malformed or out of range (NaN, Infinity, numbers beyond float or
         int64 range and lone surrogates included)
    502  TritonRefused: Triton refused a request the orchestrator built (a contract bug between
         the orchestrator and the served models, not the client's mistake; see README)
    503  ReplicationError: a replica's write cannot reach, or come back from, the log the
         replicas share (Redis): not acknowledged, the client may retry

Validation errors never echo the client's input back: it may hold values JSON cannot carry.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from orchestrator.json_body import describe_invalid
from phoenix.errors import (
    Conflict,
    Forbidden,
    NotFound,
    ReplicationError,
    RequestError,
    TritonRefused,
    Unauthenticated,
)

log = logging.getLogger(__name__)

#: HTTP status and error code of each error the service raises on purpose.
STATUS: dict[type[Exception], tuple[int, str]] = {
    Unauthenticated: (401, "unauthenticated"),
    Forbidden: (403, "forbidden"),
    NotFound: (404, "not_found"),
    Conflict: (409, "conflict"),
    TritonRefused: (502, "triton_refused"),
    ReplicationError: (503, "unavailable"),
}

#: Codes of the statuses FastAPI and Starlette answer themselves (unknown routes and methods too).
#: Field errors listed in one answer (a list of 10,000 bad ids is not 10,000 errors long).
MAX_FIELD_ERRORS = 20

_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    422: "invalid",
}


class FieldError(BaseModel):
    field: str = Field(description="the offending field, dotted (`seen_ids.3`), or `body`")
    message: str


class ErrorResponse(BaseModel):
    """The body of every 4xx and 5xx the API answers."""

    error: str = Field(description="a stable code: unauthenticated, forbidden, not_found, ...")
    detail: str = Field(description="what went wrong, for a person")
    fields: list[FieldError] = Field(default_factory=list, description="per field, if any")


_DESCRIPTIONS = {
    400: "the body is not JSON",
    401: "no bearer token, or an unknown one",
    403: "the token may not act for this user",
    404: "an id in the request does not exist",
    409: "the request contradicts the stored state",
    413: "the body is larger than the limit",
    422: "a field is missing, malformed or out of range",
    502: "Triton refused the orchestrator's request (a bug on the server side, not the client's)",
    503: "the replicas' shared log (Redis) is unavailable: the write is not acknowledged",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for an operation that may answer these statuses."""
    return {s: {"model": ErrorResponse, "description": _DESCRIPTIONS[s]} for s in statuses}


def error_body(status: int, detail: str, fields: Iterable[FieldError] = (), code: str = "") -> dict:
    return ErrorResponse(
        error=code or _CODES.get(status, "error"), detail=_printable(detail), fields=list(fields)
    ).model_dump()


def error_json(status: int, detail: str, fields: Iterable[FieldError] = ()) -> JSONResponse:
    return JSONResponse(error_body(status, detail, fields), status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    """Every error, FastAPI's validation errors included, answered with an ErrorResponse."""

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError) -> JSONResponse:
        status, code = _status_of(exc)
        fields = [] if exc.field is None else [FieldError(field=exc.field, message=str(exc))]
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse(
            error_body(status, str(exc), fields, code), status_code=status, headers=headers
        )

    @app.exception_handler(TritonRefused)
    async def triton_refused(request: Request, exc: TritonRefused) -> JSONResponse:
        status, code = STATUS[TritonRefused]
        detail = f"the ranking models refused the orchestrator's request (a server bug): {exc}"
        return JSONResponse(error_body(status, detail, code=code), status_code=status)

    @app.exception_handler(ReplicationError)
    async def unreplicated(request: Request, exc: ReplicationError) -> JSONResponse:
        status, code = STATUS[ReplicationError]
        detail = f"the write is not acknowledged (retry): {exc}"
        return JSONResponse(error_body(status, detail, code=code), status_code=status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        refused = BodyRefused.of(exc.errors())
        return JSONResponse(refused.body, status_code=refused.status_code)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if isinstance(exc, BodyRefused):
            return JSONResponse(exc.body, status_code=exc.status_code)
        return JSONResponse(
            error_body(exc.status_code, str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )


class BodyRefused(HTTPException):
    """A body that failed validation, with its error body already made (in a worker thread, for
    a large body: orchestrator.body_route)."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status, body["detail"])
        self.body = body

    @classmethod
    def of(cls, errors: Sequence[Any]) -> BodyRefused:
        """400 (not JSON) or 422 (fields), listing the first MAX_FIELD_ERRORS errors."""
        fields = [_field_error(e) for e in errors[:MAX_FIELD_ERRORS]]
        if any(e.get("type") == "json_invalid" for e in errors[:MAX_FIELD_ERRORS]):
            return cls(400, error_body(400, "the body is not valid JSON", fields))
        names = ", ".join(dict.fromkeys(f.field for f in fields))
        more = len(errors) - len(fields)
        detail = f"invalid fields: {names}" + (f" and {more} more" if more else "")
        return cls(422, error_body(422, detail, fields))


def _status_of(exc: RequestError) -> tuple[int, str]:
    for kind, status in STATUS.items():
        if isinstance(exc, kind):
            return status
    return 400, "bad_request"


def _field_error(error: dict[str, Any]) -> FieldError:
    if error.get("type") == "json_invalid":
        where = error.get("loc", ("body", "?"))[-1]
        reason = error.get("ctx", {}).get("error", "not JSON")
        return FieldError(field="body", message=_printable(f"{reason} at character {where}"))
    loc = [str(part) for part in error.get("loc", ()) if part not in ("body", "path", "query")]
    field = ".".join(loc) or "body"
    message = describe_invalid(error.get("input")) or str(error.get("msg", "invalid"))
    return FieldError(field=_printable(field), message=_printable(message))


def _printable(text: str) -> str:
    """`text` as valid Unicode: lone surrogates (from a client's JSON) become \\udXXX escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
