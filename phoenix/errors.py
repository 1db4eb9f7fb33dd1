"""The project's error hierarchy. Every entry point raises one of these with a message that names
the offending field, so callers can map them to CLI messages or HTTP statuses in one place.

    PhoenixError
    ├── ConfigError       a configuration value is missing, malformed or inconsistent
    ├── InputError        a tensor or request does not match what the model expects
    ├── CheckpointError   a checkpoint directory is missing, malformed or does not fit its config
    │   └── CheckpointImportError   a checkpoint written by X's trainer cannot be read or verified
    ├── WorldError        a synthetic-world directory is missing or malformed
    ├── ExportError       a model cannot be exported, or its exported graph disagrees with PyTorch
    ├── ServingError      the Triton server or a served model cannot start or answer
    │   ├── TritonUnavailable  Triton did not answer, or too late (the orchestrator degrades)
    │   ├── TritonRefused      Triton refused a request the orchestrator built (our bug: HTTP 502)
    │   └── ReplicationError   the log shared by replicas (Redis) cannot be written or read (503)
    └── RequestError      an HTTP client's request cannot be served as asked (a 4xx)
        ├── Unauthenticated   no bearer token, or one the service does not know (401)
        ├── Forbidden         the token may not act for the user the request names (403)
        ├── NotFound          an id the request names does not exist (404)
        └── Conflict          well formed, but inconsistent with the stored state (409)

orchestrator/errors.py maps each to its HTTP status and the one error body of the API.
"""

from __future__ import annotations


class PhoenixError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(PhoenixError, ValueError):
    """A configuration value is missing, malformed or inconsistent."""


class InputError(PhoenixError, ValueError):
    """A model input has the wrong shape, dtype or value range."""


class CheckpointError(PhoenixError):
    """A checkpoint cannot be read or does not match its configuration."""


class CheckpointImportError(CheckpointError):
    """A checkpoint written by X's own trainer is missing, unreadable or fails its checksums."""


class WorldError(PhoenixError):
    """A synthetic-world directory cannot be read or written."""


class ExportError(PhoenixError):
    """A model cannot be exported, or the exported graph does not match PyTorch or its contract."""


class ServingError(PhoenixError):
    """The Triton server or a served model cannot start or answer."""


class TritonUnavailable(ServingError):
    """Triton did not answer, answered too late, or is known to be down (circuit open)."""


class TritonRefused(ServingError):
    """Triton answered INVALID_ARGUMENT to a request the orchestrator built: a contract bug between
    the orchestrator and the served models, never the HTTP client's mistake."""


class ReplicationError(ServingError):
    """The log replicas share (a Redis Stream) cannot be reached, holds an entry this replica
    cannot read, or a write in it was not applied here in time: the write is not acknowledged."""


class RequestError(PhoenixError):
    """An HTTP client's request cannot be served as asked; `field` names what is wrong."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class Unauthenticated(RequestError):
    """No bearer token, a malformed one, or one the service does not know."""


class Forbidden(RequestError):
    """The token is valid but may not act for the user the request names."""


class NotFound(RequestError, LookupError):
    """An id the request names does not exist."""

    def __init__(self, what: str, value: int) -> None:
        super().__init__(f"{what} {value} not found", field=what)
        self.what = what


class Conflict(RequestError, ValueError):
    """A request that is well formed but inconsistent with the stored state."""
