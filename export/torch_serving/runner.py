"""Running a Triton model's PyTorch module for serving: bf16 on CUDA, one CUDA graph per shape.

For a GPU without TensorRT. The module is the same fixed-signature wrapper the ONNX graph is
exported from (`export.onnx.wrappers`), cast with `cast_for_inference` (norms and rotary
frequencies stay fp32). On CUDA each call is padded up to a (batch, candidates) bucket and replays
the CUDA graph captured for it: one launch instead of several hundred kernel launches, which is
what bounds a small ranker's latency in eager mode. Calls larger than every bucket run eagerly.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from torch import Tensor, nn

from export.checkpoint import Checkpoint, load_checkpoint
from export.models.precision import cast_for_inference
from export.onnx.wrappers import RANKER, TensorSpec, model_io, wrap
from export.torch_serving.buckets import (
    ShapeBuckets,
    copy_padded,
    empty_inputs,
    shape_of,
    unpad,
)
from phoenix.errors import ConfigError, InputError

log = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
#: Eager calls on a side stream before a capture: lazy initialisation (cuBLAS workspaces,
#: autotuning) must not happen inside the graph.
WARMUP_CALLS = 2

#: config.pbtxt parameter -> `TorchServingOptions` field.
PARAMETERS = {
    "precision": "precision",
    "device": "device",
    "cuda_graphs": "cuda_graphs",
    "cuda_graph_batch_sizes": "graph_batch_sizes",
    "cuda_graph_candidates": "graph_candidates",
}


class TorchServingOptions(BaseModel):
    """How a `pytorch`-target model runs; read from its config.pbtxt parameters."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    precision: Literal["fp32", "fp16", "bf16"] = "bf16"
    device: str = Field(default="auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    #: None: on when the device is CUDA. True on a CPU pads to the buckets without capturing.
    cuda_graphs: bool | None = None
    #: None: powers of two up to max_batch_size.
    graph_batch_sizes: tuple[int, ...] | None = None
    #: None: the orchestrator's candidate buckets up to the candidate limit.
    graph_candidates: tuple[int, ...] | None = None
    threads: int = Field(default=0, ge=0, le=1024)

    @field_validator("graph_batch_sizes", "graph_candidates", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(",") if p.strip()]
            return tuple(sorted({int(p) for p in parts})) if parts else None
        return value

    @field_validator("graph_batch_sizes", "graph_candidates")
    @classmethod
    def _positive(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None and min(value) < 1:
            raise ValueError(f"sizes must be positive, got {list(value)}")
        return value

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, str], **extra: object) -> TorchServingOptions:
        """Options from config.pbtxt string parameters (other parameters are not ours)."""
        values = {field: parameters[key] for key, field in PARAMETERS.items() if key in parameters}
        try:
            return cls(**values, **extra)
        except (ValidationError, ValueError) as exc:
            raise ConfigError(f"pytorch target parameters: {exc}") from exc

    def buckets(self, max_batch: int, max_candidates: int | None) -> ShapeBuckets:
        default = ShapeBuckets.default(max_batch, max_candidates)
        batch = self.graph_batch_sizes or default.batch_sizes
        counts = default.candidate_counts if max_candidates is not None else ()
        if max_candidates is not None and self.graph_candidates:
            counts = self.graph_candidates
        if batch[-1] > max_batch or (counts and counts[-1] > (max_candidates or 0)):
            raise ConfigError(
                f"cuda_graph_batch_sizes/cuda_graph_candidates: {list(batch)} x {list(counts)} "
                f"exceed max_batch_size {max_batch} or the candidate limit {max_candidates}"
            )
        return ShapeBuckets(batch, counts)

    def to_parameters(self) -> dict[str, str]:
        """The config.pbtxt parameters that reproduce these options (None fields left out)."""
        out = {}
        for key, field in PARAMETERS.items():
            value = getattr(self, field)
            if value is None:
                continue
            if isinstance(value, tuple):
                value = ",".join(str(v) for v in value)
            out[key] = str(value).lower() if isinstance(value, bool) else str(value)
        return out


