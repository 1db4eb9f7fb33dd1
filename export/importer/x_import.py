"""`phoenix import`: an X checkpoint -> a project checkpoint, checked against X's outputs.

The geometry comes from the checkpoint's shapes plus its named preset (`x_presets`); the values are
re-laid out bit-exactly (`x_params`); the result is a normal project checkpoint (safetensors +
config.json) whose metadata records the source, step, run and X's checksums. The towers come from
`retrieval=` (an X two-tower checkpoint) or, when none is given, are initialised fresh.

`verify_golden` runs the imported model on a golden file's inputs (X's field names, at that file's
own history length and candidate count) for every variant the file holds and reports the largest
difference per output; `GoldenMismatch` when any is beyond tolerance.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from export.checkpoint import Checkpoint, save_checkpoint
from export.importer.x_batch import ranker_inputs_from_x
from export.importer.x_checkpoint import XCheckpoint, read_x_checkpoint
from export.importer.x_params import (
    CANDIDATE_TOWER,
    HEADS,
    TWO_TOWER,
    ranker_config_from_params,
    ranker_state,
    retrieval_config_from_params,
    retrieval_state,
)
from export.importer.x_presets import OVERRIDE_KEYS, XPreset, find_preset
from export.models import PhoenixRanker, RetrievalModel
from export.models.precision import cast_for_inference
from phoenix.config import ModelConfig
from phoenix.errors import CheckpointImportError, PhoenixError

log = logging.getLogger(__name__)

#: Agreement with X's outputs: f32 logits and continuous outputs within 1e-4 per unit of their
#: magnitude (dwell times are seconds); bf16 within 0.25 (X's own bf16 is 0.11 from float64).
TOLERANCE = {"f32": 1e-4, "bf16": 0.25}
TOWER_TOLERANCE = {"f32": 1e-5, "bf16": 1e-2}


@dataclass(frozen=True)
class Comparison:
    file: str
    variant: str
    output: str
    max_abs_diff: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance


class GoldenMismatch(PhoenixError):
    """The imported model's outputs differ from X's beyond tolerance; nothing was written."""

    def __init__(self, comparisons: list[Comparison]) -> None:
        bad = [c for c in comparisons if not c.ok]
        super().__init__(
            "outputs differ from X's beyond tolerance, nothing written: "
            + "; ".join(f"{c.file} {c.variant} {c.output} {c.max_abs_diff:.3g}" for c in bad)
        )
        self.comparisons = comparisons


def _params(ckpt: XCheckpoint) -> dict[str, np.ndarray]:
    return {**ckpt.params, "emb_table": ckpt.emb_table}


def _kind(params: Mapping[str, Any]) -> str:
    if HEADS + "unembeddings" in params:
        return "ranker"
    if TWO_TOWER + "proj_mat_3" in params and CANDIDATE_TOWER + "1/w" in params:
        return "two_tower"
    raise CheckpointImportError(
        "neither a ranker (no recsys_aggregated_model/unembeddings) nor a two-tower model "
        "(no recsys_two_tower_model/proj_mat_3)"
    )


def golden_table_blocks(paths: Sequence[Path]) -> tuple[int, int, int, int] | None:
    """Table blocks recorded in a golden file's `meta/json` overrides, if any."""
    for path in paths:
        with np.load(path) as z:
            if "meta/json" not in z.files:
                continue
            overrides = json.loads(str(z["meta/json"])).get("overrides", [])
        blocks: dict[int, int] = {}
        for item in overrides:
            key, _, value = str(item).partition("=")
            if key in OVERRIDE_KEYS:
                blocks[OVERRIDE_KEYS[key]] = int(value)
        if blocks:
            return tuple(blocks.get(i, 0) for i in range(4))  # type: ignore[return-value]
    return None


