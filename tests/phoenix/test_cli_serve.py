"""`phoenix serve` refuses bad options with the option named, before binding anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from phoenix.cli import main


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--port", "70000"], "--port"),
        (["--triton-timeout", "0"], "--triton-timeout"),
        (["--retrieval-k", "0"], "--retrieval-k"),
        (["--ranking-config", "/nonexistent.json"], "ranking config not found"),
    ],
)
def test_bad_options_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list[str], message: str
) -> None:
    assert main(["serve", "--world", str(tmp_path), *options]) == 2
    assert message in capsys.readouterr().err


def test_a_missing_world_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--world", str(tmp_path / "nowhere"), "--insecure"]) == 2
    assert "world directory not found" in capsys.readouterr().err
