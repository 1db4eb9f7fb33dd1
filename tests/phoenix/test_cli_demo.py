"""`phoenix demo`'s pieces that do not need the stack: reuse of an export, and the printed feed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from phoenix.cli.demo import _served_from, _target, _target_options
from phoenix.cli.demo_report import WorldFacts, format_feed
from phoenix.serving import MODEL_CONFIG_PARAMETER, RANKER


def _checkpoint(tmp_path: Path, weights: bytes) -> Path:
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir(exist_ok=True)
    (checkpoint / "model.safetensors").write_bytes(weights)
    return checkpoint


def _version(
    repository: Path, version: int, sha: str, *, parameters: bool = True, target: str = "cpu"
) -> None:
    model = repository / RANKER
    (model / str(version)).mkdir(parents=True)
    (model / "config.pbtxt").write_text(
        f'parameters {{ key: "{MODEL_CONFIG_PARAMETER}" }}' if parameters else ""
    )
    provenance = {"checkpoint_sha256": sha, "target": target}
    (model / str(version) / "provenance.json").write_text(json.dumps(provenance))


def test_an_export_is_reused_only_when_its_latest_version_came_from_the_checkpoint(
    tmp_path: Path,
) -> None:
    import hashlib

    checkpoint = _checkpoint(tmp_path, b"weights")
    sha = hashlib.sha256(b"weights").hexdigest()
    repository = tmp_path / "repo"
    assert not _served_from(repository, checkpoint, "cpu")  # nothing exported yet
    _version(repository, 1, sha)
    assert _served_from(repository, checkpoint, "cpu")
    _version(repository, 2, "other")  # a later export from other weights is what Triton serves
    assert not _served_from(repository, checkpoint, "cpu")


def test_an_export_for_another_target_is_redone(tmp_path: Path) -> None:
    """On a GPU host the demo serves the pytorch target; a cpu export there is not reused."""
    import hashlib

    checkpoint = _checkpoint(tmp_path, b"w")
    repository = tmp_path / "repo"
    _version(repository, 1, hashlib.sha256(b"w").hexdigest(), target="cpu")
    assert _served_from(repository, checkpoint, "cpu")
    assert not _served_from(repository, checkpoint, "pytorch")


def test_auto_target_follows_the_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    assert _target("cpu") == "cpu" and _target("pytorch") == "pytorch"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert _target("auto") == "pytorch"
    assert _target_options("pytorch") == ["--target", "pytorch", "--precision", "bf16"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _target("auto") == "cpu"
    # bf16 is for the GPU: the pytorch target on a CPU computes in fp32.
    assert _target_options("pytorch") == ["--target", "pytorch", "--precision", "fp32"]
    assert _target_options("cpu") == ["--target", "cpu"]


def test_an_export_without_the_served_parameters_is_redone(tmp_path: Path) -> None:
    import hashlib

    checkpoint = _checkpoint(tmp_path, b"w")
    repository = tmp_path / "repo"
    _version(repository, 1, hashlib.sha256(b"w").hexdigest(), parameters=False)
    assert not _served_from(repository, checkpoint, "cpu")


def test_the_feed_table_marks_posts_on_the_viewers_favourite_topics() -> None:
    facts = WorldFacts(
        topics=["football", "music", "ai", "cooking"],
        taste={7: np.array([0.1, 0.6, 0.25, 0.05])},
        post_topic={1: 1, 2: 3, 3: 2, 4: 3},
    )
    feed = {
        "posts": [
            {"post_id": 1, "author_id": 9, "source": "thunder", "score": 2.0, "in_network": True,
             "predictions": {"favorite": 0.9, "reply": 0.1, "repost": 0.3, "click": 0.2}},
            {"post_id": 2, "author_id": 8, "source": "phoenix_retrieval", "score": 1.0,
             "in_network": False, "predictions": {}},
        ],
        "degraded": False,
        "timings_ms": {"total": 12.0},
    }  # fmt: skip
    text = format_feed(facts, 7, feed)
    assert "hidden taste music 0.60, ai 0.25, football 0.10" in text
    lines = text.splitlines()
    assert "*music" in lines[2] and "favorite 0.90, repost 0.30, click 0.20" in lines[2]
    assert " cooking" in lines[3] and "*cooking" not in lines[3]
    # one of the two posts is on a favourite topic; those topics hold 2 of the 4 posts
    assert "1/2 posts on the viewer's top-3 topics (*), against 50% of all posts" in lines[-1]
