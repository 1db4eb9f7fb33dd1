"""Fixtures for tests of the service as parts on a fake Triton: a small world, the fake server
(each test decides when it answers) and the service the composition root builds around it.
Import them into a test module to use them."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.build import build_service
from orchestrator.circuit import CircuitBreaker
from orchestrator.service import FeedService
from orchestrator.settings import OrchestratorSettings
from phoenix.world.generate import generate_world
from phoenix.world.spec import WorldSpec
from tests.fakes.triton import FakeServer, FakeTriton


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world") / "w"
    return generate_world(WorldSpec(seed=5, num_users=120, num_authors=20), out, progress=False)


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def service(world_dir: Path, tmp_path: Path, server: FakeServer) -> FeedService:
    settings = OrchestratorSettings(data=tmp_path / "data", world=world_dir, ann_backend="exact")
    # A breaker that never opens: each test decides when Triton answers.
    triton = FakeTriton(server, breaker=CircuitBreaker(failures=1_000_000))
    return build_service(settings, triton=triton)
