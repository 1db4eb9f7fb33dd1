"""The exported tiny repository served by the real `tritonserver`, called with `tritonclient`.

One server per target, started on a freshly exported `tiny` repository: `cpu` (ONNX Runtime in
the Python backend) and `pytorch` (the PyTorch module in the Python backend; fp32 with CUDA graphs
on, which on a machine without a GPU pads every call to its bucket without capturing; bf16 with
real CUDA graphs where there is a GPU). Every check goes through Triton over HTTP or gRPC and
compares with the PyTorch models the export came from.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from export.checkpoint import Checkpoint, save_checkpoint
from export.onnx.wrappers import MODEL_NAMES, RANKER, USER_TOWER, example_inputs, model_io, wrap
from export.parity import TOLERANCE_PER_UNIT
from export.repository.build import ExportSettings, export_repository
from export.repository.model_config import MODEL_FILES, Target
from phoenix.cli import main
from phoenix.config import get_config
from phoenix.triton.check import CHECK_CANDIDATES, check_model
from phoenix.triton.requests import infer
from phoenix.triton.server import TritonServer

pytestmark = pytest.mark.triton

CONFIG = get_config("tiny")
MAX_CANDIDATES = 64
CLIENTS = {"http": httpclient, "grpc": grpcclient}
ON_GPU = torch.cuda.is_available()
SETTINGS = {
    "cpu": ExportSettings(max_candidates=MAX_CANDIDATES, max_queue_delay_us=20_000),
    "pytorch": ExportSettings(
        target="pytorch",
        precision="bf16" if ON_GPU else "fp32",
        cuda_graphs=True,
        max_candidates=MAX_CANDIDATES,
        max_queue_delay_us=20_000,
    ),
}
#: |served - PyTorch fp32| accepted per target (bf16 on a GPU: see export.parity).
TOLERANCES = {"cpu": 1e-4, "pytorch": TOLERANCE_PER_UNIT["bf16"] if ON_GPU else 1e-4}


class Served:
    """The running server, its repository, and the checkpoint of the version being served."""

    def __init__(
        self, server: TritonServer, repository: Path, checkpoint: Checkpoint, target: str
    ) -> None:
        self.server = server
        self.repository = repository
        self.checkpoint = checkpoint
        self.target = target
        self.tolerance = TOLERANCES[target]

    def client(self, protocol: str):  # type: ignore[no-untyped-def]
        url = getattr(self.server.endpoints, protocol)
        return CLIENTS[protocol].InferenceServerClient(url)


def _export(
    checkpoint: Checkpoint, workdir: Path, repository: Path, name: str, target: str
) -> None:
    checkpoint_dir = save_checkpoint(checkpoint, workdir / name)
    export_repository(checkpoint_dir, repository, SETTINGS[target])


@pytest.fixture(scope="module", params=list(SETTINGS))
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    target = request.param
    workdir = tmp_path_factory.mktemp(f"serving-{target}")
    repository = workdir / "model_repository"
    checkpoint = Checkpoint.initialise(CONFIG, seed=11)
    _export(checkpoint, workdir, repository, "v1", target)
    server = TritonServer(repository, http_port=0, grpc_port=0, metrics_port=0, poll_interval_s=1.0)
    with server:
        yield Served(server, repository, checkpoint, target)


def _infer(client, protocol: str, model: str, arrays: dict[str, np.ndarray], outputs: list[str]):  # type: ignore[no-untyped-def]
    """One request, as every client of Triton sends one; returns {output name: array}."""
    return infer(client, CLIENTS[protocol], model, arrays, outputs)


def _request(model: str, batch: int = 2, candidates: int = 16, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    args = example_inputs(model, CONFIG, batch, candidates, gen)
    inputs, _ = model_io(model, CONFIG)
    return {spec.name: arg.numpy() for spec, arg in zip(inputs, args, strict=True)}


def _expected(checkpoint: Checkpoint, model: str, arrays: dict) -> dict[str, np.ndarray]:
    _, outputs = model_io(model, CONFIG)
    with torch.no_grad():
        result = wrap(model, checkpoint).eval()(*(torch.from_numpy(a) for a in arrays.values()))
    result = result if isinstance(result, tuple) else (result,)
    return {spec.name: t.numpy() for spec, t in zip(outputs, result, strict=True)}


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("model", MODEL_NAMES)
def test_every_model_answers_like_pytorch(served: Served, protocol: str, model: str) -> None:
    client = served.client(protocol)
    assert client.is_model_ready(model)
    _, outputs = model_io(model, CONFIG)
    for seed, candidates in enumerate((1, 16, MAX_CANDIDATES)):
        arrays = _request(model, batch=3, candidates=candidates, seed=seed)
        got = _infer(client, protocol, model, arrays, [spec.name for spec in outputs])
        want = _expected(served.checkpoint, model, arrays)
        for name in want:
            assert got[name].shape == want[name].shape, name
            np.testing.assert_allclose(got[name], want[name], rtol=0, atol=served.tolerance)


def test_concurrent_requests_are_batched(served: Served) -> None:
    """32 concurrent one-viewer requests need fewer executions than requests."""
    client = served.client("grpc")

    def counts() -> tuple[int, int]:
        stats = client.get_inference_statistics(RANKER).model_stats[0]
        return stats.inference_stats.success.count, stats.execution_count

    requests_before, executions_before = counts()
    arrays = _request(RANKER, batch=1, candidates=32, seed=3)
    want = _expected(served.checkpoint, RANKER, arrays)

    def one(_: int) -> np.ndarray:
        own = served.client("grpc")  # one channel per thread, like real callers
        return _infer(own, "grpc", RANKER, arrays, ["action_log_probs"])["action_log_probs"]

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(one, range(32)))
    for got in results:
        np.testing.assert_allclose(got, want["action_log_probs"], rtol=0, atol=served.tolerance)
    # Triton updates its statistics just after it answers: wait until all 32 are counted.
    deadline = time.monotonic() + 10
    requests_after, executions_after = counts()
    while requests_after - requests_before < 32 and time.monotonic() < deadline:
        time.sleep(0.05)
        requests_after, executions_after = counts()
    requests, executions = requests_after - requests_before, executions_after - executions_before
    assert requests == 32
    assert executions < requests, f"{executions} executions for {requests} requests"


def _malformed() -> list[tuple[str, dict, str]]:
    """(case, arrays, text the error must contain)."""
    good = _request(RANKER, batch=1, candidates=4, seed=9)
    cases = []

    def bad(case: str, field: str, value: np.ndarray, expect: str) -> None:
        cases.append((case, {**good, field: value}, expect))

    history = good["history_post_hash"]
    doubled = np.concatenate([history, history], 1)
    bad("wrong shape", "history_post_hash", doubled, "history_post_hash")
    bad("wrong dtype", "user_hash", good["user_hash"].astype(np.float32), "user_hash")
    bad(
        "row outside its block",
        "candidate_post_hash",
        np.full_like(good["candidate_post_hash"], CONFIG.table_rows + 5),
        "candidate_post_hash",
    )
    bad(
        "negative row",
        "user_hash",
        -np.ones_like(good["user_hash"]),
        "user_hash",
    )
    bad(
        "surface out of range",
        "candidate_surface",
        np.full_like(good["candidate_surface"], CONFIG.num_surfaces),
        "candidate_surface",
    )
    bad(
        "actions not 0/1",
        "history_actions",
        good["history_actions"] * 3.0 + 2.0,
        "history_actions",
    )
    many = MAX_CANDIDATES + 1
    over = _request(RANKER, batch=1, candidates=many, seed=10)
    cases.append(("too many candidates", over, "candidate"))
    missing = {k: v for k, v in good.items() if k != "candidate_surface"}
    cases.append(("missing input", missing, "candidate_surface"))
    return cases


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_malformed_requests_get_errors_and_the_server_stays_up(
    served: Served, protocol: str
) -> None:
    client = served.client(protocol)
    invalid_argument = {"http": "400", "grpc": "StatusCode.INVALID_ARGUMENT"}[protocol]
    for case, arrays, expect in _malformed():
        with pytest.raises(InferenceServerException) as info:
            _infer(client, protocol, RANKER, arrays, ["action_log_probs"])
        assert expect in str(info.value), f"{case}: {info.value}"
        # The model's own checks answer as Triton's do: the client's mistake, not INTERNAL.
        assert info.value.status() == invalid_argument, f"{case}: {info.value.status()}"
    assert client.is_server_live() and client.is_model_ready(RANKER)
    arrays = _request(RANKER, batch=1, candidates=4, seed=12)
    got = _infer(client, protocol, RANKER, arrays, ["action_log_probs"])["action_log_probs"]
    want = _expected(served.checkpoint, RANKER, arrays)["action_log_probs"]
    np.testing.assert_allclose(got, want, rtol=0, atol=served.tolerance)


def test_smoke_check_answers_for_every_model(served: Served) -> None:
    endpoints = served.server.endpoints
    for model in MODEL_NAMES:
        result = check_model(served.repository, model, endpoints.http, endpoints.grpc)
        _, outputs = model_io(model, CONFIG)
        assert list(result.outputs) == [spec.name for spec in outputs]
        for spec in outputs:
            candidates = [CHECK_CANDIDATES if d == -1 else d for d in spec.shape]
            assert result.outputs[spec.name] == (1, *candidates)


def test_cli_check_serves_and_stops(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    ports = ["--http-port", "0", "--grpc-port", "0", "--metrics-port", "0"]
    assert main(["triton", "--repository", str(served.repository), "--check", *ports]) == 0
    printed = capsys.readouterr().out
    for model in MODEL_NAMES:
        assert f"{model} v1:" in printed


def test_a_new_version_is_served_without_failing_a_request(served: Served, tmp_path: Path) -> None:
    """Export new weights while a client loops; v2 takes over and no request fails."""
    client = served.client("http")
    arrays = _request(USER_TOWER, batch=2, seed=21)
    old = _expected(served.checkpoint, USER_TOWER, arrays)["user_embedding"]
    new_checkpoint = Checkpoint.initialise(CONFIG, seed=12)
    new = _expected(new_checkpoint, USER_TOWER, arrays)["user_embedding"]
    assert np.abs(old - new).max() > 1e-2  # the two versions are distinguishable

    failures: list[BaseException] = []
    answers: list[str] = []
    stop = threading.Event()

    def loop() -> None:
        own = served.client("http")
        while not stop.is_set():
            try:
                got = _infer(own, "http", USER_TOWER, arrays, ["user_embedding"])
            except Exception as exc:  # any failure is the test's failure
                failures.append(exc)
                continue
            emb = got["user_embedding"]
            answers.append("old" if np.allclose(emb, old, atol=served.tolerance) else "new")
            if not np.allclose(emb, old if answers[-1] == "old" else new, atol=served.tolerance):
                failures.append(AssertionError("an answer matching neither version"))

    worker = threading.Thread(target=loop, daemon=True)
    worker.start()
    try:
        time.sleep(0.5)
        _export(new_checkpoint, tmp_path, served.repository, "v2", served.target)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not answers or answers[-1] != "new"):
            time.sleep(0.2)
        time.sleep(1.0)  # keep asking after the switch
    finally:
        stop.set()
        worker.join(timeout=30)
    served.checkpoint = new_checkpoint  # later tests (if any) compare with what is served
    assert not failures, failures[:3]
    assert "old" in answers and answers[-1] == "new", answers[-5:]
    assert answers.index("new") > 0 and "old" not in answers[answers.index("new") :]
    assert client.is_model_ready(USER_TOWER, "2")
    # the published version directory of every model is 2, the first one untouched
    served_file = MODEL_FILES[Target(served.target)]
    for model in MODEL_NAMES:
        assert (served.repository / model / "1" / served_file).is_file()
        assert (served.repository / model / "2" / served_file).is_file()
