"""The requests every case sends and the three ways to send one: ONNX Runtime in-process, and
Triton over HTTP and gRPC. Each client is used by one thread; all answer with action_probs."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import onnxruntime as ort
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from loadtest.triton_bench.settings import GRPC, HTTP, OUTPUTS, REQUEST_TIMEOUT_S, Request
from phoenix.config import ModelConfig
from phoenix.errors import ServingError


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
        """Run one request; its action_probs [1, C, A]."""

    def close(self) -> None: ...


class OrtClient:
    """In-process: a thread's view of the shared session (ONNX Runtime's `run` is thread safe)."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self._session = session

    def infer(self, request: Request) -> np.ndarray:
        return self._session.run(list(OUTPUTS), request)[0]

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
        return result.as_numpy(OUTPUTS[0])

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
        return result.as_numpy(OUTPUTS[0])

    def close(self) -> None:
        self._client.close()


def ort_session(onnx_path: Path, threads: int) -> ort.InferenceSession:
    """A CPU session configured like the Python-backend model's (intra-op `threads`, inter-op 1)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
