"""A served repository's smoke check: one valid request per model, over HTTP and gRPC.

Requests are built from each model's `io.json` (written by `phoenix export` next to every
version): the tensor names, dtypes and shapes, and the row ranges the values must fall in. So the
check needs neither PyTorch nor the checkpoint, and works against any server holding an export,
the bundled `tritonserver` or NVIDIA's container alike.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from phoenix.errors import ServingError

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


def latest_io(repository: Path, model: str) -> tuple[str, dict[str, Any]]:
    """(version, io.json document) of the newest version of `model` that has an io.json."""
    model_dir = repository / model
    versions = sorted(
        (int(p.name) for p in model_dir.iterdir() if p.name.isdigit() and p.is_dir()),
        reverse=True,
    )
    for version in versions:
        path = model_dir / str(version) / "io.json"
        if path.is_file():
            return str(version), json.loads(path.read_text())
    raise ServingError(f"{model}: no version under {model_dir} has an io.json (not an export?)")


def random_request(io: dict[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One valid batch-1 request: rows inside their blocks, codes in range, 0/1 flags."""
    candidates = min(CHECK_CANDIDATES, io.get("max_candidates") or CHECK_CANDIDATES)
    arrays = {}
    for spec in io["inputs"]:
        shape = [1, *(candidates if d == -1 else d for d in spec["shape"])]
        if "rows" in spec:
            low, high = spec["rows"]  # an empty block (no IP rows, say) admits only 0
            array = rng.integers(low, high + 1, size=shape) if low <= high else np.zeros(shape)
        elif "below" in spec:
            array = rng.integers(0, spec["below"], size=shape)
        elif spec.get("binary"):
            array = (rng.random(shape) < 0.2).astype(np.float32)
        else:
            array = rng.random(shape)
        arrays[spec["name"]] = array.astype(spec["dtype"])
    return arrays


def check_model(
    repository: Path, model: str, http_url: str, grpc_url: str, seed: int = 0
) -> ModelCheck:
    """Send the same request over HTTP and gRPC; both must answer, and answer the same."""
    version, io = latest_io(repository, model)
    arrays = random_request(io, np.random.default_rng(seed))
    names = [spec["name"] for spec in io["outputs"]]
    results, times = {}, {}
    for protocol, module, url in (("http", httpclient, http_url), ("grpc", grpcclient, grpc_url)):
        client = module.InferenceServerClient(url)
        inputs = []
        for name, array in arrays.items():
            tensor = module.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        requested = [module.InferRequestedOutput(name) for name in names]
        started = time.perf_counter()
        try:
            result = client.infer(model, inputs, outputs=requested)
        except InferenceServerException as exc:
            raise ServingError(f"{model}: {protocol.upper()} request failed: {exc}") from exc
        times[protocol] = (time.perf_counter() - started) * 1e3
        results[protocol] = {name: result.as_numpy(name) for name in names}
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
