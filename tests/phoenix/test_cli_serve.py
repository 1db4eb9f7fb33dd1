"""`phoenix serve` refuses bad options with the option named, before binding anything."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from phoenix.cli import main
from phoenix.triton.server import free_port

if TYPE_CHECKING:
    from conftest import ServeProcess  # tests/conftest.py: the phoenix_serve fixture's type


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--port", "70000"], "--port"),
        (["--triton-timeout", "0"], "--triton-timeout"),
        (["--retrieval-k", "0"], "--retrieval-k"),
        (["--ranking-config", "/nonexistent.json"], "ranking config not found"),
        (["--redis", "http://127.0.0.1:6379"], "--redis"),
    ],
)
def test_bad_options_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list[str], message: str
) -> None:
    assert (
        main(["serve", "--data", str(tmp_path / "data"), "--world", str(tmp_path), *options]) == 2
    )
    assert message in capsys.readouterr().err


def test_a_missing_world_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    assert (
        main(["serve", "--data", str(data), "--world", str(tmp_path / "nowhere"), "--insecure"])
        == 2
    )
    assert "world directory not found" in capsys.readouterr().err


# ------------------------------------------------------------------ tokens, as a real process

SERVICE_TOKEN = "a-service-token-for-the-cli-test"
USER_TOKEN = "a-user-token-for-the-cli-test"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from phoenix.world.generate import generate_world
    from phoenix.world.spec import WorldSpec

    out = tmp_path_factory.mktemp("world") / "w"
    return generate_world(WorldSpec(seed=3, num_users=40, num_authors=8), out, progress=False)


def _two_users(world: Path) -> tuple[int, int]:
    from phoenix.world.io import load_world

    ids = load_world(world).users.column("user_id").to_pylist()
    return int(ids[0]), int(ids[1])


def test_token_file_service_and_user_tokens(
    world: Path, tmp_path: Path, phoenix_serve: ServeProcess
) -> None:
    me, other = _two_users(world)
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({SERVICE_TOKEN: "service", USER_TOKEN: me}))
    process, url = phoenix_serve.start(
        "--data", str(tmp_path / "data"), "--world", str(world), "--token-file", str(tokens)
    )
    try:
        follow = {"viewer_id": me, "target_id": other}
        assert httpx.post(f"{url}/v1/follows", json=follow).status_code == 401
        wrong = {"Authorization": "Bearer not-one-of-the-tokens-in-the-file"}
        assert httpx.post(f"{url}/v1/follows", json=follow, headers=wrong).status_code == 401
        user = {"Authorization": f"Bearer {USER_TOKEN}"}
        as_other = {"viewer_id": other, "target_id": me}
        refused = httpx.post(f"{url}/v1/follows", json=as_other, headers=user)
        assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
        assert httpx.post(f"{url}/v1/follows", json=follow, headers=user).status_code == 200
        service = {"Authorization": f"Bearer {SERVICE_TOKEN}"}
        assert httpx.post(f"{url}/v1/follows", json=as_other, headers=service).status_code == 200
        feed = httpx.post(f"{url}/v1/feed", json={"viewer_id": me}, headers=user)
        assert feed.status_code == 200 and feed.json()["degraded"]
    finally:
        phoenix_serve.stop(process)


def test_insecure_runs_without_tokens_and_says_so(
    world: Path, tmp_path: Path, phoenix_serve: ServeProcess
) -> None:
    me, other = _two_users(world)
    process, url = phoenix_serve.start(
        "--data", str(tmp_path / "data"), "--world", str(world), "--insecure"
    )
    try:
        follow = {"viewer_id": me, "target_id": other}
        assert httpx.post(f"{url}/v1/follows", json=follow).status_code == 200
    finally:
        out = phoenix_serve.stop(process)
    assert "authentication is OFF" in out


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        (None, "no API tokens"),
        ({"short": "service"}, "at least 16 characters"),
        ({"a-long-enough-token": "admin"}, "token file"),
        ("not json", "token file"),
    ],
)
def test_missing_or_bad_tokens_stop_serve_before_it_listens(
    world: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tokens: object,
    message: str,
) -> None:
    for name in ("PHOENIX_TOKENS", "PHOENIX_TOKEN_FILE", "PHOENIX_INSECURE"):
        monkeypatch.delenv(name, raising=False)
    options = []
    if tokens is not None:
        file = tmp_path / "tokens.json"
        file.write_text(tokens if isinstance(tokens, str) else json.dumps(tokens))
        options = ["--token-file", str(file)]
    data = ["--data", str(tmp_path / "data"), "--world", str(world)]
    assert main(["serve", *data, "--port", str(free_port()), *options]) == 2
    assert message in capsys.readouterr().err


def test_an_unreachable_redis_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    assert main(["serve", "--data", str(tmp_path / "data"), "--redis", url, "--insecure"]) != 0
    assert f"--redis {url}" in capsys.readouterr().err