def _blocks(
    preset: XPreset, table_rows: int, given: tuple[int, int, int, int] | None, source: str
) -> tuple[int, int, int, int]:
    blocks = given or preset.table_blocks
    needed = 65 + sum(blocks)
    if needed > table_rows and given is None:
        raise CheckpointImportError(
            f"emb_table: {table_rows} rows cannot hold the table blocks of X's preset "
            f"{preset.name} {preset.table_blocks} (the run overrode them): pass --table-sizes "
            f"U,I,A,IP or a --verify golden file that records them ({source})"
        )
    return blocks


def _load(model: torch.nn.Module, state: Mapping[str, np.ndarray], what: str) -> None:
    """Load exactly, refusing a shape or dtype mismatch by name (nothing is half-loaded)."""
    own = model.state_dict()
    problems = []
    for name, value in state.items():
        if name not in own:
            problems.append(f"{name}: no such parameter in the {what}")
        elif tuple(value.shape) != tuple(own[name].shape):
            problems.append(f"{name}: shape {list(value.shape)}, expected {list(own[name].shape)}")
        elif not np.issubdtype(np.asarray(value).dtype, np.floating):
            problems.append(f"{name}: dtype {np.asarray(value).dtype} is not floating point")
    missing = sorted(set(own) - set(state))
    if missing:
        problems.append(f"not in the checkpoint: {', '.join(missing[:5])}")
    if problems:
        raise CheckpointImportError(f"{what}: " + "; ".join(problems[:6]))
    tensors = {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in state.items()}
    model.load_state_dict(tensors, strict=True)


def build_ranker(params: Mapping[str, np.ndarray], config: ModelConfig) -> PhoenixRanker:
    ranker = PhoenixRanker(config)
    _load(ranker, ranker_state(params, config), "ranker")
    return ranker.eval()


def build_retrieval(params: Mapping[str, np.ndarray], config: ModelConfig) -> RetrievalModel:
    towers = RetrievalModel(config)
    _load(towers, retrieval_state(params, config), "two-tower model")
    return towers.eval()


def import_x_checkpoint(
    source: Path,
    out: Path,
    *,
    history_len: int | None = None,
    table_sizes: tuple[int, int, int, int] | None = None,
    retrieval: Path | None = None,
    verify: Sequence[Path] = (),
) -> tuple[Checkpoint, list[Comparison]]:
    """Import, verify against every golden file, and only then write `out`."""
    ckpt = read_x_checkpoint(source)
    params = _params(ckpt)
    if _kind(params) != "ranker":
        raise CheckpointImportError(
            f"{source}: a two-tower checkpoint; import a ranker and pass this one as --retrieval"
        )
    preset = find_preset(ckpt.config_name)
    blocks = _blocks(
        preset, ckpt.emb_table.shape[0], table_sizes or golden_table_blocks(verify), str(source)
    )
    config = ranker_config_from_params(
        params,
        name=ckpt.config_name,
        key_size=preset.key_size,
        history_len=history_len or preset.history_len,
        table_blocks=blocks,
        sid_levels=preset.sid_levels,
    )
    ranker = build_ranker(params, config)
    towers, tower_source = _retrieval(retrieval, config)
    comparisons = [c for path in verify for c in verify_golden(path, ranker, towers)]
    if not all(c.ok for c in comparisons):
        raise GoldenMismatch(comparisons)
    metadata = {
        "imported_from": {
            "path": str(Path(source).resolve()),
            "config": ckpt.config_name,
            "step": ckpt.step,
            "run": ckpt.run,
            "checksums_adler32": dict(ckpt.checksums),
        },
        "retrieval": tower_source,
        "verified_against": [str(p) for p in verify],
    }
    checkpoint = Checkpoint(config, ranker, towers, metadata)
    save_checkpoint(checkpoint, out)
    return checkpoint, comparisons


