"""Running a serialized TensorRT engine (`model.plan`) on the GPU, to check it after the build.

Written against the public TensorRT 10 Python API, with PyTorch tensors as the device buffers and
a PyTorch CUDA stream for `execute_async_v3` (torch is present wherever engines are built, and it
saves a dependency on cuda-python or pycuda). The device is a parameter so that the tests can run
the whole path on the CPU against a fake `tensorrt` module.

Every input is checked before anything reaches TensorRT: present, of the engine's rank, inside the
engine's optimization profile 0 (the only one `build_engine` makes) and of a compatible dtype
(same kind: integer, floating point or bool; integers must fit the engine's width). The engine's
own I/O dtypes decide the buffers; floating-point outputs (fp16 and bf16 included) come back as
float32 NumPy arrays, in the order of `output_names`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from export.tensorrt.builder import require_tensorrt
from phoenix.errors import ExportError

log = logging.getLogger(__name__)

#: TensorRT dtype (member of `trt.DataType`) -> (torch dtype, NumPy dtype of the host copy).
#: NumPy has no bfloat16: a bf16 tensor is held in float32 on the host.
_DTYPES = {
    "FLOAT": ("float32", np.float32),
    "HALF": ("float16", np.float16),
    "BF16": ("bfloat16", np.float32),
    "INT64": ("int64", np.int64),
    "INT32": ("int32", np.int32),
    "INT8": ("int8", np.int8),
    "UINT8": ("uint8", np.uint8),
    "BOOL": ("bool", np.bool_),
}


@dataclass(frozen=True)
class _Tensor:
    """One engine input or output: its buffer dtype and, for inputs, the shapes it accepts."""

    name: str
    dtype: Any  # torch.dtype
    host_dtype: np.dtype
    declared: tuple[int, ...]  # the engine's shape, -1 where dynamic
    min: tuple[int, ...]
    max: tuple[int, ...]


class EngineRunner:
    """A TensorRT engine, deserialized once, run on feeds of NumPy arrays.

    `output_names` are the outputs returned, in that order; the engine may have others (they get
    buffers, as TensorRT needs, and are dropped). `device` is where the buffers live ("cuda", or
    "cuda:1"; "cpu" only for tests with a fake TensorRT), `stream` the stream the engine runs on
    (by default a new `torch.cuda.Stream` on `device`; anything with `cuda_stream` and
    `synchronize()`). One runner holds one execution context: calls must not overlap.
    """

    def __init__(
        self,
        plan_path: Path,
        output_names: Sequence[str],
        *,
        device: str = "cuda",
        stream: Any | None = None,
    ) -> None:
        trt = require_tensorrt()
        import torch

        self._torch = torch
        self.plan_path = plan_path
        self._device = torch.device(device)
        if not plan_path.is_file():
            raise ExportError(f"{plan_path}: no TensorRT engine there")

        # TensorRT needs the logger and the runtime alive as long as the engine: keep all three.
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        try:
            engine = self._runtime.deserialize_cuda_engine(plan_path.read_bytes())
        except Exception as exc:  # the bindings raise on some malformed plans, return None on most
            raise ExportError(f"TensorRT could not deserialize {plan_path}: {exc}") from exc
        if engine is None:
            raise ExportError(
                f"TensorRT {trt.__version__} could not deserialize {plan_path} (see its log "
                "above): a plan runs only with the TensorRT version and GPU model that built it "
                "(engine.json beside it says which)"
            )
        self._engine = engine

        dtypes = {
            getattr(trt.DataType, key): (getattr(torch, name), np.dtype(host))
            for key, (name, host) in _DTYPES.items()
            if hasattr(trt.DataType, key)
        }
        self._inputs: dict[str, _Tensor] = {}
        self._outputs: dict[str, _Tensor] = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            trt_dtype = engine.get_tensor_dtype(name)
            if trt_dtype not in dtypes:
                raise ExportError(
                    f"{plan_path}: tensor {name!r} has TensorRT dtype {trt_dtype}, which the "
                    f"runner does not handle (it handles {', '.join(_DTYPES)})"
                )
            torch_dtype, host_dtype = dtypes[trt_dtype]
            declared = tuple(int(d) for d in engine.get_tensor_shape(name))
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                lo, hi = _profile_bounds(engine, name, declared)
                self._inputs[name] = _Tensor(name, torch_dtype, host_dtype, declared, lo, hi)
            else:
                self._outputs[name] = _Tensor(
                    name, torch_dtype, host_dtype, declared, declared, declared
                )

        unknown = [name for name in output_names if name not in self._outputs]
        if unknown:
            raise ExportError(
                f"output_names: {', '.join(map(repr, unknown))} not among the outputs of "
                f"{plan_path} ({', '.join(sorted(self._outputs))})"
            )
        if len(set(output_names)) != len(output_names):
            raise ExportError(f"output_names: {list(output_names)} names an output twice")
        self.output_names = tuple(output_names)

        self._context = engine.create_execution_context()
        if self._context is None:
            raise ExportError(
                f"TensorRT could not create an execution context for {plan_path} (GPU memory?)"
            )
        self._stream = stream if stream is not None else torch.cuda.Stream(device=self._device)

    @property
    def input_names(self) -> tuple[str, ...]:
        """The engine's inputs, in its own order: the keys `__call__` needs."""
        return tuple(self._inputs)

    def profile_bounds(self, name: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(smallest, largest) shape the engine accepts for input `name`."""
        spec = self._input(name)
        return spec.min, spec.max

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Run the engine once; the outputs named in `output_names`, in that order, on the host.

        Floating-point outputs come back as float32 whatever the engine computes them in; integer
        and bool outputs keep their dtype.
        """
        torch = self._torch
        unexpected = sorted(set(feeds) - set(self._inputs))
        if unexpected:
            raise ExportError(
                f"feeds: {', '.join(map(repr, unexpected))} not among the inputs of "
                f"{self.plan_path} ({', '.join(self._inputs)})"
            )
        hosts = {name: self._host_array(spec, feeds) for name, spec in self._inputs.items()}

        context = self._context
        with self._on_stream():
            buffers = {
                name: torch.from_numpy(array).to(
                    device=self._device, dtype=self._inputs[name].dtype
                )
                for name, array in hosts.items()
            }
            for name, tensor in buffers.items():
                if not context.set_input_shape(name, tuple(tensor.shape)):
                    raise ExportError(
                        f"{name}: TensorRT refused the shape {tuple(tensor.shape)} (see its log)"
                    )
            outputs = {}
            for name, spec in self._outputs.items():
                shape = tuple(int(d) for d in context.get_tensor_shape(name))
                if any(d < 0 for d in shape):
                    raise ExportError(
                        f"{name}: the engine cannot tell this output's shape from the input "
                        f"shapes ({shape}); data-dependent output shapes are not supported"
                    )
                outputs[name] = torch.empty(shape, dtype=spec.dtype, device=self._device)
            for name, tensor in {**buffers, **outputs}.items():
                if not context.set_tensor_address(name, tensor.data_ptr()):
                    raise ExportError(f"{name}: TensorRT refused the buffer's address")
            if not context.execute_async_v3(self._stream.cuda_stream):
                raise ExportError(
                    f"TensorRT failed to run {self.plan_path}: execute_async_v3 returned False "
                    "(see its log)"
                )
            self._stream.synchronize()
        return [_to_host(outputs[name]) for name in self.output_names]

    def _input(self, name: str) -> _Tensor:
        try:
            return self._inputs[name]
        except KeyError:
            raise ExportError(
                f"{name!r} is not an input of {self.plan_path} ({', '.join(self._inputs)})"
            ) from None

    def _host_array(self, spec: _Tensor, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        """The feed for `spec`, checked against the engine, as a fresh C-contiguous host array."""
        name = spec.name
        if name not in feeds:
            raise ExportError(
                f"{name}: missing from the feeds; {self.plan_path} takes {', '.join(self._inputs)}"
            )
        array = np.asarray(feeds[name])
        shape = tuple(array.shape)
        if len(shape) != len(spec.declared):
            raise ExportError(
                f"{name}: rank {len(shape)} (shape {shape}); the engine takes rank "
                f"{len(spec.declared)} (shape {spec.declared}, -1 where dynamic)"
            )
        if not all(lo <= d <= hi for lo, d, hi in zip(spec.min, shape, spec.max, strict=True)):
            raise ExportError(
                f"{name}: shape {shape} is outside the engine's optimization profile "
                f"(from {spec.min} to {spec.max})"
            )
        _check_dtype(spec, array)
        return np.array(array, dtype=spec.host_dtype, order="C", copy=True)

    def _on_stream(self) -> contextlib.AbstractContextManager[Any]:
        """Make the runner's stream current (a CUDA device), so copies and the engine share it."""
        if self._device.type == "cuda":
            return self._torch.cuda.stream(self._stream)
        return contextlib.nullcontext()


def _profile_bounds(
    engine: Any, name: str, declared: tuple[int, ...]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(min, max) shape of input `name`: its fixed shape, or profile 0's range when dynamic."""
    if all(d >= 0 for d in declared):
        return declared, declared
    lo, _opt, hi = engine.get_tensor_profile_shape(name, 0)
    return tuple(int(d) for d in lo), tuple(int(d) for d in hi)


def _kind(dtype: np.dtype) -> str:
    """The dtype's kind: int (signed or unsigned), float or bool; any other dtype's name."""
    if dtype.kind in "iu":
        return "int"
    if dtype.kind == "f":
        return "float"
    if dtype.kind == "b":
        return "bool"
    return dtype.name


def _check_dtype(spec: _Tensor, array: np.ndarray) -> None:
    """Refuse a feed whose dtype the engine's cannot hold without changing its values' meaning."""
    want = "float" if spec.dtype.is_floating_point else _kind(spec.host_dtype)
    have = _kind(array.dtype)
    if have != want:
        raise ExportError(
            f"{spec.name}: dtype {array.dtype}, but the engine takes {spec.dtype} "
            f"({want}, not {have})"
        )
    if want == "int" and array.size:
        info = np.iinfo(spec.host_dtype)
        lo, hi = int(array.min()), int(array.max())
        if lo < info.min or hi > info.max:
            raise ExportError(
                f"{spec.name}: values from {lo} to {hi} do not fit the engine's {spec.dtype}"
            )


def _to_host(tensor: Any) -> np.ndarray:
    if tensor.dtype.is_floating_point:
        tensor = tensor.float()
    return tensor.cpu().numpy()
