"""Checkpoints: a directory with `config.json` and `model.safetensors`.

`config.json` holds the ranker's config, the towers' config (X trains them as separate models with
their own geometry), the action columns the named actions read, and free-form metadata (world,
training summary, the X checkpoint an import came from). `model.safetensors` holds the ranker's
tensors under `ranker.` and the retrieval towers' under `retrieval.`. Loading checks every
tensor's name, shape and dtype against the config before any weight is used, and refuses a
mismatch with a message that names the tensors. Never pickle: safetensors and JSON only, so
untrusted checkpoints cannot run code.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from export.models import PhoenixRanker, RetrievalModel
from phoenix.actions import ACTIONS, COLUMN_OF
from phoenix.config import ModelConfig
from phoenix.errors import CheckpointError, ConfigError

FORMAT_VERSION = 2
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
_PREFIXES = ("ranker.", "retrieval.")


@dataclass
class Checkpoint:
    config: ModelConfig
    ranker: PhoenixRanker
    retrieval: RetrievalModel
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def initialise(
        cls, config: ModelConfig, seed: int = 0, retrieval_config: ModelConfig | None = None
    ) -> Checkpoint:
        """Fresh, untrained models (deterministic in `seed`); the towers' config defaults to the
        ranker's geometry with X's two-tower choices (`ModelConfig.retrieval_config`)."""
        torch.manual_seed(seed)
        towers = retrieval_config or config.retrieval_config()
        return cls(config, PhoenixRanker(config), RetrievalModel(towers))

    @property
    def retrieval_config(self) -> ModelConfig:
        return self.retrieval.config

    def config_for(self, kind: str) -> ModelConfig:
        """The config of the served model `kind`: the ranker's, or the towers' for a tower."""
        from phoenix.serving import RANKER

        return self.config if kind == RANKER else self.retrieval_config

    def state_dict(self) -> dict[str, torch.Tensor]:
        tensors = {f"ranker.{k}": v for k, v in self.ranker.state_dict().items()}
        tensors |= {f"retrieval.{k}": v for k, v in self.retrieval.state_dict().items()}
        return tensors


def save_checkpoint(checkpoint: Checkpoint, path: str | Path) -> Path:
    """Write the checkpoint atomically: into a sibling temp dir, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in checkpoint.state_dict().items()}
    doc = {
        "format_version": FORMAT_VERSION,
        "model": checkpoint.config.model_dump(),
        "retrieval": checkpoint.retrieval_config.model_dump(),
        "action_columns": dict(zip(ACTIONS, COLUMN_OF, strict=True)),
        "metadata": checkpoint.metadata,
    }
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        save_file(tensors, str(staging / WEIGHTS_FILE), metadata={"format": "pt"})
        (staging / CONFIG_FILE).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        if path.exists():
            shutil.rmtree(path)
        staging.rename(path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return path


def read_checkpoint_config(path: str | Path) -> tuple[ModelConfig, dict[str, Any]]:
    """The ranker's config and the metadata of a checkpoint directory, validated."""
    config, _, metadata = read_checkpoint_configs(path)
    return config, metadata


def read_checkpoint_configs(path: str | Path) -> tuple[ModelConfig, ModelConfig, dict[str, Any]]:
    """The ranker's and the towers' configs and the metadata of a checkpoint, validated."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint directory not found: {path}")
    config_path = path / CONFIG_FILE
    try:
        doc = json.loads(config_path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{config_path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{config_path} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise CheckpointError(f"{config_path}: expected a JSON object")
    if doc.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{config_path}: format_version {doc.get('format_version')!r} is not supported "
            f"(expected {FORMAT_VERSION})"
        )
    configs = []
    for key in ("model", "retrieval"):
        try:
            configs.append(ModelConfig.from_dict(doc.get(key)))
        except ConfigError as exc:
            raise CheckpointError(f"{config_path}: {key}: {exc}") from exc
    metadata = doc.get("metadata", {})
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{config_path}: metadata must be a JSON object")
    return configs[0], configs[1], metadata


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Load and verify a checkpoint; nothing is half-loaded on error."""
    path = Path(path)
    config, towers, metadata = read_checkpoint_configs(path)
    checkpoint = Checkpoint(config, PhoenixRanker(config), RetrievalModel(towers), metadata)
    expected = checkpoint.state_dict()
    tensors = _read_tensors(path / WEIGHTS_FILE, expected)
    for prefix, module in zip(_PREFIXES, (checkpoint.ranker, checkpoint.retrieval), strict=True):
        own = {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}
        module.load_state_dict(own, strict=True)
    checkpoint.ranker.to(device).eval()
    checkpoint.retrieval.to(device).eval()
    return checkpoint


def _read_tensors(weights_path: Path, expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if not weights_path.is_file():
        raise CheckpointError(f"{weights_path} is missing")
    try:
        with safe_open(str(weights_path), framework="pt") as f:
            names = list(f.keys())
            shapes = {
                k: (list(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype()) for k in names
            }
            _check_layout(weights_path, shapes, expected)
            return {k: f.get_tensor(k) for k in names}
    except SafetensorError as exc:
        raise CheckpointError(f"{weights_path} is not a valid safetensors file: {exc}") from exc


_DTYPE_NAMES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}


def _check_layout(
    weights_path: Path,
    found: dict[str, tuple[list[int], str]],
    expected: dict[str, torch.Tensor],
) -> None:
    problems = []
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if missing:
        problems.append(f"missing tensors: {_short(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors: {_short(unexpected)}")
    for name in sorted(set(found) & set(expected)):
        shape, dtype = found[name]
        want = expected[name]
        if shape != list(want.shape):
            problems.append(f"{name}: shape {shape} in file, config needs {list(want.shape)}")
        elif dtype != _DTYPE_NAMES.get(want.dtype, str(want.dtype)):
            problems.append(f"{name}: dtype {dtype} in file, expected {_DTYPE_NAMES[want.dtype]}")
    if problems:
        shown = "; ".join(problems[:8]) + (
            f"; and {len(problems) - 8} more" if len(problems) > 8 else ""
        )
        raise CheckpointError(f"{weights_path} does not match its config.json: {shown}")


def _short(names: list[str], limit: int = 5) -> str:
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more
