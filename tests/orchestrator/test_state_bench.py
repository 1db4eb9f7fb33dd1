"""`orchestrator.benchmarks.state`: the synthetic dataset's shape, a tiny run through the CLI
(one child process per size) and its refusal of a size too small to mean anything."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from orchestrator.benchmarks.state import NOW_MS, synthetic_dataset
from orchestrator.state.dataset import TABLES
from phoenix.cli import main


def test_the_synthetic_dataset_grows_with_its_posts() -> None:
    dataset = synthetic_dataset(2_000, seed=1)
    for name, table in dataset.tables.items():
        assert table.schema.equals(TABLES[name]), name
    posts = dataset.table("posts")
    assert posts.num_rows == 2_000 and dataset.table("users").num_rows == 200
    users = set(dataset.table("users").column("user_id").to_pylist())
    assert set(posts.column("author_id").to_pylist()) <= users
    follows = dataset.table("follows")
    assert 0.9 * 20 * 200 < follows.num_rows <= 20 * 200
    assert set(follows.column("followee_id").to_pylist()) <= users
    eng = dataset.table("engagements")
    assert eng.num_rows == 3 * 2_000
    assert set(eng.column("post_id").to_pylist()) <= set(posts.column("post_id").to_pylist())
    assert eng.column("served_ms").to_numpy().max() < NOW_MS
    assert 0.25 < np.mean(eng.column("favorite").to_numpy(zero_copy_only=False)) < 0.4


def test_a_tiny_run_prints_a_row_per_size_with_the_growth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "state.json"
    assert main(["bench", "state", "--posts", "200", "400", "--json", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("machine:")
    assert lines[3].startswith("| 200 |") and lines[4].startswith("| 400 |")
    assert lines[4].split("|")[-2].strip().startswith("x2.0 /")
    results = json.loads(out.read_text())["results"]
    assert [r["posts"] for r in results] == [200, 400]
    assert all(r["rebuild_s"] > 0 and r["peak_rss_mb"] > 50 for r in results)


def test_a_size_too_small_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "state", "--posts", "10"]) == 2
    assert "--posts" in capsys.readouterr().err
