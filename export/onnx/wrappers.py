"""Fixed-signature wrappers around the three Triton models, and the typed description of their I/O.

Triton serves three models, each with a batch dimension (`max_batch_size > 0`, so the leading dim
of every tensor is the batch B and is left out of the shapes below):

    phoenix_ranker           the viewer (user_*), the history (history_*, S = the config's
                             history length) and the candidates (candidate_*, C dynamic) exactly
                             as `export.models.inputs` lists them
                             -> action_log_probs [C, N_a] f32 (log sigmoid of X's action logits,
                                column i = X's ActionName i), continuous [C, N_cont] f32 (column
                                1 = dwell time in seconds): X's serving outputs
    phoenix_user_tower       the history_* inputs -> user_embedding [D] f32
    phoenix_candidate_tower  post_hash [2], author_hash [2], sids [K] -> post_embedding [D] f32

Hash inputs are int64 rows of the model's embedding table (row 0 = padding); every integer input
is int64 and every float input float32.

`model_io(kind, config)` is the single source of truth for these names, dtypes and shapes: the
ONNX exporter names the graph's tensors from it, and the Triton `config.pbtxt` writer reads it.
Each wrapper's `forward` takes exactly its inputs, positionally and in this order, and returns
exactly its outputs (a tuple for the ranker), so tracing sees one fixed signature.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from export.checkpoint import Checkpoint
from export.models import (
    HistoryInputs,
    PhoenixRanker,
    RankerInputs,
    RetrievalModel,
)
from export.models.inputs import NUM_USER_CATEGORICAL, NUM_USER_FLOAT
from export.models.sample import random_candidates, random_history, random_user
from phoenix.config import ModelConfig
from phoenix.errors import ExportError
from phoenix.serving import CANDIDATE_TOWER, MODEL_NAMES, RANKER, USER_TOWER

#: A dimension whose size varies from call to call (Triton's and ONNX's convention).
DYNAMIC = -1


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a Triton model, without its leading batch dimension.

    `dtype` is a NumPy dtype name ("int64", "float32"); `shape` uses -1 for a dynamic dimension.
    """

    name: str
    dtype: str
    shape: tuple[int, ...]


def _user_specs(config: ModelConfig) -> list[TensorSpec]:
    return [
        TensorSpec("user_hash", "int64", (2,)),
        TensorSpec("user_ip_hash", "int64", (2,)),
        TensorSpec("user_categorical", "int64", (NUM_USER_CATEGORICAL,)),
        TensorSpec("user_float", "float32", (NUM_USER_FLOAT,)),
        TensorSpec("user_apps", "float32", (config.num_apps,)),
    ]


def _sequence_specs(config: ModelConfig, prefix: str, n: int) -> list[TensorSpec]:
    return [
        TensorSpec(f"{prefix}_post_hash", "int64", (n, 2)),
        TensorSpec(f"{prefix}_author_hash", "int64", (n, 2)),
        TensorSpec(f"{prefix}_surface", "int64", (n,)),
        TensorSpec(f"{prefix}_time", "int64", (n, 2)),
        TensorSpec(f"{prefix}_context", "int64", (n, 3)),
        TensorSpec(f"{prefix}_follow", "int64", (n, 2)),
        TensorSpec(f"{prefix}_counts", "int64", (n, config.num_counts)),
        TensorSpec(f"{prefix}_sids", "int64", (n, config.sid_levels)),
    ]


def _history_specs(config: ModelConfig) -> list[TensorSpec]:
    s = config.history_len
    return [
        *_sequence_specs(config, "history", s),
        TensorSpec("history_actions", "float32", (s, config.num_action_columns)),
        TensorSpec("history_dwell", "float32", (s,)),
    ]


def _candidate_specs(config: ModelConfig) -> list[TensorSpec]:
    return [
        *_sequence_specs(config, "candidate", DYNAMIC),
        TensorSpec("candidate_stale", "int64", (DYNAMIC,)),
    ]


def _refuse_negative(rows: Tensor, num_rows: int) -> Tensor:
    """Send negative indices past the table's end, so the lookup fails instead of wrapping.

    ONNX `Gather` reads index -1 as the last row (PyTorch refuses it); mapped to `num_rows`, a
    negative index fails in ONNX Runtime like any other out-of-range row. Every other integer
    input is clipped into its vocabulary by the model itself, as X does.
    """
    return torch.where(rows < 0, torch.full_like(rows, num_rows), rows)


