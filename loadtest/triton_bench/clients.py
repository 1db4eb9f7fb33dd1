"""The requests every case sends and the three ways to send one: in-process (an ONNX Runtime
session or a PyTorch `TorchRunner`, as the served model runs), and Triton over HTTP and gRPC.
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
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from loadtest.triton_bench.settings import GRPC, HTTP, OUTPUTS, REQUEST_TIMEOUT_S, Request
from phoenix.config import ModelConfig
from phoenix.errors import ServingError

if TYPE_CHECKING:
    import onnxruntime as ort

    from loadtest.triton_bench.repository import ServedRanker


def make_request_pool(config: ModelConfig, candidates: int, size: int, seed: int) -> list[Request]:
    """`size` random valid ranker requests: batch 1, every history slot valid, numpy arrays."""
    import torch

    from export.onnx.wrappers import RANKER, example_inputs, model_io

    specs, _ = model_io(RANKER, config)
    generator = torch.Generator().manual_seed(seed)
    pool = []
    for _ in range(size):
        tensors = example_inputs(RANKER, config, 1, candidates, generator)
        pool.append({s.name: t.numpy() for s, t in zip(specs, tensors, strict=True)})
    return pool


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
            return np.exp(self._runtime.run(list(OUTPUTS), request)[0])
        with self._lock:
            return np.exp(self._runtime.run(list(OUTPUTS), request)[0])

    def close(self) -> None:
        pass


class HttpClient:
    """One thread's HTTP client (tritonclient's clients are not shared between threads)."""

    def __init__(self, url: str, model: str, timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self._model = model
        self._client = triton_http.InferenceServerClient(
            url, concurrency=1, connection_timeout=timeout_s, network_timeout=timeout_s
        )
        self._outputs = [triton_http.InferRequestedOutput(n, binary_data=True) for n in OUTPUTS]

    def infer(self, request: Request) -> np.ndarray:
        inputs = []
        for name, array in request.items():
            tensor = triton_http.InferInput(
                name, list(array.shape), np_to_triton_dtype(array.dtype)
            )
            tensor.set_data_from_numpy(array, binary_data=True)
            inputs.append(tensor)
        try:
            result = self._client.infer(self._model, inputs, outputs=self._outputs)
        except InferenceServerException as exc:
            raise ServingError(f"{HTTP} {self._model}: {exc}") from exc
        return np.exp(result.as_numpy(OUTPUTS[0]))

    def close(self) -> None:
        self._client.close()


class GrpcClient:
    """One thread's gRPC client, with its own channel."""

    def __init__(self, url: str, model: str, timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self._model = model
        self._timeout_s = timeout_s
        self._client = triton_grpc.InferenceServerClient(url)
        self._outputs = [triton_grpc.InferRequestedOutput(name) for name in OUTPUTS]

    def infer(self, request: Request) -> np.ndarray:
        inputs = []
        for name, array in request.items():
            tensor = triton_grpc.InferInput(
                name, list(array.shape), np_to_triton_dtype(array.dtype)
            )
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        try:
            result = self._client.infer(
                self._model, inputs, outputs=self._outputs, client_timeout=self._timeout_s
            )
        except InferenceServerException as exc:
            raise ServingError(f"{GRPC} {self._model}: {exc}") from exc
        return np.exp(result.as_numpy(OUTPUTS[0]))

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