def _retrieval(path: Path | None, ranker_config: ModelConfig) -> tuple[RetrievalModel, Any]:
    if path is None:
        torch.manual_seed(0)
        towers = RetrievalModel(ranker_config.retrieval_config()).eval()
        return towers, "initialised fresh (no --retrieval checkpoint given)"
    ckpt = read_x_checkpoint(path)
    params = _params(ckpt)
    if _kind(params) != "two_tower":
        raise CheckpointImportError(f"{path}: --retrieval needs a two-tower checkpoint")
    preset = find_preset(ckpt.config_name)
    config = retrieval_config_from_params(
        params,
        name=ckpt.config_name,
        key_size=preset.key_size,
        history_len=preset.history_len,
        table_blocks=preset.table_blocks,
        post_hash_rows=preset.post_hash_rows,
        sid_levels=preset.sid_levels,
    )
    source = {"path": str(Path(path).resolve()), "step": ckpt.step, "run": ckpt.run}
    return build_retrieval(params, config), source


def _cast(model: torch.nn.Module, dtype: str) -> torch.nn.Module:
    import copy

    model = copy.deepcopy(model)
    return cast_for_inference(model, torch.bfloat16) if dtype == "bf16" else model


def verify_golden(
    path: Path, ranker: PhoenixRanker, towers: RetrievalModel | None = None
) -> list[Comparison]:
    """Compare with every variant in a golden file (ranker or two-tower outputs)."""
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    variants = sorted({k.split("/")[1] for k in arrays if k.startswith("output/")})
    if not variants:
        raise CheckpointImportError(f"{path}: no output/<variant>/ arrays to compare with")
    inputs = ranker_inputs_from_x(arrays)
    history_len = inputs.history.history_post_hash.shape[1]
    if f"output/{variants[0]}/logits_cand" in arrays:
        model = PhoenixRanker(ranker.config.with_overrides(history_len=history_len))
        model.load_state_dict(ranker.state_dict())
        return _compare_ranker(path.name, arrays, variants, inputs, model.eval())
    if towers is None:
        raise CheckpointImportError(f"{path}: a two-tower golden file needs the towers")
    model = RetrievalModel(towers.config.with_overrides(history_len=history_len))
    model.load_state_dict(towers.state_dict())
    return _compare_towers(path.name, arrays, variants, inputs, model.eval())


def _valid(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    return np.concatenate([values[i, :c].ravel() for i, c in enumerate(counts)])


def _compare_ranker(name, arrays, variants, inputs, model) -> list[Comparison]:  # type: ignore[no-untyped-def]
    counts = arrays["meta/cand_len"]
    out = []
    for variant in variants:
        dtype = "bf16" if variant.endswith("bf16") else "f32"
        serving = variant.startswith("serve")
        with torch.no_grad():
            result = _cast(model, dtype)(inputs, x_serving_kernel=serving)
        for output, ours in (
            ("logits", result.logits),
            ("continuous", result.continuous),
        ):
            theirs = _valid(arrays[f"output/{variant}/{output}_cand"], counts)
            mine = _valid(ours.float().numpy(), counts)
            scale = max(1.0, float(np.abs(theirs).max())) if output == "continuous" else 1.0
            tol = TOLERANCE[dtype] * (scale if dtype == "f32" else 1.0)
            diff = float(np.abs(mine - theirs).max())
            out.append(Comparison(name, variant, output, diff, tol))
    return out


def _compare_towers(name, arrays, variants, inputs, model) -> list[Comparison]:  # type: ignore[no-untyped-def]
    out = []
    c = inputs.candidates
    b, n = c.candidate_post_hash.shape[:2]
    for variant in variants:
        dtype = "bf16" if variant.startswith("bf16") else "f32"
        tower = _cast(model, dtype)
        with torch.no_grad():
            user = tower.embed_users(inputs.history, x_user_tower_attention=False)
            posts = tower.embed_posts(
                c.candidate_post_hash.reshape(b * n, 2),
                c.candidate_author_hash.reshape(b * n, 2),
                c.candidate_sids.reshape(b * n, -1),
            ).reshape(b, n, -1)
        for output, ours in (("user_embedding", user), ("candidate_embedding", posts)):
            diff = float(np.abs(ours.float().numpy() - arrays[f"output/{variant}/{output}"]).max())
            out.append(Comparison(name, variant, output, diff, TOWER_TOLERANCE[dtype]))
    return out