def _guard_rows(config: ModelConfig, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """`_refuse_negative` on every table-row input; floats cast to float32."""
    out = {}
    for name, t in tensors.items():
        if name.endswith("_hash"):
            t = _refuse_negative(t, config.table_rows)
        elif torch.is_floating_point(t):
            t = t.float()
        out[name] = t
    return out


def _names(specs: list[TensorSpec]) -> list[str]:
    return [spec.name for spec in specs]


class RankerForExport(nn.Module):
    """`phoenix_ranker`: the one-pass ranker -> (action_log_probs [B, C, N_a], continuous)."""

    name: ClassVar[str] = RANKER

    def __init__(self, ranker: PhoenixRanker) -> None:
        super().__init__()
        self.ranker = ranker
        self.config = ranker.config
        self._input_names = _names(self.inputs(self.config))

    @classmethod
    def inputs(cls, config: ModelConfig) -> list[TensorSpec]:
        return [*_user_specs(config), *_history_specs(config), *_candidate_specs(config)]

    @classmethod
    def outputs(cls, config: ModelConfig) -> list[TensorSpec]:
        return [
            TensorSpec("action_log_probs", "float32", (DYNAMIC, config.num_action_columns)),
            TensorSpec("continuous", "float32", (DYNAMIC, config.num_continuous)),
        ]

    def forward(self, *tensors: Tensor) -> tuple[Tensor, Tensor]:
        named = _guard_rows(self.config, dict(zip(self._input_names, tensors, strict=True)))
        out = self.ranker(RankerInputs.from_tensors(named))
        return out.log_probs, out.continuous.float()


class UserTowerForExport(nn.Module):
    """`phoenix_user_tower`: the user tower -> user_embedding [B, D], unit norm."""

    name: ClassVar[str] = USER_TOWER

    def __init__(self, retrieval: RetrievalModel) -> None:
        super().__init__()
        self.retrieval = retrieval
        self.config = retrieval.config
        self._input_names = _names(self.inputs(self.config))

    @classmethod
    def inputs(cls, config: ModelConfig) -> list[TensorSpec]:
        return _history_specs(config)

    @classmethod
    def outputs(cls, config: ModelConfig) -> list[TensorSpec]:
        return [TensorSpec("user_embedding", "float32", (config.emb_dim,))]

    def forward(self, *tensors: Tensor) -> Tensor:
        named = _guard_rows(self.config, dict(zip(self._input_names, tensors, strict=True)))
        return self.retrieval.embed_users(HistoryInputs(**named)).float()


class CandidateTowerForExport(nn.Module):
    """`phoenix_candidate_tower`: the candidate tower -> post_embedding [B, D], unit norm."""

    name: ClassVar[str] = CANDIDATE_TOWER

    def __init__(self, retrieval: RetrievalModel) -> None:
        super().__init__()
        self.retrieval = retrieval
        self.config = retrieval.config

    @classmethod
    def inputs(cls, config: ModelConfig) -> list[TensorSpec]:
        return [
            TensorSpec("post_hash", "int64", (2,)),
            TensorSpec("author_hash", "int64", (2,)),
            TensorSpec("sids", "int64", (config.sid_levels,)),
        ]

    @classmethod
    def outputs(cls, config: ModelConfig) -> list[TensorSpec]:
        return [TensorSpec("post_embedding", "float32", (config.emb_dim,))]

    def forward(self, post_hash: Tensor, author_hash: Tensor, sids: Tensor) -> Tensor:
        rows = self.config.table_rows
        return self.retrieval.embed_posts(
            _refuse_negative(post_hash, rows), _refuse_negative(author_hash, rows), sids
        ).float()


ExportWrapper = RankerForExport | UserTowerForExport | CandidateTowerForExport

WRAPPERS: dict[str, type[ExportWrapper]] = {
    RANKER: RankerForExport,
    USER_TOWER: UserTowerForExport,
    CANDIDATE_TOWER: CandidateTowerForExport,
}


def wrapper_class(kind: str) -> type[ExportWrapper]:
    """The wrapper class of the Triton model called `kind` (one of `MODEL_NAMES`)."""
    try:
        return WRAPPERS[kind]
    except KeyError:
        raise ExportError(
            f"kind: unknown model {kind!r}; expected one of {', '.join(MODEL_NAMES)}"
        ) from None


def model_io(kind: str, config: ModelConfig) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """(inputs, outputs) of the Triton model `kind` under `config`, batch dimension left out."""
    cls = wrapper_class(kind)
    return cls.inputs(config), cls.outputs(config)


def wrap(kind: str, source: Checkpoint | PhoenixRanker | RetrievalModel) -> ExportWrapper:
    """The export wrapper of `kind` around the right model of a checkpoint (or the model itself).

    The wrapper holds the model, not a copy; it is in whatever mode and dtype the model is.
    """
    cls = wrapper_class(kind)
    if isinstance(source, Checkpoint):
        source = source.ranker if cls is RankerForExport else source.retrieval
    want = PhoenixRanker if cls is RankerForExport else RetrievalModel
    if not isinstance(source, want):
        raise ExportError(
            f"{kind}: expected a Checkpoint or a {want.__name__}, got {type(source).__name__}"
        )
    return cls(source)  # type: ignore[arg-type]


def example_inputs(
    kind: str,
    config: ModelConfig,
    batch: int = 2,
    num_candidates: int = 8,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, ...]:
    """Random valid inputs for `kind`, positionally in `model_io` order."""
    history = random_history(config, batch=batch, generator=generator)
    if kind == USER_TOWER:
        return tuple(history.tensors().values())
    candidates = random_candidates(
        config, batch=batch, num_candidates=num_candidates, generator=generator
    )
    if kind == RANKER:
        user = random_user(config, batch=batch, generator=generator)
        return (
            *user.tensors().values(),
            *history.tensors().values(),
            *candidates.tensors().values(),
        )
    # The candidate tower embeds one post per batch row.
    return (
        candidates.candidate_post_hash[:, 0],
        candidates.candidate_author_hash[:, 0],
        candidates.candidate_sids[:, 0],
    )