def resolve_device(name: str) -> torch.device:
    """`auto` is the first CUDA device when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device: {name!r} asked for, but PyTorch sees no CUDA device here (export for "
            "another host with --no-verify, or export on the serving host)"
        )
    return device


@dataclass
class _Slot:
    """One bucket: static input buffers, and on CUDA the captured graph and its outputs."""

    inputs: list[Tensor]
    graph: torch.cuda.CUDAGraph | None = None
    outputs: tuple[Tensor, ...] = ()


class TorchRunner:
    """Runs one Triton model's module: inputs by name (NumPy) -> outputs in `model_io` order."""

    def __init__(
        self,
        kind: str,
        checkpoint: Checkpoint,
        *,
        max_batch: int,
        max_candidates: int | None,
        options: TorchServingOptions | None = None,
    ) -> None:
        options = options or TorchServingOptions()
        self.kind = kind
        self.options = options
        self.device = resolve_device(options.device)
        self.dtype = DTYPES[options.precision]
        self.inputs, self.outputs = model_io(kind, checkpoint.config_for(kind))
        # A copy: casting works in place, and the caller's checkpoint must stay as it was.
        module = copy.deepcopy(wrap(kind, checkpoint)).to(self.device)
        self._module: nn.Module = cast_for_inference(module, self.dtype).eval()
        if options.threads and self.device.type == "cpu":
            torch.set_num_threads(options.threads)
        graphs = options.cuda_graphs
        self.static_shapes = graphs if graphs is not None else self.device.type == "cuda"
        self.captures = self.static_shapes and self.device.type == "cuda"
        self.buckets = options.buckets(max_batch, max_candidates if kind == RANKER else None)
        self._slots: dict[tuple[int, int], _Slot] = {}
        self._pool = torch.cuda.graph_pool_handle() if self.captures else None

    @classmethod
    def from_version_dir(
        cls,
        kind: str,
        version_dir: Path,
        parameters: Mapping[str, str],
        *,
        max_batch: int,
        max_candidates: int | None,
        threads: int = 0,
    ) -> TorchRunner:
        """The runner a `pytorch`-target version serves with, warmed up: its checkpoint, with the
        options its config.pbtxt `parameters` give (the served model and the benchmark's
        in-process path both build it here, so they run alike)."""
        options = TorchServingOptions.from_parameters(parameters, threads=threads)
        runner = cls(
            kind,
            load_checkpoint(version_dir),
            max_batch=max_batch,
            max_candidates=max_candidates,
            options=options,
        )
        runner.warm_up()
        return runner

    @property
    def graphs_captured(self) -> int:
        return sum(slot.graph is not None for slot in self._slots.values())

    def warm_up(self) -> float:
        """Prepare every bucket (capturing its graph on CUDA); the seconds it took."""
        started = time.perf_counter()
        if self.static_shapes:
            for key in self.buckets.shapes():
                self._slot(key)
        seconds = time.perf_counter() - started
        log.info(
            "%s: %d buckets ready on %s (%s, %d CUDA graphs) in %.1f s",
            self.kind,
            len(self._slots),
            self.device,
            self.options.precision,
            self.graphs_captured,
            seconds,
        )
        return seconds

    def run(self, output_names: Sequence[str], feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """ONNX Runtime's session interface, so the Python-backend model drives either runtime."""
        outputs = dict(zip((spec.name for spec in self.outputs), self(feeds), strict=True))
        try:
            return [outputs[name] for name in output_names]
        except KeyError as exc:
            raise InputError(f"output_names: {self.kind} has no output {exc}") from None

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Inputs by name -> every output, in `model_io` order, as float32 arrays."""
        args = [_tensor(feeds, spec) for spec in self.inputs]
        batch, candidates = shape_of(self.inputs, args)
        with torch.inference_mode():
            key = self.buckets.pick(batch, candidates) if self.static_shapes else None
            if key is None:
                outputs = self._eager(args)
            else:
                outputs = self._replay(self._slot(key), args, batch, candidates)
            return [out.float().cpu().numpy() for out in outputs]

    def _eager(self, args: list[Tensor]) -> tuple[Tensor, ...]:
        return _as_tuple(self._module(*(arg.to(self.device) for arg in args)))

    def _replay(self, slot: _Slot, args: list[Tensor], batch: int, candidates: int) -> list[Tensor]:
        for buffer, arg in zip(slot.inputs, args, strict=True):
            copy_padded(buffer, arg)
        if slot.graph is not None:
            slot.graph.replay()
            outputs = slot.outputs
        else:
            outputs = _as_tuple(self._module(*slot.inputs))
        pairs = zip(outputs, self.outputs, strict=True)
        return [unpad(out, spec, batch, candidates) for out, spec in pairs]

    def _slot(self, key: tuple[int, int]) -> _Slot:
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = self._prepare(*key)
        return slot

    def _prepare(self, batch: int, candidates: int) -> _Slot:
        inputs = empty_inputs(self.inputs, batch, candidates, self.device)
        if not self.captures:
            return _Slot(inputs)
        with torch.inference_mode():
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(WARMUP_CALLS):
                    self._module(*inputs)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            # One pool for every graph: the stub replays one graph at a time and each call's
            # outputs are copied out before the next replay, so the graphs may share memory.
            with torch.cuda.graph(graph, pool=self._pool):
                outputs = _as_tuple(self._module(*inputs))
        return _Slot(inputs, graph, outputs)


def _tensor(feeds: Mapping[str, np.ndarray], spec: TensorSpec) -> Tensor:
    try:
        array = feeds[spec.name]
    except KeyError:
        raise InputError(f"{spec.name}: missing input") from None
    # Triton hands read-only arrays; torch.from_numpy wants a writable one (copied only then).
    return torch.from_numpy(np.require(array, requirements=["C", "W"]))


def _as_tuple(out: Tensor | tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    return out if isinstance(out, tuple) else (out,)


__all__ = ["DTYPES", "TorchRunner", "TorchServingOptions", "resolve_device"]
