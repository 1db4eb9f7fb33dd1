"""Fixed-signature wrappers around the three Triton models, and the typed description of their I/O.

Triton serves three models, each with a batch dimension (`max_batch_size > 0`, so the leading dim
of every tensor is the batch B and is left out of the shapes below):

    phoenix_ranker           user_hash [2], history_post_hash [S, 2], history_author_hash [S, 2],
                             history_actions [S, A] f32, history_surface [S],
                             candidate_post_hash [C, 2], candidate_author_hash [C, 2],
                             candidate_surface [C]
                             -> action_probs [C, A] f32, dwell_time [C] f32 (seconds)
    phoenix_user_tower       the five user/history inputs -> user_embedding [D] f32
    phoenix_candidate_tower  post_hash [2], author_hash [2] -> post_embedding [D] f32

Index inputs are int64 rows of the shared embedding table (row 0 = padding); S is the config's
history length (fixed), C the number of candidates (dynamic, -1 in a `TensorSpec`).

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
    CandidateInputs,
    HistoryInputs,
    PhoenixRanker,
    RankerInputs,
    RetrievalModel,
)
from export.models.sample import random_candidates, random_history
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


def _history_specs(config: ModelConfig) -> list[TensorSpec]:
    s, a = config.history_len, config.num_actions
    return [
        TensorSpec("user_hash", "int64", (2,)),
        TensorSpec("history_post_hash", "int64", (s, 2)),
        TensorSpec("history_author_hash", "int64", (s, 2)),
        TensorSpec("history_actions", "float32", (s, a)),
        TensorSpec("history_surface", "int64", (s,)),
    ]


def _refuse_negative(rows: Tensor, num_rows: int) -> Tensor:
    """Send negative indices past the table's end, so the lookup fails instead of wrapping.

    ONNX `Gather` reads index -1 as the last row (PyTorch refuses it); mapped to `num_rows`, a
    negative index fails in ONNX Runtime like any other out-of-range row.
    """
    return torch.where(rows < 0, torch.full_like(rows, num_rows), rows)


def _history(config: ModelConfig, *tensors: Tensor) -> HistoryInputs:
    user, post, author, actions, surface = tensors
    rows, surfaces = config.table_rows, config.num_surfaces
    return HistoryInputs(
        user_hash=_refuse_negative(user, rows),
        history_post_hash=_refuse_negative(post, rows),
        history_author_hash=_refuse_negative(author, rows),
        history_actions=actions.float(),
        history_surface=_refuse_negative(surface, surfaces),
    )


class RankerForExport(nn.Module):
    """`phoenix_ranker`: the one-pass ranker -> (action_probs [B, C, A], dwell_time [B, C])."""

    name: ClassVar[str] = RANKER

    def __init__(self, ranker: PhoenixRanker) -> None:
        super().__init__()
        self.ranker = ranker
        self.config = ranker.config

    @classmethod
    def inputs(cls, config: ModelConfig) -> list[TensorSpec]:
        return [
            *_history_specs(config),
            TensorSpec("candidate_post_hash", "int64", (DYNAMIC, 2)),
            TensorSpec("candidate_author_hash", "int64", (DYNAMIC, 2)),
            TensorSpec("candidate_surface", "int64", (DYNAMIC,)),
        ]

    @classmethod
    def outputs(cls, config: ModelConfig) -> list[TensorSpec]:
        return [
            TensorSpec("action_probs", "float32", (DYNAMIC, config.num_actions)),
            TensorSpec("dwell_time", "float32", (DYNAMIC,)),
        ]

    def forward(
        self,
        user_hash: Tensor,
        history_post_hash: Tensor,
        history_author_hash: Tensor,
        history_actions: Tensor,
        history_surface: Tensor,
        candidate_post_hash: Tensor,
        candidate_author_hash: Tensor,
        candidate_surface: Tensor,
    ) -> tuple[Tensor, Tensor]:
        config = self.config
        history = _history(
            config,
            user_hash,
            history_post_hash,
            history_author_hash,
            history_actions,
            history_surface,
        )
        candidates = CandidateInputs(
            candidate_post_hash=_refuse_negative(candidate_post_hash, config.table_rows),
            candidate_author_hash=_refuse_negative(candidate_author_hash, config.table_rows),
            candidate_surface=_refuse_negative(candidate_surface, config.num_surfaces),
        )
        out = self.ranker(RankerInputs(history, candidates))
        return out.action_probs, out.dwell_time


class UserTowerForExport(nn.Module):
    """`phoenix_user_tower`: the user tower -> user_embedding [B, D], unit norm."""

    name: ClassVar[str] = USER_TOWER

    def __init__(self, retrieval: RetrievalModel) -> None:
        super().__init__()
        self.retrieval = retrieval
        self.config = retrieval.config

    @classmethod
    def inputs(cls, config: ModelConfig) -> list[TensorSpec]:
        return _history_specs(config)

    @classmethod
    def outputs(cls, config: ModelConfig) -> list[TensorSpec]:
        return [TensorSpec("user_embedding", "float32", (config.emb_dim,))]

    def forward(
        self,
        user_hash: Tensor,
        history_post_hash: Tensor,
        history_author_hash: Tensor,
        history_actions: Tensor,
        history_surface: Tensor,
    ) -> Tensor:
        history = _history(
            self.config,
            user_hash,
            history_post_hash,
            history_author_hash,
            history_actions,
            history_surface,
        )
        return self.retrieval.embed_users(history).float()


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
        ]

    @classmethod
    def outputs(cls, config: ModelConfig) -> list[TensorSpec]:
        return [TensorSpec("post_embedding", "float32", (config.emb_dim,))]

    def forward(self, post_hash: Tensor, author_hash: Tensor) -> Tensor:
        rows = self.config.table_rows
        return self.retrieval.embed_posts(
            _refuse_negative(post_hash, rows), _refuse_negative(author_hash, rows)
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
    history_args = (
        history.user_hash,
        history.history_post_hash,
        history.history_author_hash,
        history.history_actions,
        history.history_surface,
    )
    if kind == USER_TOWER:
        return history_args
    candidates = random_candidates(
        config, batch=batch, num_candidates=num_candidates, generator=generator
    )
    if kind == RANKER:
        return (
            *history_args,
            candidates.candidate_post_hash,
            candidates.candidate_author_hash,
            candidates.candidate_surface,
        )
    # The candidate tower embeds one post per batch row.
    return candidates.candidate_post_hash[:, 0], candidates.candidate_author_hash[:, 0]
