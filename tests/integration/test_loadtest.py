"""Locust against the real stack: a short headless run of the feed users against tritonserver plus
the orchestrator, a short run of the Triton users, and the Triton user's request answered with
PyTorch's probabilities."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import tritonclient.http as httpclient
from tiny_export import TinyExport

from export.checkpoint import Checkpoint
from export.onnx.wrappers import RANKER, model_io, wrap
from loadtest.run import LoadTestSettings, run_locust
from loadtest.viewer_mix import ViewerMix
from orchestrator.local_stack import LocalStack
from phoenix.triton.requests import infer, random_ranker_request, served_ranker
from phoenix.world.generate import generate_world
from phoenix.world.io import load_world
from phoenix.world.spec import WorldSpec

pytestmark = pytest.mark.triton


class Deployed:
    def __init__(self, world: Path, repository: Path, checkpoint: Checkpoint) -> None:
        self.world = world
        self.repository = repository
        self.checkpoint = checkpoint


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory, tiny_export: TinyExport) -> Deployed:
    work = tmp_path_factory.mktemp("loadtest")
    world = generate_world(
        WorldSpec(seed=6, num_users=200, num_authors=40), work / "world", progress=False
    )
    return Deployed(world, tiny_export.copy_to(work), tiny_export.weights())


@pytest.fixture(scope="module")
def stack(deployed: Deployed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    data = tmp_path_factory.mktemp("data")
    with LocalStack(deployed.repository, data=data, world=deployed.world) as local:
        yield local


def test_a_short_feed_run_has_no_failures_and_every_request_type(
    deployed: Deployed, stack: LocalStack, tmp_path: Path
) -> None:
    mix = ViewerMix.of(load_world(deployed.world)).write(tmp_path / "mix.json")
    settings = LoadTestSettings(
        target="feed", users=4, spawn_rate=4, duration_s=10, user_rps=2, writes=0.3
    )
    result = run_locust(
        settings, stack.url, tmp_path / "out", mix_file=mix, token=stack.service_token
    )
    summary = result.summary
    assert summary.total.failures == 0, (tmp_path / "out" / "locust_failures.csv").read_text()
    assert set(summary.by_name) == {"/v1/feed", "/v1/posts", "/v1/engagements"}
    assert all(s.requests > 0 for s in summary.by_name.values())
    assert summary.total.requests_per_s > 0 and summary.total.p99_ms >= summary.total.p50_ms
    written = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert {"total", "by_name", "failure_rate"} <= set(written)
    assert {"requests_per_s", "p50_ms", "p95_ms", "p99_ms", "failures"} <= set(written["total"])
    assert (tmp_path / "out" / "report.html").stat().st_size > 0
    logged = (tmp_path / "out" / "requests.jsonl").read_text().splitlines()
    assert len(logged) >= summary.total.requests  # the log also has requests finished at stop


def test_the_triton_user_gets_pytorchs_probabilities(deployed: Deployed, stack: LocalStack) -> None:
    client = httpclient.InferenceServerClient(stack.triton.endpoints.http)
    try:
        config, limit = served_ranker(client, stack.triton.endpoints.http)
        assert config == deployed.checkpoint.config and limit == 512
        arrays = random_ranker_request(config, 48, np.random.default_rng(0))
        served = infer(client, httpclient, RANKER, arrays)
    finally:
        client.close()
    model = wrap(RANKER, deployed.checkpoint).eval()
    with torch.no_grad():
        inputs, _ = model_io(RANKER, config)
        log_probs, continuous = model(*(torch.from_numpy(arrays[spec.name]) for spec in inputs))
    np.testing.assert_allclose(served["action_log_probs"], log_probs.numpy(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(served["continuous"], continuous.numpy(), rtol=0, atol=1e-3)


def test_a_short_triton_run_with_a_step_shape(stack: LocalStack, tmp_path: Path) -> None:
    settings = LoadTestSettings(
        target="triton", users=4, duration_s=8, candidates=64, shape="steps",
        start_users=2, step_users=2, step_s=4, user_rps=10,
    )  # fmt: skip
    result = run_locust(settings, stack.triton.endpoints.http, tmp_path / "out")
    assert result.summary.total.failures == 0
    assert set(result.summary.by_name) == {"phoenix_ranker"}
    assert [s.users for s in result.steps] == [2, 4]
    assert result.steps[1].requests_per_s > result.steps[0].requests_per_s
