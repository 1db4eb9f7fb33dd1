"""The requests every case sends and the three ways to send one: in-process (an ONNX Runtime
session or a PyTorch `TorchRunner`, as the served model runs), and Triton over HTTP and gRPC.
Requests are packed and sent as the orchestrator's are (`phoenix.triton.requests`).
Each client is used by one thread; all answer with the action probabilities (exp of the served
log-probabilities, so the paths are compared on one scale)."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from loadtest.triton_bench.settings import GRPC, HTTP, REQUEST_TIMEOUT_S, Request
from phoenix.config import ModelConfig
from phoenix.errors import ServingError
from phoenix.triton.requests import RANKER_OUTPUTS, infer, random_ranker_request

if TYPE_CHECKING:
    import onnxruntime as ort

    from loadtest.triton_bench.repository import ServedRanker


def make_request_pool(config: ModelConfig, candidates: int, size: int, seed: int) -> list[Request]:
    """`size` random valid ranker requests: batch 1, every history slot valid, numpy arrays."""
    rng = np.random.default_rng(seed)
    return [random_ranker_request(config, candidates, rng) for _ in range(size)]


class Client(Protocol):
    def infer(self, request: Request) -> np.ndarray:
        """Run one request; its action probabilities [1, C, A]."""

    def close(self) -> None: ...


class Runtime(Protocol):
    """ONNX Runtime's session interface, which `TorchRunner` has too."""

    def run(self, output_names: Sequence[str], feeds: Mapping[str, np.ndarray]) -> list: ...


@dataclass(frozen=True)
class InProcess:
    """The in-process path's runtime, shared by every client thread. `lock`: set where `run` is
    not thread safe (the pytorch target's runner: static bucket buffers and CUDA graphs), so
    calls take turns, as in the served model's single instance; None for ONNX Runtime."""

    runtime: Runtime
    description: str  # e.g. "ONNX Runtime 1.22.0", "PyTorch 2.8.0 bf16 on cuda, CUDA graphs"
    device: str  # where it computes: "cpu", "cuda", "cuda:1"
    lock: threading.Lock | None = None


class InProcessClient:
    """In-process: a thread's view of the shared runtime, taking the runtime's lock if it has one
    (ONNX Runtime's `run` is thread safe and runs lock-free)."""

    def __init__(self, in_process: InProcess) -> None:
        self._runtime = in_process.runtime
        self._lock = in_process.lock

    def infer(self, request: Request) -> np.ndarray:
        if self._lock is None:
            return np.exp(self._runtime.run(list(RANKER_OUTPUTS), request)[0])
        with self._lock:
            return np.exp(self._runtime.run(list(RANKER_OUTPUTS), request)[0])

    def close(self) -> None:
        pass


class HttpClient:
    """One thread's HTTP client (tritonclient's clients are not shared between threads)."""

    def __init__(self, url: str, model: str, timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self._model = model
        self._client = triton_http.InferenceServerClient(
            url, concurrency=1, connection_timeout=timeout_s, network_timeout=timeout_s
        )

    def infer(self, request: Request) -> np.ndarray:
        try:
            result = infer(self._client, triton_http, self._model, request, RANKER_OUTPUTS)
        except InferenceServerException as exc:
            raise ServingError(f"{HTTP} {self._model}: {exc}") from exc
        return np.exp(result[RANKER_OUTPUTS[0]])

    def close(self) -> None:
        self._client.close()


class GrpcClient:
    """One thread's gRPC client, with its own channel."""

    def __init__(self, url: str, model: str, timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self._model = model
        self._timeout_s = timeout_s
        self._client = triton_grpc.InferenceServerClient(url)

    def infer(self, request: Request) -> np.ndarray:
        try:
            result = infer(
                self._client,
                triton_grpc,
                self._model,
                request,
                RANKER_OUTPUTS,
                client_timeout=self._timeout_s,
            )
        except InferenceServerException as exc:
            raise ServingError(f"{GRPC} {self._model}: {exc}") from exc
        return np.exp(result[RANKER_OUTPUTS[0]])

    def close(self) -> None:
        self._client.close()


def open_in_process(served: ServedRanker, threads: int) -> InProcess:
    """The runtime the served model runs, in this process: for the cpu target an ONNX Runtime
    session on its model.onnx; for pytorch a `TorchRunner` on its checkpoint with the options its
    config.pbtxt gives the served model (same device, precision and CUDA graphs), warmed up.
    `threads`: intra-op threads on a CPU, as the served model reads PHOENIX_ORT_THREADS."""
    if served.target == "cpu":
        import onnxruntime as ort

        if served.onnx_path is None:
            raise ServingError(f"cpu target without a model.onnx in {served.version_dir}")
        session = ort_session(served.onnx_path, threads)
        return InProcess(session, f"ONNX Runtime {ort.__version__}", "cpu")
    import torch

    from export.onnx.wrappers import RANKER
    from export.torch_serving.runner import TorchRunner

    runner = TorchRunner.from_version_dir(
        RANKER,
        served.version_dir,
        served.parameters,
        max_batch=served.max_batch_size,
        max_candidates=served.max_candidates or None,
        threads=threads,
    )
    if runner.captures:
        shapes = "CUDA graphs"
    elif runner.static_shapes:
        shapes = "padded to buckets"
    else:
        shapes = "eager"
    precision = runner.options.precision
    description = f"PyTorch {torch.__version__} {precision} on {runner.device}, {shapes}"
    return InProcess(runner, description, str(runner.device), threading.Lock())


def ort_session(onnx_path: Path, threads: int) -> ort.InferenceSession:
    """A CPU session configured like the Python-backend model's (intra-op `threads`, inter-op 1)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
