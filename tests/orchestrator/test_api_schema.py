"""Every operation of the HTTP API, driven by schemathesis from the app's own OpenAPI schema: no
request it generates (valid or not) gets a 5xx, and every answer matches the schema (status,
content type, body). In process, with no Triton behind the service (degraded feeds): the
schema's contract, not the ranking, is under test. Examples are bounded so it runs in seconds."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from orchestrator.app import create_app
from orchestrator.auth import SERVICE, Authenticator
from orchestrator.build import build_service
from orchestrator.settings import OrchestratorSettings
from phoenix.triton.server import free_port
from phoenix.world.generate import generate_world
from phoenix.world.spec import WorldSpec

TOKEN = "schemathesis-service-token"
USER_TOKEN = "schemathesis-user-token-1"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    world = generate_world(
        WorldSpec(seed=9, num_users=60, num_authors=12),
        tmp_path_factory.mktemp("world") / "w",
        progress=False,
    )
    service = build_service(
        OrchestratorSettings(
            data=tmp_path_factory.mktemp("data"),
            world=world,
            triton_url=f"127.0.0.1:{free_port()}",
            triton_timeout_s=0.1,
        )
    )
    yield create_app(service, auth=Authenticator({TOKEN: SERVICE, USER_TOKEN: 1}))


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
#: Examples per operation and generation mode: 15 operations x 2 modes in seconds.
EXAMPLES = 15


def _operations(app: FastAPI) -> list[APIOperation]:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    return [result.ok() for result in schema.get_all_operations()]


def test_the_schema_covers_every_route(app: FastAPI) -> None:
    operations = {(op.method.upper(), op.path) for op in _operations(app)}
    routes = {
        (method, route.path)
        for route in app.routes
        if route.path not in ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")
        for method in getattr(route, "methods", ()) - {"HEAD"}
    }
    assert operations == routes


def _fuzz(operation: APIOperation, mode: GenerationMode, checks: list) -> None:
    """EXAMPLES generated requests against one operation, each validated by `checks`."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        phases=[Phase.generate],
    )
    def call(case: Case) -> None:
        case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, checks=checks)

    call()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_operation_answers_5xx_or_off_schema(app: FastAPI, mode: GenerationMode) -> None:
    for operation in _operations(app):
        if mode is GenerationMode.NEGATIVE and not (
            len(operation.body) or len(operation.path_parameters)
        ):
            continue  # nothing to get wrong in a request without inputs
        checks = [*CHECKS, negative_data_rejection] if mode is GenerationMode.NEGATIVE else CHECKS
        # Not ready is a 503 by contract (no Triton here); the schema documents it.
        if operation.path == "/readyz":
            checks = [c for c in checks if c is not not_a_server_error]
        _fuzz(operation, mode, checks)
