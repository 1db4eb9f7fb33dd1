"""`phoenix export`: a checkpoint into the three Triton models of a model repository.

For each model: export the ONNX graph, check ONNX Runtime against PyTorch on random inputs, then
assemble the version directory the target needs and publish it as the next version (atomically,
see `writer.py`). The TensorRT target checks that TensorRT and a GPU are present before doing
any work.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from export.checkpoint import load_checkpoint
from export.onnx.exporter import export_onnx, verify_onnx
from export.onnx.wrappers import CANDIDATE_TOWER, MODEL_NAMES, RANKER, USER_TOWER, model_io
from export.repository.manifest import io_manifest, provenance
from export.repository.model_config import MODEL_FILES, Target, build_model_config, to_pbtxt
from export.repository.writer import VersionFiles, publish_version
from export.tensorrt.builder import PRECISIONS, build_engine, require_tensorrt
from export.tensorrt.profiles import ProfileLimits
from phoenix.config import ModelConfig
from phoenix.errors import ExportError
from phoenix.serving import MAX_CANDIDATES_PARAMETER, MODEL_CONFIG_PARAMETER

log = logging.getLogger(__name__)

PYTHON_MODEL_SOURCE = Path(__file__).with_name("python_model.py")

#: Default max_batch_size per model: viewers per ranker call, viewers per user-tower call,
#: posts per candidate-tower call (index builds embed posts in large batches).
DEFAULT_MAX_BATCH = {RANKER: 16, USER_TOWER: 64, CANDIDATE_TOWER: 1024}


class ExportSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    target: Target = Target.CPU
    precision: str = Field(default="fp32", pattern="^(fp32|fp16|bf16)$")
    max_candidates: int = Field(default=1024, ge=1, le=65536)
    max_batch_size: int | None = Field(default=None, ge=1, le=65536)
    max_queue_delay_us: int = Field(default=2000, ge=0, le=1_000_000)
    keep_versions: int | None = Field(default=3, ge=1)
    verify: bool = True
    timing_cache: Path | None = None


@dataclass(frozen=True)
class PublishedModel:
    name: str
    version: int
    parity_max_abs_diff: float | None


def export_repository(
    checkpoint_dir: Path, repository: Path, settings: ExportSettings
) -> list[PublishedModel]:
    if settings.target is not Target.TENSORRT and settings.precision != "fp32":
        raise ExportError(
            f"--precision {settings.precision} needs --target tensorrt; the ONNX Runtime targets "
            "serve the fp32 graph"
        )
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
        # disable=None: a bar on a terminal; in logs and CI the per-model log lines suffice.
        for name in tqdm(MODEL_NAMES, desc="export", unit="model", disable=None):
            onnx_path = Path(work) / name / "model.onnx"
            onnx_path.parent.mkdir()
            export_onnx(name, checkpoint, config, onnx_path, max_candidates=settings.max_candidates)
            diff = verify_onnx(name, checkpoint, config, onnx_path) if settings.verify else None
            version = _publish(name, checkpoint_dir, onnx_path, repository, settings, diff, config)
            log.info("%s: version %d (ONNX Runtime vs PyTorch max |diff| %s)", name, version, diff)
            published.append(PublishedModel(name, version, diff))
    return published


def served_parameters(config: ModelConfig, max_candidates: int) -> dict[str, str]:
    """The model config (JSON) and the candidate limit, for clients of the served model."""
    return {
        MODEL_CONFIG_PARAMETER: config.model_dump_json(),
        MAX_CANDIDATES_PARAMETER: str(max_candidates),
    }


def _publish(name, checkpoint_dir, onnx_path, repository, settings, diff, config) -> int:  # type: ignore[no-untyped-def]
    inputs, outputs = model_io(name, config)
    max_batch = settings.max_batch_size or DEFAULT_MAX_BATCH[name]
    model_file = MODEL_FILES[settings.target]
    copies = {model_file: onnx_path}
    if settings.target is Target.CPU:
        copies["model.py"] = PYTHON_MODEL_SOURCE
    elif settings.target is Target.TENSORRT:
        plan = onnx_path.with_name("model.plan")
        limits = ProfileLimits(
            max_batch=max_batch,
            max_candidates=settings.max_candidates,
            opt_candidates=min(512, settings.max_candidates),
        )
        build_engine(
            onnx_path,
            plan,
            inputs,
            limits,
            precision=settings.precision,
            timing_cache=settings.timing_cache,
        )
        copies = {model_file: plan, "engine.json": plan.with_name("engine.json")}
    files = VersionFiles(
        copies=copies,
        jsons={
            "io.json": io_manifest(config, inputs, outputs, settings.max_candidates),
            "provenance.json": provenance(
                checkpoint_dir,
                config,
                target=settings.target.value,
                precision=settings.precision,
                parity_max_abs_diff=diff,
            ),
        },
    )
    model_config = build_model_config(
        name,
        settings.target,
        inputs,
        outputs,
        max_batch_size=max_batch,
        max_queue_delay_us=settings.max_queue_delay_us,
        parameters=served_parameters(config, settings.max_candidates),
    )
    return publish_version(
        repository, name, to_pbtxt(model_config), files, keep_versions=settings.keep_versions
    )


__all__ = [
    "PRECISIONS",
    "ExportSettings",
    "PublishedModel",
    "export_repository",
    "served_parameters",
]
