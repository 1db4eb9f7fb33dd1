"""The repository the server loads: the ranker of an exported repository (or of a fresh export),
of the cpu or the pytorch target, staged twice, as `phoenix_ranker` with dynamic batching and
`phoenix_ranker_nobatch` without."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from loadtest.triton_bench.settings import BATCHED, UNBATCHED, Target
from phoenix.config import ModelConfig
from phoenix.errors import ConfigError

#: What a version directory of each target must hold (both targets are Python-backend models).
TARGET_FILES = {
    "cpu": ("model.onnx", "model.py", "io.json", "provenance.json"),
    "pytorch": ("model.py", "config.json", "model.safetensors", "io.json", "provenance.json"),
}


@dataclass(frozen=True)
class ServedRanker:
    """The staged repository: which target it serves, where its files are, what it serves and
    how Triton batches it. `version_dir` is the staged `phoenix_ranker` version (what the
    in-process path loads); `onnx_path` its model.onnx for the cpu target, None for pytorch;
    `parameters` the config.pbtxt string parameters (the pytorch target's runtime options)."""

    repository: Path
    target: Target
    precision: str
    version_dir: Path
    onnx_path: Path | None
    parameters: dict[str, str]
    config: ModelConfig
    max_candidates: int
    max_batch_size: int
    max_queue_delay_us: int


def _place(source: Path, target: Path) -> None:
    """Hard-link `source` to `target` (no copy of a large graph), copying across file systems."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def ranker_version_dir(source: Path) -> Path:
    """The latest `phoenix_ranker` version directory of the repository `source`."""
    from export.repository.writer import versions

    model_dir = source / BATCHED
    found = versions(model_dir)
    if not found or not (model_dir / "config.pbtxt").is_file():
        raise ConfigError(f"--repository: no {BATCHED} with a version directory in {source}")
    return model_dir / str(found[-1])


def detect_target(version_dir: Path) -> Target:
    """The export target of a version directory: provenance.json's "target", or failing that
    the files present (model.onnx: cpu; model.safetensors: pytorch). Only the two Python-backend
    targets are accepted, with every file they serve from."""
    target = None
    provenance = version_dir / "provenance.json"
    if provenance.is_file():
        try:
            target = json.loads(provenance.read_text()).get("target")
        except (json.JSONDecodeError, AttributeError) as exc:
            raise ConfigError(f"--repository: {provenance}: not a JSON object ({exc})") from exc
    if target is None:
        if (version_dir / "model.onnx").is_file():
            target = "cpu"
        elif (version_dir / "model.safetensors").is_file():
            target = "pytorch"
    if target not in TARGET_FILES:
        found = "no model file" if target is None else f"the {target} target"
        raise ConfigError(
            f"--repository: {version_dir} holds {found}; this benchmark serves the cpu and "
            "pytorch targets of `phoenix export` (Python-backend models over ONNX Runtime or "
            "PyTorch), the only ones the tritonserver of nvidia-pytriton can load"
        )
    for name in TARGET_FILES[target]:
        if not (version_dir / name).is_file():
            raise ConfigError(
                f"--repository: {version_dir} has no {name}, which the {target} target of "
                "`phoenix export` serves from"
            )
    return target  # type: ignore[return-value]


def repository_target(source: Path) -> Target:
    """The export target of the ranker `stage_repository` would serve from `source`."""
    return detect_target(ranker_version_dir(source))


def stage_repository(
    source: Path, dest: Path, max_queue_delay_us: int | None = None
) -> ServedRanker:
    """Put the latest `phoenix_ranker` version of `source` (a cpu or pytorch export) into `dest`
    twice: as `phoenix_ranker` with dynamic batching, and as `phoenix_ranker_nobatch` without.
    Nothing in `source` changes.

    The pytorch target's model.py builds the network its io.json names ("model"), whatever name
    it is served under; an export without that name (older than the field) cannot be served as
    `phoenix_ranker_nobatch` and is refused."""
    from export.repository.model_config import parse_pbtxt, to_pbtxt

    version_dir = ranker_version_dir(source)
    target = detect_target(version_dir)
    io = json.loads((version_dir / "io.json").read_text())
    if target == "pytorch" and io.get("model") != BATCHED:
        raise ConfigError(
            f'--repository: {version_dir / "io.json"} does not name the network ("model": '
            f'"{BATCHED}"), which the pytorch target\'s model.py needs to be served as '
            f"{UNBATCHED} too; export it again with this version of `phoenix export`"
        )
    base = parse_pbtxt((version_dir.parent / "config.pbtxt").read_text())
    if base.backend != "python":
        raise ConfigError(
            f"--repository: {BATCHED} is not a Python-backend model (the cpu or pytorch export "
            "target); the tritonserver of nvidia-pytriton serves no other backend"
        )
    if max_queue_delay_us is not None:
        base.dynamic_batching.max_queue_delay_microseconds = max_queue_delay_us
    base.dynamic_batching.SetInParent()  # batching on even if the source config had none
    for name, batching in ((BATCHED, True), (UNBATCHED, False)):
        config = type(base)()
        config.CopyFrom(base)
        config.name = name
        if not batching:
            config.ClearField("dynamic_batching")
        staged = dest / name / "1"
        staged.mkdir(parents=True)
        for file in version_dir.iterdir():
            if file.is_file():
                _place(file, staged / file.name)
        (dest / name / "config.pbtxt").write_text(to_pbtxt(config))
    provenance = json.loads((version_dir / "provenance.json").read_text())
    try:
        config = ModelConfig.from_dict(provenance.get("model_config"))
    except ConfigError as exc:
        raise ConfigError(f"--repository: {version_dir / 'provenance.json'}: {exc}") from exc
    parameters = {key: value.string_value for key, value in base.parameters.items()}
    staged_version = dest / BATCHED / "1"
    return ServedRanker(
        repository=dest,
        target=target,
        precision=_served_precision(target, parameters),
        version_dir=staged_version,
        onnx_path=staged_version / "model.onnx" if target == "cpu" else None,
        parameters=parameters,
        config=config,
        max_candidates=int(io.get("max_candidates") or 0),
        max_batch_size=base.max_batch_size,
        max_queue_delay_us=base.dynamic_batching.max_queue_delay_microseconds,
    )


def _served_precision(target: Target, parameters: dict[str, str]) -> str:
    """What the served model computes in: the cpu target's ONNX graph is fp32; the pytorch
    target runs in its config.pbtxt's precision parameter (what its model.py reads)."""
    if target == "cpu":
        return "fp32"
    from export.torch_serving.runner import TorchServingOptions

    try:
        return TorchServingOptions.from_parameters(parameters).precision
    except ConfigError as exc:
        raise ConfigError(f"--repository: {BATCHED} config.pbtxt: {exc}") from exc


def export_ranker(
    source: Path | ModelConfig,
    candidates: int,
    work: Path,
    target: Target = "cpu",
    precision: str | None = None,
) -> Path:
    """Export a checkpoint directory, or a randomly initialised model of a config, into a fresh
    repository under `work` for `target` in `precision` (None: the target's default; bf16 for
    pytorch). The towers too: `export_repository` writes all three models."""
    from export.checkpoint import Checkpoint, read_checkpoint_config, save_checkpoint
    from export.repository.build import ExportSettings, export_repository

    if isinstance(source, ModelConfig):
        config = source
        checkpoint = save_checkpoint(Checkpoint.initialise(config, seed=0), work / "checkpoint")
    else:
        checkpoint = source
        config, _ = read_checkpoint_config(checkpoint)
    check_candidates(candidates, config.max_candidates, "the model config's")
    repository = work / "exported"
    max_candidates = min(config.max_candidates, max(candidates, ExportSettings().max_candidates))
    export = ExportSettings(target=target, precision=precision, max_candidates=max_candidates)
    export_repository(checkpoint, repository, export)
    return repository


def check_candidates(candidates: int, limit: int, whose: str) -> None:
    """Refuse more candidates per request than `whose` max_candidates allows."""
    if candidates > limit:
        raise ConfigError(f"--candidates: {candidates} exceeds {whose} max_candidates ({limit})")
