"""Who may call the API: bearer tokens, each either a service token (a trusted front end that acts
for any user) or bound to one user id (it reads that user's feed and writes only as that user).

Tokens come from the environment or a file, never from the repository: `PHOENIX_TOKENS` (a JSON
object) and `PHOENIX_TOKEN_FILE` / `phoenix serve --token-file FILE` (a JSON file with the same
object), e.g. `{"3f9c...": "service", "a71e...": 42}`. Without any token the service refuses to
start unless it is told to run without authentication (`--insecure`, `PHOENIX_INSECURE=1`), which
it logs as a warning. Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import Field, TypeAdapter, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from phoenix.errors import ConfigError, Forbidden, Unauthenticated

log = logging.getLogger(__name__)

SERVICE = "service"
#: Shortest token accepted: a guessable token is no authentication.
MIN_TOKEN_CHARS = 16

UserId = Annotated[int, Field(gt=0, le=2**63 - 1)]
TokenOwner = Literal["service"] | UserId
_TOKENS = TypeAdapter(dict[Annotated[str, Field(min_length=MIN_TOKEN_CHARS)], TokenOwner])


class AuthSettings(BaseSettings):
    """Where tokens come from (environment variables PHOENIX_TOKENS, PHOENIX_TOKEN_FILE and
    PHOENIX_INSECURE; the CLI's --token-file and --insecure override the last two)."""

    model_config = SettingsConfigDict(env_prefix="PHOENIX_", frozen=True, extra="ignore")

    tokens: dict[str, TokenOwner] = Field(default_factory=dict, description="token -> owner")
    token_file: Path | None = Field(default=None, description="JSON file: token -> owner")
    insecure: bool = Field(default=False, description="no authentication at all")


@dataclass(frozen=True)
class Principal:
    """The caller a token names: a service (user_id None) or one user."""

    user_id: int | None

    @property
    def is_service(self) -> bool:
        return self.user_id is None

    def act_as(self, field: str, user_id: int) -> None:
        """Forbidden unless this caller may act for `user_id` (named by the request's `field`)."""
        if self.user_id is not None and self.user_id != user_id:
            raise Forbidden(
                f"{field}: this token acts for user {self.user_id} only, not {user_id}", field
            )


ANYONE = Principal(user_id=None)


def read_token_file(path: Path) -> dict[str, TokenOwner]:
    """The {token: "service" | user id} object of a token file; ConfigError naming what is wrong."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"token file {path}: {exc}") from exc
    return _validated(data, f"token file {path}")


def _validated(data: object, where: str) -> dict[str, TokenOwner]:
    try:
        return _TOKENS.validate_python(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][:1]) or 'the object'}: {e['msg']}"
            for e in exc.errors()[:5]
        )
        raise ConfigError(
            f"{where} must map tokens of at least {MIN_TOKEN_CHARS} characters to "
            f'"{SERVICE}" or a user id: {problems}'
        ) from exc


class Authenticator:
    """Tokens -> principals. `Authenticator(None)` authenticates nobody and lets everyone in."""

    def __init__(self, tokens: Mapping[str, TokenOwner] | None) -> None:
        if tokens is not None:
            tokens = _validated(dict(tokens), "tokens")
        self._tokens = (
            None
            if tokens is None
            else [
                (t.encode(), ANYONE if o == SERVICE else Principal(int(o)))
                for t, o in tokens.items()
            ]
        )

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> Authenticator:
        if settings.insecure:
            log.warning(
                "authentication is OFF (--insecure): anyone who reaches this port reads any feed "
                "and writes as any user"
            )
            return cls(None)
        tokens = dict(settings.tokens)
        if settings.token_file is not None:
            tokens.update(read_token_file(settings.token_file))
        if not tokens:
            raise ConfigError(
                "no API tokens: give --token-file FILE (or PHOENIX_TOKENS / PHOENIX_TOKEN_FILE), "
                "or run without authentication with --insecure"
            )
        return cls(tokens)

    @property
    def insecure(self) -> bool:
        return self._tokens is None

    def authenticate(self, token: str | None) -> Principal:
        if self._tokens is None:
            return ANYONE
        if not token:
            raise Unauthenticated(
                "missing bearer token: send the header 'Authorization: Bearer <token>'",
                "Authorization",
            )
        given = token.encode("utf-8", "backslashreplace")
        found: Principal | None = None
        for known, principal in self._tokens:  # every token, in constant time each
            if hmac.compare_digest(known, given):
                found = principal
        if found is None:
            raise Unauthenticated("unknown bearer token", "Authorization")
        return found


_bearer = HTTPBearer(
    auto_error=False,
    description="a service token, or a token bound to one user (it acts as that user only)",
)


def principal_dependency(authenticator: Authenticator):  # type: ignore[no-untyped-def]
    """A FastAPI dependency that authenticates the request's bearer token."""

    async def principal(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        return authenticator.authenticate(None if credentials is None else credentials.credentials)

    return principal


def new_token() -> str:
    """A fresh random token (for stacks that make their own: phoenix demo, the load test)."""
    import secrets

    return secrets.token_urlsafe(24)
