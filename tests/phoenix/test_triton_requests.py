"""Requests and the served config as every client of Triton builds and reads them
(`phoenix.triton.requests`), without a server."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from phoenix.errors import ServingError
from phoenix.triton.check import CHECK_CANDIDATES
from phoenix.triton.requests import latest_io, request_from_io

IO = {
    "inputs": [
        {"name": "user_hash", "dtype": "int64", "shape": [2], "rows": [65, 99]},
        {"name": "history_actions", "dtype": "float32", "shape": [5, 3], "binary": True},
        {"name": "history_surface", "dtype": "int64", "shape": [5], "below": 4},
        {"name": "candidate_post_hash", "dtype": "int64", "shape": [-1, 2], "rows": [100, 120]},
    ],
    "outputs": [{"name": "action_log_probs", "dtype": "float32", "shape": [-1, 3]}],
    "max_candidates": 1024,
}


def test_request_from_io_respects_every_declared_range() -> None:
    arrays = request_from_io(IO, np.random.default_rng(0), CHECK_CANDIDATES)
    assert list(arrays) == [spec["name"] for spec in IO["inputs"]]
    assert arrays["user_hash"].shape == (1, 2) and arrays["user_hash"].dtype == np.int64
    assert arrays["user_hash"].min() >= 65 and arrays["user_hash"].max() <= 99
    assert arrays["candidate_post_hash"].shape == (1, CHECK_CANDIDATES, 2)
    assert arrays["candidate_post_hash"].min() >= 100
    assert arrays["candidate_post_hash"].max() <= 120
    assert set(np.unique(arrays["history_actions"])) <= {0.0, 1.0}
    assert arrays["history_actions"].dtype == np.float32
    assert arrays["history_surface"].max() < 4 and arrays["history_surface"].min() >= 0


def test_request_from_io_stays_under_the_candidate_limit() -> None:
    arrays = request_from_io(
        {**IO, "max_candidates": 3}, np.random.default_rng(0), CHECK_CANDIDATES
    )
    assert arrays["candidate_post_hash"].shape == (1, 3, 2)


def _version(model_dir: Path, version: int, io: dict | None) -> None:
    (model_dir / str(version)).mkdir(parents=True)
    if io is not None:
        (model_dir / str(version) / "io.json").write_text(json.dumps(io))


def test_latest_io_reads_the_newest_exported_version(tmp_path: Path) -> None:
    model_dir = tmp_path / "phoenix_ranker"
    _version(model_dir, 2, IO)
    _version(model_dir, 10, {**IO, "max_candidates": 7})
    _version(model_dir, 11, None)  # e.g. written by hand: skipped
    version, io = latest_io(tmp_path, "phoenix_ranker")
    assert version == "10" and io["max_candidates"] == 7


def test_latest_io_names_the_model_without_an_export(tmp_path: Path) -> None:
    _version(tmp_path / "other", 1, None)
    with pytest.raises(ServingError, match="other: no version"):
        latest_io(tmp_path, "other")
