"""`io.json` and `provenance.json`: what each served version accepts and where it came from."""

from __future__ import annotations

import hashlib
import platform
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from export.repository.model_config import TensorLike
from phoenix import __version__
from phoenix.actions import ACTIONS, COLUMN_OF
from phoenix.config import ModelConfig

#: Which entity block each row-index input must fall in.
_ROW_BLOCKS = {
    "user_hash": "user",
    "user_ip_hash": "ip",
    "history_post_hash": "post",
    "candidate_post_hash": "post",
    "post_hash": "post",
    "history_author_hash": "author",
    "candidate_author_hash": "author",
    "author_hash": "author",
}
_SURFACE_INPUTS = {"history_surface", "candidate_surface"}
_SID_INPUTS = {"history_sids", "candidate_sids", "sids"}
_BINARY_INPUTS = {
    "history_actions",
    "history_follow",
    "candidate_follow",
    "candidate_stale",
    "user_apps",
}
_NONNEGATIVE_INPUTS = {
    "user_categorical",
    "history_time",
    "candidate_time",
    "history_context",
    "candidate_context",
    "history_counts",
    "candidate_counts",
}


def io_manifest(
    config: ModelConfig,
    inputs: Sequence[TensorLike],
    outputs: Sequence[TensorLike],
    max_candidates: int,
    model: str | None = None,
) -> dict[str, Any]:
    """The tensors of one model plus the value checks the Python-backend model applies.

    `model` names which network this is (`phoenix_ranker`, ...): the pytorch target builds its
    module from it, whatever name the model is served under (a copy served twice, as a benchmark
    does with and without batching, keeps working).
    """

    input_names = {spec.name for spec in inputs}

    def describe(spec: TensorLike) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": spec.name, "dtype": spec.dtype, "shape": list(spec.shape)}
        if spec.name in _ROW_BLOCKS:
            # An empty block (a model without IP rows) admits only 0: an empty [first, last].
            rows = config.rows(_ROW_BLOCKS[spec.name])
            entry["rows"] = [rows.start, rows.stop - 1] if rows else [1, 0]
        if spec.name in _SURFACE_INPUTS:
            entry["below"] = config.num_surfaces
        if spec.name in _SID_INPUTS:
            entry["below"] = config.sid_codes + 1
        if spec.name in _BINARY_INPUTS:
            entry["binary"] = True
        if spec.name in _NONNEGATIVE_INPUTS:
            entry["nonnegative"] = True
        if spec.dtype == "float32" and spec.name in input_names:
            entry["finite"] = True
        if spec.name.startswith("candidate_"):
            entry["candidates_axis"] = 0
        return entry

    doc: dict[str, Any] = {} if model is None else {"model": model}
    return doc | {
        "inputs": [describe(s) for s in inputs],
        "outputs": [describe(s) for s in outputs],
        "max_candidates": max_candidates,
    }


def provenance(
    checkpoint_dir: Path,
    config: ModelConfig,
    *,
    target: str,
    precision: str,
    parity_max_abs_diff: float | None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Which checkpoint, config and taxonomy a version was exported from, and how."""
    weights = checkpoint_dir / "model.safetensors"
    return {
        "checkpoint": str(checkpoint_dir.resolve()),
        "checkpoint_sha256": sha256_file(weights) if weights.is_file() else None,
        "model_config": config.model_dump(),
        "action_columns": dict(zip(ACTIONS, COLUMN_OF, strict=True)),
        "target": target,
        "precision": precision,
        "parity_max_abs_diff": parity_max_abs_diff,
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "phoenix_triton": __version__,
        "python": platform.python_version(),
        **(extra or {}),
    }


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
