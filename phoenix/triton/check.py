"""A served repository's smoke check: one valid request per model, over HTTP and gRPC.

Requests are built from each model's `io.json` (written by `phoenix export` next to every
version): the tensor names, dtypes and shapes, and the row ranges the values must fall in. So the
check needs neither PyTorch nor the checkpoint, and works against any server holding an export,
the bundled `tritonserver` or NVIDIA's container alike. Reading io.json, building the request
and sending it are `phoenix.triton.requests`', as for every client of Triton.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from phoenix.errors import ServingError
from phoenix.triton.requests import infer, latest_io, request_from_io

#: Candidates per ranker request in the check (clipped to the model's limit).
CHECK_CANDIDATES = 16
#: Largest |HTTP - gRPC| accepted on any output of the same request.
PROTOCOL_TOLERANCE = 1e-5


@dataclass(frozen=True)
class ModelCheck:
    """How one model answered: its output shapes and each protocol's round-trip time."""

    model: str
    version: str
    outputs: dict[str, tuple[int, ...]]
    http_ms: float
    grpc_ms: float

    def describe(self) -> str:
        shapes = ", ".join(f"{name} {list(shape)}" for name, shape in self.outputs.items())
        return (
            f"{self.model} v{self.version}: {shapes}  "
            f"(HTTP {self.http_ms:.1f} ms, gRPC {self.grpc_ms:.1f} ms)"
        )


def check_model(
    repository: Path, model: str, http_url: str, grpc_url: str, seed: int = 0
) -> ModelCheck:
    """Send the same request over HTTP and gRPC; both must answer, and answer the same."""
    version, io = latest_io(repository, model)
    arrays = request_from_io(io, np.random.default_rng(seed), CHECK_CANDIDATES)
    names = [spec["name"] for spec in io["outputs"]]
    results, times = {}, {}
    for protocol, module, url in (("http", httpclient, http_url), ("grpc", grpcclient, grpc_url)):
        client = module.InferenceServerClient(url)
        started = time.perf_counter()
        try:
            results[protocol] = infer(client, module, model, arrays, names)
        except InferenceServerException as exc:
            raise ServingError(f"{model}: {protocol.upper()} request failed: {exc}") from exc
        times[protocol] = (time.perf_counter() - started) * 1e3
    for name in names:
        http_out, grpc_out = results["http"][name], results["grpc"][name]
        if not np.isfinite(http_out).all():
            raise ServingError(f"{model}: output {name} has non-finite values")
        if http_out.shape != grpc_out.shape or not np.allclose(
            http_out, grpc_out, rtol=0, atol=PROTOCOL_TOLERANCE
        ):
            raise ServingError(f"{model}: output {name} differs between HTTP and gRPC")
    return ModelCheck(
        model=model,
        version=version,
        outputs={name: tuple(results["http"][name].shape) for name in names},
        http_ms=times["http"],
        grpc_ms=times["grpc"],
    )
