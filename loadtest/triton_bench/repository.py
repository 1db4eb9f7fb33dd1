"""The repository the server loads: the ranker of an exported repository (or of a fresh export)
staged twice, as `phoenix_ranker` with dynamic batching and `phoenix_ranker_nobatch` without."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from loadtest.triton_bench.settings import BATCHED, UNBATCHED
from phoenix.config import ModelConfig
from phoenix.errors import ConfigError


@dataclass(frozen=True)
class ServedRanker:
    """The staged repository: where the graph is, what it serves and how Triton batches it."""

    repository: Path
    onnx_path: Path
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


def stage_repository(
    source: Path, dest: Path, max_queue_delay_us: int | None = None
) -> ServedRanker:
    """Put the latest `phoenix_ranker` version of `source` into `dest` twice: as `phoenix_ranker`
    with dynamic batching, and as `phoenix_ranker_nobatch` without. Nothing in `source` changes."""
    from export.repository.model_config import parse_pbtxt, to_pbtxt
    from export.repository.writer import versions

    model_dir = source / BATCHED
    found = versions(model_dir)
    if not found or not (model_dir / "config.pbtxt").is_file():
        raise ConfigError(f"--repository: no {BATCHED} with a version directory in {source}")
    version_dir = model_dir / str(found[-1])
    for name in ("model.onnx", "model.py", "io.json", "provenance.json"):
        if not (version_dir / name).is_file():
            raise ConfigError(
                f"--repository: {version_dir} has no {name}; this benchmark serves the cpu "
                "target of `phoenix export` (Python backend over ONNX Runtime)"
            )
    base = parse_pbtxt((model_dir / "config.pbtxt").read_text())
    if base.backend != "python":
        raise ConfigError(
            f"--repository: {BATCHED} is not a Python-backend model (the cpu export target); "
            "the tritonserver of nvidia-pytriton serves no other backend"
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
        target = dest / name / "1"
        target.mkdir(parents=True)
        for file in version_dir.iterdir():
            if file.is_file():
                _place(file, target / file.name)
        (dest / name / "config.pbtxt").write_text(to_pbtxt(config))
    io = json.loads((version_dir / "io.json").read_text())
    provenance = json.loads((version_dir / "provenance.json").read_text())
    try:
        config = ModelConfig.from_dict(provenance.get("model_config"))
    except ConfigError as exc:
        raise ConfigError(f"--repository: {version_dir / 'provenance.json'}: {exc}") from exc
    return ServedRanker(
        repository=dest,
        onnx_path=dest / BATCHED / "1" / "model.onnx",
        config=config,
        max_candidates=int(io.get("max_candidates") or 0),
        max_batch_size=base.max_batch_size,
        max_queue_delay_us=base.dynamic_batching.max_queue_delay_microseconds,
    )


def export_ranker(source: Path | ModelConfig, candidates: int, work: Path) -> Path:
    """Export a checkpoint directory, or a randomly initialised model of a config, into a fresh
    repository under `work` (the towers too: `export_repository` writes all three models)."""
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
    export_repository(checkpoint, repository, ExportSettings(max_candidates=max_candidates))
    return repository


def check_candidates(candidates: int, limit: int, whose: str) -> None:
    """Refuse more candidates per request than `whose` max_candidates allows."""
    if candidates > limit:
        raise ConfigError(f"--candidates: {candidates} exceeds {whose} max_candidates ({limit})")
