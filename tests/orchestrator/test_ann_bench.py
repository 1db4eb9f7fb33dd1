"""`phoenix bench ann` on a tiny corpus: rows, table, JSON and the command line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from orchestrator.benchmarks.ann import (
    TopicMixture,
    add_parser,
    bench_ann,
    format_table,
    recall_at_k,
    run_ann,
)
from orchestrator.retrieval import faiss_available
from phoenix.errors import ConfigError

needs_faiss = pytest.mark.skipif(not faiss_available(), reason="faiss is not installed")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="phoenix bench")
    add_parser(root.add_subparsers(dest="benchmark", required=True))
    return root


def test_synthetic_embeddings_are_unit_norm_and_clustered() -> None:
    mixture = TopicMixture.random(16, topics=20, seed=1)
    x = mixture.sample(500, np.random.default_rng(0))
    assert x.shape == (500, 16) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    nearest_topic = (x @ mixture.centers.T).max(axis=1)
    assert nearest_topic.mean() > 0.6  # near a topic, not uniform on the sphere


def test_recall_ignores_padding() -> None:
    truth = np.array([[1, 2, 0], [3, 4, 5]])
    found = np.array([[2, 9, 0], [5, 4, 3]])
    assert recall_at_k(found, truth) == pytest.approx((1 + 3) / 5)


@needs_faiss
def test_bench_rows_and_table_on_a_tiny_corpus() -> None:
    rows = bench_ann(
        [3000],
        ["faiss"],
        dim=16,
        queries=40,
        k=10,
        batches=(1, 8),
        min_time_s=0.0,
        topics=30,
        index_options={"faiss": {"min_train": 1000}},  # IVF, not its exact fallback
        progress=False,
    )
    assert [r.backend for r in rows] == ["exact", "faiss"]
    exact, faiss = rows
    assert exact.recall == 1.0 and exact.index == "exact"
    assert faiss.index.startswith("IVF-Flat")
    for row in rows:
        assert 0.0 <= row.recall <= 1.0
        assert row.posts == 3000 and row.k == 10 and row.build_s >= 0
        assert [t.batch for t in row.timings] == [1, 8]
        assert all(t.qps > 0 and 0 < t.p50_ms <= t.p90_ms and t.calls >= 5 for t in row.timings)
    assert exact.speedups == (1.0, 1.0)
    assert faiss.speedups[0] == pytest.approx(faiss.timings[0].qps / exact.timings[0].qps)

    lines = format_table(rows).splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == [
        "posts",
        "backend",
        "index",
        "build s",
        "recall@10",
        "q/s (batch 1)",
        "speed-up (batch 1)",
        "q/s (batch 8)",
        "speed-up (batch 8)",
    ]
    assert len(lines) == 2 + len(rows)
    assert all(line.count("|") == len(header) + 1 for line in lines)


def test_parser_accepts_every_option() -> None:
    args = parser().parse_args(
        [
            *("ann", "--posts", "1000", "2000", "--dim", "32", "--queries", "50", "--k", "10"),
            *("--batch", "1", "4", "--backend", "exact", "--device", "cpu", "--min-time", "0.5"),
            *("--seed", "3", "--json", "out.json", "--no-progress"),
        ]
    )
    assert args.handler is run_ann
    assert args.posts == [1000, 2000] and args.dim == 32 and args.queries == 50 and args.k == 10
    assert args.batch == [1, 4] and args.backend == ["exact"] and args.device == "cpu"
    assert args.min_time == 0.5 and args.seed == 3 and args.json == Path("out.json")
    assert args.no_progress
    defaults = parser().parse_args(["ann"])
    assert defaults.posts == [100_000, 1_000_000] and defaults.k == 100 and defaults.dim == 128
    assert defaults.backend is None and defaults.device == "cpu" and defaults.batch == [1, 64]


def test_parser_refuses_an_unknown_backend(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["ann", "--backend", "annoy"])
    assert "invalid choice" in capsys.readouterr().err


def test_handler_runs_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ann.json"
    args = parser().parse_args(
        f"ann --posts 500 --dim 8 --queries 10 --k 5 --batch 1 2 --backend exact "
        f"--min-time 0 --no-progress --json {out}".split()
    )
    assert args.handler(args) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("machine: ") and "| exact |" in printed
    saved = json.loads(out.read_text())
    assert saved["machine"]["nproc"] >= 1 and saved["settings"]["k"] == 5
    assert [r["backend"] for r in saved["rows"]] == ["exact"]
    assert [t["batch"] for t in saved["rows"][0]["timings"]] == [1, 2]
    assert all(t["qps"] > 0 for t in saved["rows"][0]["timings"])


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        ("ann --posts 0", "--posts"),
        ("ann --k 0", "--k"),
        ("ann --queries 10 --batch 64", "--queries"),
        ("ann --min-time -1", "--min-time"),
    ],
)
def test_handler_refuses_bad_values_naming_the_option(argv: str, option: str) -> None:
    args = parser().parse_args([*argv.split(), "--backend", "exact"])
    with pytest.raises(ConfigError, match=f"^{option}: "):
        args.handler(args)


def test_cuda_without_cuvs_is_refused_clearly() -> None:
    from orchestrator.retrieval import cuvs_available

    if cuvs_available():
        pytest.skip("cuvs is usable here")
    for argv in (["ann", "--device", "cuda"], ["ann", "--backend", "cuvs"]):
        args = parser().parse_args(argv)
        with pytest.raises(ConfigError, match=r"^--(device|backend): .*cuvs"):
            args.handler(args)


def test_gpu_backends_need_device_cuda() -> None:
    """torch, like cuvs, is a GPU backend: asked for on the CPU it is refused, naming the fix."""
    from orchestrator.benchmarks.ann import _backends_for

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["ann", "--backend", "torch"])
    with pytest.raises(ConfigError, match=r"^--backend: torch runs on a GPU; pass --device cuda"):
        _backends_for(args)
    cpu = _backends_for(parser.parse_args(["ann"]))
    assert "torch" not in cpu and "cuvs" not in cpu and cpu[0] == "exact"
