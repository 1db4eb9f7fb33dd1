"""Triton Python-backend model that runs an exported ONNX graph with ONNX Runtime.

This file is copied verbatim into every version directory of the `cpu` target as `model.py`, next
to `model.onnx` and `io.json`. It runs inside Triton's Python-backend stub, so it imports only
numpy, onnxruntime and Triton's `triton_python_backend_utils`, never this project: a served
version must keep working whatever the installed project version is. (The `pytorch` target's
model.py, `torch_model.py`, subclasses it and replaces only `open_session`.)

`io.json` lists the inputs (name, dtype, shape without the batch dim, and for row-index inputs the
valid row ranges) and outputs. Triton itself checks names, dtypes and ranks against config.pbtxt;
this model checks what Triton cannot: that the inputs of a request agree with each other (one
batch size, one candidate count), index values (rows outside an entity's block, surfaces out of
range, flags not 0/1, negative counts or times, NaN) and the candidate limit, and answers each
bad request with an error that names the field, without failing the other requests of the
batch. (It checks dtypes and fixed dimensions again, cheaply: a request that slipped through
would otherwise break the whole group it is concatenated with.)

Dynamic batching hands `execute` several requests at once; requests whose tensors have the same
shapes (the orchestrator pads candidate counts to a few buckets for this) are concatenated along
the batch dimension and run in one ONNX Runtime call.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils


class RequestError(ValueError):
    """A request whose values are invalid; reported to that request's client only."""


