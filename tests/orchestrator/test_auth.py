"""Tokens from the environment and files, and what each kind of token may do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.auth import Authenticator, AuthSettings
from phoenix.errors import ConfigError, Forbidden, Unauthenticated

SERVICE = "service-token-0123456789"
USER = "user-token-0123456789abc"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PHOENIX_TOKENS", "PHOENIX_TOKEN_FILE", "PHOENIX_INSECURE"):
        monkeypatch.delenv(name, raising=False)


def test_tokens_come_from_the_environment_and_a_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PHOENIX_TOKENS", json.dumps({SERVICE: "service"}))
    file = tmp_path / "tokens.json"
    file.write_text(json.dumps({USER: 7}))
    monkeypatch.setenv("PHOENIX_TOKEN_FILE", str(file))
    auth = Authenticator.from_settings(AuthSettings())
    assert auth.authenticate(SERVICE).is_service
    assert auth.authenticate(USER).user_id == 7
    with pytest.raises(Unauthenticated, match="unknown"):
        auth.authenticate(USER + "x")
    with pytest.raises(Unauthenticated, match="missing"):
        auth.authenticate(None)


def test_a_user_token_acts_only_as_its_user() -> None:
    auth = Authenticator({SERVICE: "service", USER: 7})
    auth.authenticate(USER).act_as("viewer_id", 7)
    with pytest.raises(Forbidden, match="viewer_id: this token acts for user 7 only, not 8"):
        auth.authenticate(USER).act_as("viewer_id", 8)
    auth.authenticate(SERVICE).act_as("viewer_id", 8)


def test_no_tokens_needs_insecure(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="--insecure"):
        Authenticator.from_settings(AuthSettings())
    monkeypatch.setenv("PHOENIX_INSECURE", "1")
    auth = Authenticator.from_settings(AuthSettings())
    assert auth.insecure and auth.authenticate(None).is_service


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        ({"short": "service"}, "at least 16"),
        ({USER: "admin"}, "user id"),
        ({USER: 0}, "user id"),
        ({USER: 2**63}, "user id"),
    ],
)
def test_bad_tokens_are_refused(tokens: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Authenticator(tokens)
