"""Building a TensorRT engine (`model.plan`) from an exported ONNX graph.

Written against the public TensorRT 10 Python API. TensorRT cannot be installed on every machine
(it is not on PyPI proper and needs an NVIDIA GPU), so `require_tensorrt` fails first, with the
reason and the way out, and everything that does not need TensorRT itself (profiles, metadata,
config) is plain Python tested everywhere.

Precision: fp16 or bf16 for the matrix work, with the layers where precision matters kept in fp32:
softmax and every layer of the norms, under PREFER_PRECISION_CONSTRAINTS. The dynamo exporter
names nodes after the aten op (`node_mean_3`), not the module, so the norm nodes are found by the
module path it records in each node's `namespace` metadata (`...trunk.blocks.0.attn_norm:
export.models.layers.RMSNorm/mean: aten.mean.dim`), and the TensorRT layers by the ONNX output
tensor names (which the parser keeps) or node names. A timing cache file is read before and
written after the build, so rebuilding the same shapes on the same GPU is fast; a cache from
another TensorRT version or GPU is ignored with a warning.

`engine.json`, written beside the plan, says what the engine was built with and for: TensorRT
version, GPU and compute capability, CUDA runtime, precision, profiles, how many layers were
kept in fp32, and the plan's size and sha256; `parity` is filled in by whoever checks the engine
against PyTorch after the build (`dataclasses.replace` + `write_engine_metadata`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from export.repository.model_config import TensorLike
from export.tensorrt.profiles import ProfileLimits, shape_ranges
from phoenix.errors import ExportError
from phoenix.files import write_atomically

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "bf16")


def require_tensorrt() -> Any:
    """The `tensorrt` module, or an ExportError saying why a TensorRT build cannot run here."""
    try:
        import tensorrt as trt
    except ImportError:
        raise ExportError(
            "--target tensorrt needs TensorRT's Python package and an NVIDIA GPU, and `tensorrt` "
            "does not import here. Build inside NVIDIA's Triton container (it ships TensorRT), or "
            "install tensorrt-cu12/-cu13 from NVIDIA's index on a GPU host; on this machine use "
            "--target cpu (or --target onnxruntime for the container's ONNX Runtime backend)."
        ) from None
    if not _gpu_present():
        raise ExportError(
            f"TensorRT {trt.__version__} imports but no NVIDIA GPU is visible: engines are "
            "built for the GPU that builds them. Run the export on the serving GPU host."
        )
    return trt


def _gpu_present() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


@dataclass(frozen=True)
class EngineMetadata:
    """Written beside the plan as `engine.json` (see `write_engine_metadata`).

    An engine runs only with the TensorRT version and the GPU model (compute capability) that
    built it; these fields say which. `layers_kept_fp32` counts the network layers constrained to
    fp32 under fp16/bf16 (None for an fp32 build, where every layer is fp32 anyway), out of
    `layers_total`. `parity` is None until the engine has been checked against PyTorch; the
    check fills it (its own keys, e.g. the largest |difference| and the tolerance).
    """

    tensorrt_version: str
    gpu: str
    compute_capability: str
    cuda_version: str
    precision: str
    profiles: dict[str, dict[str, list[int]]]
    build_seconds: float
    onnx_file: str
    layers_kept_fp32: int | None
    layers_total: int
    plan_bytes: int
    plan_sha256: str
    parity: dict[str, float] | None = None


def write_engine_metadata(path: Path, metadata: EngineMetadata) -> None:
    """Write `metadata` as JSON at `path` (normally `engine.json` beside the plan), atomically."""
    write_atomically(path, json.dumps(asdict(metadata), indent=2) + "\n")


def build_engine(
    onnx_path: Path,
    plan_path: Path,
    inputs: Sequence[TensorLike],
    limits: ProfileLimits,
    *,
    precision: str = "fp16",
    timing_cache: Path | None = None,
    workspace_gib: float = 8.0,
) -> EngineMetadata:
    """Parse the ONNX graph, build a serialized engine with one profile, write plan + metadata."""
    if precision not in PRECISIONS:
        raise ExportError(f"--precision: {precision!r} is not one of {', '.join(PRECISIONS)}")
    trt = require_tensorrt()
    started = time.perf_counter()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT could not parse {onnx_path}: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    layers_total = network.num_layers
    layers_kept_fp32: int | None = None
    if precision != "fp32":
        config.set_flag(trt.BuilderFlag.FP16 if precision == "fp16" else trt.BuilderFlag.BF16)
        config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
        layers_kept_fp32, layers_total = _keep_sensitive_layers_fp32(
            trt, network, *precision_sensitive(onnx_path)
        )

    ranges = shape_ranges(inputs, limits)
    network_inputs = {network.get_input(i).name for i in range(network.num_inputs)}
    if network_inputs != set(ranges):
        raise ExportError(
            f"{onnx_path}: the graph's inputs {sorted(network_inputs)} differ from the model's "
            f"{sorted(ranges)}; every input needs a shape range"
        )
    profile = builder.create_optimization_profile()
    for name, r in ranges.items():
        profile.set_shape(name, r.min, r.opt, r.max)
    config.add_optimization_profile(profile)

    _load_timing_cache(config, timing_cache)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT failed to build an engine from {onnx_path} (see its log)")
    plan = bytes(serialized)
    plan_path.write_bytes(plan)
    if timing_cache is not None:
        write_atomically(timing_cache, bytes(config.get_timing_cache().serialize()))

    metadata = EngineMetadata(
        tensorrt_version=trt.__version__,
        gpu=_gpu_name(),
        compute_capability=_compute_capability(),
        cuda_version=_cuda_version(),
        precision=precision,
        profiles={n: {k: list(v) for k, v in asdict(r).items()} for n, r in ranges.items()},
        build_seconds=round(time.perf_counter() - started, 1),
        onnx_file=onnx_path.name,
        layers_kept_fp32=layers_kept_fp32,
        layers_total=layers_total,
        plan_bytes=len(plan),
        plan_sha256=hashlib.sha256(plan).hexdigest(),
    )
    write_engine_metadata(plan_path.parent / "engine.json", metadata)
    log.info("built %s (%s) in %.1f s", plan_path, precision, metadata.build_seconds)
    return metadata


def _load_timing_cache(config: Any, path: Path | None) -> None:
    """Attach the timing cache stored at `path` (a fresh one when absent or unusable)."""
    blob = path.read_bytes() if path is not None and path.is_file() else b""
    cache = config.create_timing_cache(blob)
    if config.set_timing_cache(cache, ignore_mismatch=False):
        return
    # A cache from another TensorRT version or GPU: timings from elsewhere would mislead tactic
    # selection, so start afresh (and overwrite the file after the build).
    log.warning("timing cache %s does not fit this TensorRT/GPU; starting a fresh one", path)
    if not config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False):
        raise ExportError("TensorRT refused a fresh timing cache")


def precision_sensitive(onnx_path: Path) -> tuple[set[str], set[str]]:
    """(node names, output tensor names) of the ONNX nodes to keep in fp32: softmax and norms.

    A node belongs to a norm when its name, or the module path the exporter records in its
    `namespace` metadata (everything but the last segment, which names the op), mentions "norm".
    """
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    nodes: set[str] = set()
    tensors: set[str] = set()
    for node in graph.node:
        namespace = next((p.value for p in node.metadata_props if p.key == "namespace"), "")
        modules = namespace.rsplit("/", 1)[0] if "/" in namespace else ""
        if node.op_type == "Softmax" or "norm" in node.name.lower() or "norm" in modules.lower():
            nodes.add(node.name)
            tensors.update(name for name in node.output if name)
    return nodes, tensors


def _keep_sensitive_layers_fp32(
    trt: Any, network: Any, node_names: set[str], tensor_names: set[str]
) -> tuple[int, int]:
    """Softmax and norm layers compute in fp32 whatever the engine's precision.

    A layer is matched by type (softmax), by an output tensor named like a sensitive ONNX output,
    or by the name of a sensitive ONNX node. Only layers with a floating-point output are
    constrained (a norm's Shape layer has nothing to keep in fp32). Returns (layers constrained
    to fp32, layers in the network).
    """
    floats = (trt.float16, trt.bfloat16, trt.float32)
    kept = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        outputs = [layer.get_output(j) for j in range(layer.num_outputs)]
        if not (
            layer.type == trt.LayerType.SOFTMAX
            or layer.name in node_names
            or any(out.name in tensor_names for out in outputs)
        ):
            continue
        float_outputs = [j for j, out in enumerate(outputs) if out.dtype in floats]
        if not float_outputs:
            continue
        layer.precision = trt.float32
        for j in float_outputs:
            layer.set_output_type(j, trt.float32)
        kept += 1
    log.info("kept %d of %d layers in fp32 (softmax and norms)", kept, network.num_layers)
    return kept, network.num_layers


def _gpu_name() -> str:
    try:
        import torch

        return torch.cuda.get_device_name(0)
    except Exception:  # metadata only: never fail a finished build over the GPU's name
        return "unknown"


def _compute_capability() -> str:
    """The building GPU's compute capability, "9.0" for an H100: a plan runs only on its own."""
    try:
        import torch

        major, minor = torch.cuda.get_device_capability(0)
        return f"{major}.{minor}"
    except Exception:  # metadata only, like the name
        return "unknown"


def _cuda_version() -> str:
    """The CUDA runtime version torch was built with ("12.8"), as torch reports it."""
    try:
        import torch

        return torch.version.cuda or "unknown"
    except Exception:  # metadata only, like the name
        return "unknown"
