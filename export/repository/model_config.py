"""config.pbtxt for each target, built as Triton's own `ModelConfig` protobuf.

Building the message with the schema that tritonclient ships (rather than formatting text by hand)
means every generated file is known to parse, and a misspelt field fails at export time.

Targets:
- `cpu`: Python backend running ONNX Runtime (`python_model.py`), for the `tritonserver` binary
  carried by nvidia-pytriton (Python backend only);
- `onnxruntime`: the ONNX Runtime backend of NVIDIA's Triton container, loading `model.onnx`;
- `tensorrt`: the TensorRT backend of the container, loading `model.plan` (GPU only);
- `pytorch`: Python backend running the PyTorch module (`torch_model.py`), bf16 with CUDA graphs
  on a GPU without TensorRT, for the wheel's `tritonserver`. Its instances are KIND_CPU to Triton:
  the model places itself on the device its `device` parameter names (Triton's KIND_GPU would
  refuse to load on a machine without a GPU, where the same repository serves on the CPU).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Protocol

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc


class Target(str, Enum):
    CPU = "cpu"
    ONNXRUNTIME = "onnxruntime"
    TENSORRT = "tensorrt"
    PYTORCH = "pytorch"


#: The file each target's version directory serves.
MODEL_FILES = {
    Target.CPU: "model.onnx",
    Target.ONNXRUNTIME: "model.onnx",
    Target.TENSORRT: "model.plan",
    Target.PYTORCH: "model.safetensors",
}

_DTYPES = {
    "int64": mc.TYPE_INT64,
    "int32": mc.TYPE_INT32,
    "float32": mc.TYPE_FP32,
    "float16": mc.TYPE_FP16,
    "bfloat16": mc.TYPE_BF16,
    "bool": mc.TYPE_BOOL,
}


class TensorLike(Protocol):
    """What the config needs of a tensor: its name, numpy dtype name and per-item shape."""

    name: str
    dtype: str
    shape: tuple[int, ...]


def build_model_config(
    name: str,
    target: Target,
    inputs: Sequence[TensorLike],
    outputs: Sequence[TensorLike],
    *,
    max_batch_size: int,
    max_queue_delay_us: int = 2000,
    instances: int = 1,
    parameters: Mapping[str, str] | None = None,
) -> mc.ModelConfig:
    """The ModelConfig of one model: batched, dynamically batched, serving the latest version.

    `parameters` become the config's string parameters, which clients read back through Triton's
    model-configuration API (the orchestrator takes the model config and the candidate limit from
    there, so its features always match the served model).
    """
    if max_batch_size < 1:
        # Every tensor spec leaves the batch dimension out; 0 would make Triton read them unbatched.
        raise ValueError(f"{name}: max_batch_size must be at least 1, got {max_batch_size}")
    config = mc.ModelConfig(name=name, max_batch_size=max_batch_size)
    if target in (Target.CPU, Target.PYTORCH):
        config.backend = "python"
    elif target is Target.ONNXRUNTIME:
        config.platform = "onnxruntime_onnx"
        config.default_model_filename = MODEL_FILES[target]
    else:
        config.platform = "tensorrt_plan"
        config.default_model_filename = MODEL_FILES[target]
    for spec in inputs:
        config.input.add(name=spec.name, data_type=_dtype(spec), dims=list(spec.shape))
    for spec in outputs:
        config.output.add(name=spec.name, data_type=_dtype(spec), dims=list(spec.shape))
    config.dynamic_batching.SetInParent()  # present even when every field keeps its default
    config.dynamic_batching.max_queue_delay_microseconds = max_queue_delay_us
    # Two: the previous export's set keeps answering while the orchestrator switches sets.
    config.version_policy.latest.num_versions = 2
    kind = {
        Target.CPU: mc.ModelInstanceGroup.KIND_CPU,
        Target.ONNXRUNTIME: mc.ModelInstanceGroup.KIND_AUTO,
        Target.TENSORRT: mc.ModelInstanceGroup.KIND_GPU,
        Target.PYTORCH: mc.ModelInstanceGroup.KIND_CPU,
    }[target]
    config.instance_group.add(count=instances, kind=kind)
    for key, value in (parameters or {}).items():
        config.parameters[key].string_value = value
    return config


def to_pbtxt(config: mc.ModelConfig) -> str:
    return text_format.MessageToString(config)


def parse_pbtxt(text: str) -> mc.ModelConfig:
    """Parse config.pbtxt text; raises google.protobuf.text_format.ParseError when malformed."""
    return text_format.Parse(text, mc.ModelConfig())


def _dtype(spec: TensorLike) -> int:
    try:
        return _DTYPES[spec.dtype]
    except KeyError:
        raise ValueError(f"{spec.name}: dtype {spec.dtype!r} has no Triton type") from None
