"""`phoenix export`: a checkpoint into the three Triton models of a model repository.

For each model: produce what the target serves (the ONNX graph; a TensorRT engine built from it;
or, for `pytorch`, the checkpoint itself), check that runtime against PyTorch on random inputs
(`export.parity`), then publish the version directory as the next version (atomically, see
`writer.py`). The TensorRT target checks that TensorRT and a GPU are present before doing any
work.

The three models of one export form a set: they are published under one version number (one
above the highest of any of them) and their provenance.json names the set (`model_set`: an id and
that version). The orchestrator serves the newest version that all three have ready, asking
Triton for that version explicitly, so a feed never mixes models of two exports; Triton keeps the
two latest versions loaded (`version_policy`) so that the previous set still answers while the
orchestrator switches.
"""

from __future__ import annotations

import logging
import tempfile
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from export.checkpoint import CONFIG_FILE, WEIGHTS_FILE, Checkpoint, load_checkpoint
from export.onnx.exporter import export_onnx, verify_onnx
from export.onnx.wrappers import CANDIDATE_TOWER, MODEL_NAMES, RANKER, USER_TOWER, model_io
from export.parity import CANDIDATE_COUNTS, TOLERANCE_PER_UNIT, check_parity
from export.repository.manifest import io_manifest, provenance
from export.repository.model_config import Target, build_model_config, to_pbtxt
from export.repository.writer import VersionFiles, publish_version, versions
from export.tensorrt.builder import (
    PRECISIONS,
    build_engine,
    require_tensorrt,
    write_engine_metadata,
)
from export.tensorrt.profiles import ProfileLimits
from export.tensorrt.runtime import EngineRunner
from export.torch_serving.runner import TorchRunner, TorchServingOptions, resolve_device
from phoenix.config import ModelConfig
from phoenix.errors import ExportError
from phoenix.serving import (
    CANDIDATE_BUCKETS_PARAMETER,
    MAX_CANDIDATES_PARAMETER,
    MODEL_CONFIG_PARAMETER,
    cpu_candidate_buckets,
    format_buckets,
    gpu_candidate_buckets,
)

log = logging.getLogger(__name__)

PYTHON_MODEL_SOURCE = Path(__file__).with_name("python_model.py")
TORCH_MODEL_SOURCE = Path(__file__).with_name("torch_model.py")

#: Default max_batch_size per model: viewers per ranker call, viewers per user-tower call,
#: posts per candidate-tower call (index builds embed posts in large batches).
DEFAULT_MAX_BATCH = {RANKER: 16, USER_TOWER: 64, CANDIDATE_TOWER: 1024}
#: The dynamic batcher's wait for a fuller batch on the GPU targets (`default_queue_delay_us`).
GPU_QUEUE_DELAY_US = 2000


class ExportSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    target: Target = Target.CPU
    #: None: bf16 for the pytorch target, fp32 for the others.
    precision: Literal["fp32", "fp16", "bf16"] | None = None
    max_candidates: int = Field(default=1024, ge=1, le=65536)
    max_batch_size: int | None = Field(default=None, ge=1, le=65536)
    #: None: `default_queue_delay_us(target)`.
    max_queue_delay_us: int | None = Field(default=None, ge=0, le=1_000_000)
    keep_versions: int | None = Field(default=3, ge=1)
    verify: bool = True
    timing_cache: Path | None = None
    #: pytorch target: where the served model runs (auto: the first GPU when there is one).
    device: str = Field(default="auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    #: pytorch target: CUDA graphs per (batch, candidates) bucket (None: on when on CUDA).
    cuda_graphs: bool | None = None

    @property
    def resolved_queue_delay_us(self) -> int:
        if self.max_queue_delay_us is not None:
            return self.max_queue_delay_us
        return default_queue_delay_us(self.target)

    @property
    def resolved_precision(self) -> str:
        if self.precision is not None:
            return self.precision
        return "bf16" if self.target is Target.PYTORCH else "fp32"

    def torch_options(self) -> TorchServingOptions:
        return TorchServingOptions(
            precision=self.resolved_precision,  # type: ignore[arg-type]
            device=self.device,
            cuda_graphs=self.cuda_graphs,
        )


@dataclass(frozen=True)
class PublishedModel:
    name: str
    version: int
    parity_max_abs_diff: float | None
    runtime: str = "ONNX Runtime"  # what the parity check ran against PyTorch


def export_repository(
    checkpoint_dir: Path, repository: Path, settings: ExportSettings
) -> list[PublishedModel]:
    precision = settings.resolved_precision
    if settings.target not in (Target.TENSORRT, Target.PYTORCH) and precision != "fp32":
        raise ExportError(
            f"--precision {precision} needs --target tensorrt or pytorch; the ONNX Runtime "
            "targets serve the fp32 graph"
        )
    if settings.target is not Target.PYTORCH and (
        settings.device != "auto" or settings.cuda_graphs is not None
    ):
        raise ExportError("--device and --cuda-graphs apply to --target pytorch only")
    if settings.target is Target.TENSORRT:
        require_tensorrt()
    checkpoint = load_checkpoint(checkpoint_dir)
    config = checkpoint.config
    if settings.max_candidates > config.max_candidates:
        raise ExportError(
            f"--max-candidates {settings.max_candidates} exceeds the model config's "
            f"max_candidates ({config.max_candidates})"
        )
    repository.mkdir(parents=True, exist_ok=True)
    published = []
    with tempfile.TemporaryDirectory(prefix="phoenix-export-") as work:
        # Every model is built and checked before any is published: a model that fails its check
        # leaves the repository as it was, not with a new ranker beside old towers.
        built = {}
        # disable=None: a bar on a terminal; in logs and CI the per-model log lines suffice.
        for name in tqdm(MODEL_NAMES, desc="export", unit="model", disable=None):
            staging = Path(work) / name
            staging.mkdir()
            built[name] = _target_files(name, checkpoint, checkpoint_dir, staging, settings)
        model_set = {
            "id": uuid.uuid4().hex,
            "version": 1 + max((versions(repository / name) or [0])[-1] for name in MODEL_NAMES),
        }
        for name, files in built.items():
            version = _publish(
                name,
                checkpoint_dir,
                repository,
                settings,
                files,
                checkpoint.config_for(name),
                model_set,
            )
            log.info(
                "%s: version %d (%s vs PyTorch max |diff| %s)",
                name,
                version,
                files.runtime,
                files.parity_max_abs_diff,
            )
            published.append(
                PublishedModel(name, version, files.parity_max_abs_diff, files.runtime)
            )
    return published


@dataclass(frozen=True)
class _TargetFiles:
    """What a target serves from a version directory, and how its parity check went."""

    copies: dict[str, Path]
    parity_max_abs_diff: float | None
    runtime: str
    parameters: dict[str, str]


def _target_files(
    name: str,
    checkpoint: Checkpoint,
    checkpoint_dir: Path,
    staging: Path,
    settings: ExportSettings,
) -> _TargetFiles:
    config = checkpoint.config_for(name)
    if settings.target is Target.PYTORCH:
        return _pytorch_files(name, checkpoint, checkpoint_dir, settings)
    onnx_path = staging / "model.onnx"
    export_onnx(name, checkpoint, config, onnx_path, max_candidates=settings.max_candidates)
    diff = verify_onnx(name, checkpoint, config, onnx_path) if settings.verify else None
    if settings.target is Target.CPU:
        copies = {"model.onnx": onnx_path, "model.py": PYTHON_MODEL_SOURCE}
        return _TargetFiles(copies, diff, "ONNX Runtime", {})
    if settings.target is Target.ONNXRUNTIME:
        return _TargetFiles({"model.onnx": onnx_path}, diff, "ONNX Runtime", {})
    return _tensorrt_files(name, checkpoint, onnx_path, settings)


def _pytorch_files(
    name: str, checkpoint: Checkpoint, checkpoint_dir: Path, settings: ExportSettings
) -> _TargetFiles:
    """The checkpoint itself and `torch_model.py`; checked through the runner it will serve with."""
    options = settings.torch_options()
    runtime = f"PyTorch {options.precision} on {options.device}"
    diff = None
    if settings.verify:
        # The check runs where the model will: on a machine without that device, export with
        # --no-verify and check on the serving host (`phoenix triton --check`).
        runtime = f"PyTorch {options.precision} on {resolve_device(options.device)}"
        runner = TorchRunner(
            name,
            checkpoint,
            max_batch=_max_batch(name, settings),
            max_candidates=settings.max_candidates,
            options=options,
        )
        diff = check_parity(
            name,
            checkpoint,
            checkpoint.config_for(name),
            runner,
            runtime=runtime,
            per_unit=TOLERANCE_PER_UNIT[options.precision],
            candidate_counts=_parity_counts(settings.max_candidates),
        )
    copies = {
        "model.py": TORCH_MODEL_SOURCE,
        CONFIG_FILE: checkpoint_dir / CONFIG_FILE,
        WEIGHTS_FILE: checkpoint_dir / WEIGHTS_FILE,
    }
    return _TargetFiles(copies, diff, runtime, options.to_parameters())


def _tensorrt_files(
    name: str, checkpoint: Checkpoint, onnx_path: Path, settings: ExportSettings
) -> _TargetFiles:
    """Build the engine, then check it against PyTorch on the GPU that built it."""
    inputs, outputs = model_io(name, checkpoint.config_for(name))
    plan = onnx_path.with_name("model.plan")
    limits = ProfileLimits(
        max_batch=_max_batch(name, settings),
        max_candidates=settings.max_candidates,
        opt_candidates=min(512, settings.max_candidates),
    )
    precision = settings.resolved_precision
    metadata = build_engine(
        onnx_path,
        plan,
        inputs,
        limits,
        precision=precision,
        timing_cache=settings.timing_cache,
    )
    runtime = f"TensorRT {precision}"
    diff = None
    if settings.verify:
        engine = EngineRunner(plan, [spec.name for spec in outputs])
        # fp32 engines run their matmuls in TF32 unless told otherwise.
        per_unit = TOLERANCE_PER_UNIT["tf32" if precision == "fp32" else precision]
        diff = check_parity(
            name,
            checkpoint,
            checkpoint.config_for(name),
            engine,
            runtime=runtime,
            per_unit=per_unit,
            candidate_counts=_parity_counts(settings.max_candidates),
        )
        metadata = replace(metadata, parity={"max_abs_diff": diff, "tolerance_per_unit": per_unit})
    engine_json = plan.with_name("engine.json")
    write_engine_metadata(engine_json, metadata)
    return _TargetFiles({"model.plan": plan, "engine.json": engine_json}, diff, runtime, {})


def _max_batch(name: str, settings: ExportSettings) -> int:
    return settings.max_batch_size or DEFAULT_MAX_BATCH[name]


def _parity_counts(max_candidates: int) -> tuple[int, ...]:
    return tuple(sorted({min(count, max_candidates) for count in CANDIDATE_COUNTS}))


def served_parameters(config: ModelConfig, max_candidates: int, target: Target) -> dict[str, str]:
    """The model config (JSON), the candidate limit and the candidate counts the target wants
    ranker requests padded to, for clients of the served model."""
    return {
        MODEL_CONFIG_PARAMETER: config.model_dump_json(),
        MAX_CANDIDATES_PARAMETER: str(max_candidates),
        CANDIDATE_BUCKETS_PARAMETER: format_buckets(candidate_buckets(target, max_candidates)),
    }


def default_queue_delay_us(target: Target) -> int:
    """How long the dynamic batcher holds a lone request for company: not at all on the CPU
    target (a batch costs as much as its requests one after the other, so waiting only adds
    latency; requests that queued while the model was busy are still batched), 2 ms on the GPU
    targets, where a fuller batch is nearly free."""
    return 0 if target is Target.CPU else GPU_QUEUE_DELAY_US


def candidate_buckets(target: Target, max_candidates: int) -> tuple[int, ...]:
    """Fine steps on the CPU target (padding costs, batching saves little); the few GPU
    buckets elsewhere (they keep the dynamic batcher and the CUDA graphs effective)."""
    if target is Target.CPU:
        return cpu_candidate_buckets(max_candidates)
    return gpu_candidate_buckets(max_candidates)


def _publish(
    name: str,
    checkpoint_dir: Path,
    repository: Path,
    settings: ExportSettings,
    files: _TargetFiles,
    config: ModelConfig,
    model_set: dict[str, object],
) -> int:
    inputs, outputs = model_io(name, config)
    version_files = VersionFiles(
        copies=files.copies,
        jsons={
            "io.json": io_manifest(config, inputs, outputs, settings.max_candidates, model=name),
            "provenance.json": provenance(
                checkpoint_dir,
                config,
                target=settings.target.value,
                precision=settings.resolved_precision,
                parity_max_abs_diff=files.parity_max_abs_diff,
                extra={"model_set": model_set},
            ),
        },
    )
    model_config = build_model_config(
        name,
        settings.target,
        inputs,
        outputs,
        max_batch_size=_max_batch(name, settings),
        max_queue_delay_us=settings.resolved_queue_delay_us,
        parameters={
            **served_parameters(config, settings.max_candidates, settings.target),
            **files.parameters,
        },
    )
    return publish_version(
        repository,
        name,
        to_pbtxt(model_config),
        version_files,
        keep_versions=settings.keep_versions,
        version=int(model_set["version"]),  # type: ignore[call-overload]
    )


__all__ = [
    "PRECISIONS",
    "ExportSettings",
    "PublishedModel",
    "export_repository",
    "served_parameters",
]