class TritonPythonModel:
    #: Names the runtime in the errors it raises itself (not those about a request's values).
    runtime = "onnxruntime"

    def initialize(self, args: dict) -> None:
        version_dir = Path(args["model_repository"]) / args["model_version"]
        self.io = json.loads((version_dir / "io.json").read_text())
        self.input_names = [t["name"] for t in self.io["inputs"]]
        self.output_names = [t["name"] for t in self.io["outputs"]]
        self.max_candidates = self.io.get("max_candidates")
        self.session = self.open_session(version_dir, args)

    def open_session(self, version_dir: Path, args: dict):
        """The runtime: anything with ONNX Runtime's `run(output_names, feed) -> outputs`."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("PHOENIX_ORT_THREADS", "0"))
        options.inter_op_num_threads = 1
        # Idle intra-op threads spin-wait by default; with three models and the orchestrator on a
        # few cores, the spinning of one model's threads slows the next model down.
        spin = os.environ.get("PHOENIX_ORT_SPIN", "0")
        options.add_session_config_entry("session.intra_op.allow_spinning", spin)
        return ort.InferenceSession(
            str(version_dir / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )

    def execute(self, requests: list) -> list:
        responses: list = [None] * len(requests)
        groups: dict[tuple, list[tuple[int, dict[str, np.ndarray]]]] = {}
        for i, request in enumerate(requests):
            try:
                arrays = self._read(request)
            except RequestError as exc:
                responses[i] = _error(str(exc), invalid_argument=True)
                continue
            key = tuple(arrays[name].shape[1:] for name in self.input_names)
            groups.setdefault(key, []).append((i, arrays))
        for members in groups.values():
            for i, response in zip([m[0] for m in members], self._run(members), strict=True):
                responses[i] = response
        return responses

    def _read(self, request) -> dict[str, np.ndarray]:
        arrays = {}
        for spec in self.io["inputs"]:
            tensor = pb_utils.get_input_tensor_by_name(request, spec["name"])
            if tensor is None:
                raise RequestError(f"{spec['name']}: missing input")
            arrays[spec["name"]] = tensor.as_numpy()
        _check_shapes(self.io["inputs"], arrays, self.max_candidates)
        for spec in self.io["inputs"]:
            _check_values(spec, arrays[spec["name"]])
        return arrays

    def _run(self, members: list[tuple[int, dict[str, np.ndarray]]]) -> list:
        sizes = [arrays[self.input_names[0]].shape[0] for _, arrays in members]
        feed = {
            name: np.concatenate([arrays[name] for _, arrays in members], axis=0)
            for name in self.input_names
        }
        try:
            outputs = self.session.run(self.output_names, feed)
        except Exception as exc:  # the runtime's own errors: report, keep serving
            return [_error(f"{self.runtime}: {exc}") for _ in members]
        responses = []
        start = 0
        for size in sizes:
            tensors = [
                pb_utils.Tensor(name, np.ascontiguousarray(out[start : start + size]))
                for name, out in zip(self.output_names, outputs, strict=True)
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += size
        return responses


def _check_shapes(specs: list, arrays: dict[str, np.ndarray], max_candidates: int | None) -> None:
    """dtype and fixed dims per input; one batch size and one candidate count across inputs."""
    first: tuple[str, int] | None = None  # (input, batch size)
    candidates: tuple[str, int] | None = None  # (input, candidate count)
    for spec in specs:
        name, array, shape = spec["name"], arrays[spec["name"]], spec["shape"]
        if array.dtype != np.dtype(spec["dtype"]):
            raise RequestError(f"{name}: dtype {array.dtype}, expected {spec['dtype']}")
        if array.ndim != 1 + len(shape) or any(
            want not in (-1, got) for want, got in zip(shape, array.shape[1:], strict=True)
        ):
            raise RequestError(
                f"{name}: shape {list(array.shape)}, expected [batch, "
                + ", ".join("-1" if d == -1 else str(d) for d in shape)
                + "]"
            )
        if first is None:
            first = (name, array.shape[0])
        elif array.shape[0] != first[1]:
            raise RequestError(
                f"{name}: batch size {array.shape[0]} differs from {first[0]}'s {first[1]}"
            )
        axis = spec.get("candidates_axis")
        if axis is None:
            continue
        count = array.shape[1 + axis]
        if count < 1:
            raise RequestError(f"{name}: at least one candidate is needed")
        if max_candidates is not None and count > max_candidates:
            raise RequestError(f"{name}: {count} candidates exceed the limit of {max_candidates}")
        if candidates is None:
            candidates = (name, count)
        elif count != candidates[1]:
            raise RequestError(
                f"{name}: {count} candidates where {candidates[0]} has {candidates[1]}"
            )


def _check_values(spec: dict, array: np.ndarray) -> None:
    name = spec["name"]
    rows = spec.get("rows")  # [first, last] valid non-zero row, 0 is padding
    if rows is not None and array.size:
        bad = (array != 0) & ((array < rows[0]) | (array > rows[1]))
        if bad.any():
            raise RequestError(
                f"{name}: rows must be 0 (padding) or in [{rows[0]}, {rows[1]}], "
                f"got {int(array[bad].flat[0])}"
            )
    upper = spec.get("below")  # values must be in [0, below)
    if upper is not None and array.size and (array.min() < 0 or array.max() >= upper):
        raise RequestError(f"{name}: values must be in [0, {upper})")
    if spec.get("nonnegative") and array.size and array.min() < 0:
        raise RequestError(f"{name}: values must be >= 0, got {array.min()}")
    if spec.get("finite") and array.size and not np.isfinite(array).all():
        raise RequestError(f"{name}: values must be finite (no NaN or infinity)")
    if spec.get("binary") and array.size and not np.isin(array, (0.0, 1.0)).all():
        raise RequestError(f"{name}: values must be 0 or 1")


def _error(message: str, *, invalid_argument: bool = False):
    """An error response: INVALID_ARG for a bad request (gRPC INVALID_ARGUMENT, HTTP 400), else
    the backend's default INTERNAL."""
    code = getattr(pb_utils.TritonError, "INVALID_ARG", None) if invalid_argument else None
    error = pb_utils.TritonError(message) if code is None else pb_utils.TritonError(message, code)
    return pb_utils.InferenceResponse(output_tensors=[], error=error)
