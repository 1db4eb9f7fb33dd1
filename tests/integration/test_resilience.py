"""The stack under Triton trouble, for real: tritonserver refusing a request the orchestrator
built, hanging, and dying from one hostile request.

- Refused (INVALID_ARGUMENT): our bug, so a 502 with a clear body, a metric and a log line, never
  a silently degraded feed.
- Hanging (SIGSTOP): feeds degrade, and once the circuit is open they stop waiting for the
  timeout; they are ranked again after SIGCONT.
- Killed (an HTTP request whose `shape` claims 2**41 elements: tritonserver 2.51 aborts with
  std::bad_alloc): the supervisor restarts it and feeds are ranked again within 30 s, with no
  shared memory of the dead run left in /dev/shm.
"""

from __future__ import annotations

import http.client as httplib
import json
import logging
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tiny_export import TinyExport

from orchestrator.local_stack import LocalStack
from orchestrator.triton_client import PhoenixTriton
from phoenix.serving import CANDIDATE_TOWER
from phoenix.world.generate import generate_world
from phoenix.world.spec import WorldSpec

pytestmark = pytest.mark.triton

TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, tiny_export: TinyExport
) -> Iterator[LocalStack]:
    work = tmp_path_factory.mktemp("resilience")
    world = generate_world(
        WorldSpec(seed=8, num_users=200, num_authors=40), work / "world", progress=False
    )
    local = LocalStack(
        tiny_export.copy_to(work),
        data=work / "data",
        world=world,
        triton_timeout_s=TIMEOUT_S,
        reconnect_s=0.5,
        circuit_failures=2,
        circuit_open_s=3.0,
    )
    with local:
        yield local


@pytest.fixture
def http(stack: LocalStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url, headers=stack.headers, timeout=30.0) as client:
        yield client


def _viewer(stack: LocalStack) -> int:
    viewers = stack.service.viewers
    for user_id in viewers.user_ids():
        viewer = viewers.get(user_id)
        if viewer is not None and len(viewer.following) >= 5 and len(viewer.history) >= 5:
            return user_id
    raise AssertionError("no ordinary viewer")


def _metric(http: httpx.Client, line_start: str) -> float:
    for line in http.get("/metrics").text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _ranked_again(http: httpx.Client, viewer_id: int, within_s: float) -> float:
    """Seconds until a feed is ranked (not degraded); every answer meanwhile is a 200."""
    start = time.monotonic()
    while True:
        response = http.post("/v1/feed", json={"viewer_id": viewer_id})
        assert response.status_code == 200, response.text
        if not response.json()["degraded"]:
            return time.monotonic() - start
        assert time.monotonic() - start < within_s, response.json()["degraded_reason"]
        time.sleep(0.2)


def test_a_request_triton_refuses_is_a_502_counted_and_logged(
    stack: LocalStack,
    http: httpx.Client,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The orchestrator pads ranker requests to 4,096 candidates; the ranker takes 512."""
    viewer_id = _viewer(stack)
    refused_before = _metric(http, 'phoenix_triton_refused_total{model="phoenix_ranker"}')
    with monkeypatch.context() as patch:
        patch.setattr(PhoenixTriton, "bucket", lambda self, count: 4096)
        with caplog.at_level(logging.ERROR, logger="orchestrator.triton_client"):
            response = http.post("/v1/feed", json={"viewer_id": viewer_id})
    assert response.status_code == 502, response.text
    body = response.json()
    assert body["error"] == "triton_refused"
    assert "exceed the limit of 512" in body["detail"]
    assert _metric(http, 'phoenix_triton_refused_total{model="phoenix_ranker"}') > refused_before
    assert any("refused" in r.getMessage() for r in caplog.records)
    assert not stack.service.triton.breaker.is_open  # a refusal is an answer: Triton is up
    assert not http.post("/v1/feed", json={"viewer_id": viewer_id}).json()["degraded"]


def test_a_hanging_triton_costs_no_timeout_per_feed(stack: LocalStack, http: httpx.Client) -> None:
    viewer_id = _viewer(stack)
    pid = stack.triton.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    took = []
    try:
        for _ in range(8):
            start = time.monotonic()
            response = http.post("/v1/feed", json={"viewer_id": viewer_id})
            took.append(time.monotonic() - start)
            assert response.status_code == 200 and response.json()["degraded"], response.text
        assert _metric(http, "phoenix_triton_circuit_open ") == 1.0
    finally:
        os.kill(pid, signal.SIGCONT)
    slow = [t for t in took if t >= 0.8 * TIMEOUT_S]
    assert len(slow) <= 2, f"feeds waited for Triton after the circuit opened: {took}"
    assert all(t < 0.5 * TIMEOUT_S for t in took[2:]), took
    _ranked_again(http, viewer_id, within_s=30)
    assert _metric(http, "phoenix_triton_circuit_open ") == 0.0


def _killing_request(http_endpoint: str) -> None:
    """The request of issue 13: a JSON `shape` of [1, 2**40, 2] with two values."""
    host, port = http_endpoint.rsplit(":", 1)
    body = {
        "inputs": [
            {"name": "post_hash", "shape": [1, 2**40, 2], "datatype": "INT64", "data": [1, 2]},
            {"name": "author_hash", "shape": [1, 2], "datatype": "INT64", "data": [1, 1]},
        ]
    }
    connection = httplib.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(
            "POST", f"/v2/models/{CANDIDATE_TOWER}/infer", body=json.dumps(body),
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        connection.getresponse().read()
    except (httplib.HTTPException, OSError):
        pass  # the server died mid-request
    finally:
        connection.close()


def test_the_request_that_kills_triton_then_ranked_feeds_within_30s(
    stack: LocalStack, http: httpx.Client
) -> None:
    viewer_id = _viewer(stack)
    assert not http.post("/v1/feed", json={"viewer_id": viewer_id}).json()["degraded"]
    old_pid = stack.triton.pid
    prefix = stack.triton.server._shm_prefix
    assert prefix and list(Path("/dev/shm").glob(f"{prefix}*")), "no regions to leave behind"
    restarts = _metric(http, "phoenix_triton_restarts_total ")
    killed_at = time.monotonic()
    _killing_request(stack.triton.endpoints.http)
    _ranked_again(http, viewer_id, within_s=30 - (time.monotonic() - killed_at))
    assert stack.triton.pid != old_pid, "the same server answers: the request did not kill it"
    assert _metric(http, "phoenix_triton_restarts_total ") == restarts + 1
    assert not list(Path("/dev/shm").glob(f"{prefix}*")), "the dead run's shared memory is left"
