"""The two-tower retrieval model: X's `recsys_two_tower` architecture (docs/FIDELITY.md).

- user tower: one token per history item, `proj([semantic ids | author rows | signed actions |
  context]) * sqrt(W)`, no prefix tokens; a transformer with post-sublayer norms over the history
  (right-anchored positions), the final norm, the mean over the valid items, L2-normalised. A
  viewer without history gets the zero vector.
- candidate tower: `[author rows | semantic ids]` -> Linear -> SiLU -> Linear, L2-normalised.
Similarity is the dot product; the ANN index holds the candidate tower's output for every post.

X's unpacked user tower passes segment ids that make its attention contribute nothing (a bug,
docs/FIDELITY.md); the attention here works as intended, and `x_user_tower_attention=False`
reproduces X's outputs for parity checks.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from export.models.embedding import Categorical, SemanticIds
from export.models.inputs import (
    DAY_OF_WEEK,
    INT_DTYPES,
    LOCAL_HOUR,
    TIMEZONE,
    HistoryInputs,
    check_range,
    check_rows,
    check_tensor,
    is_building_graph,
)
from export.models.layers import Trunk, right_anchored_positions
from export.models.ranker import init_trunk
from phoenix.config import ModelConfig

#: L2 normalisation's epsilon, as X's.
NORM_EPS = 1e-12


class SignedActions(nn.Module):
    """X's signed action embedding: a [1, W] table seen as one W/N_a-wide slice per action column;
    each slice is added (action taken) or subtracted (not taken); zero when no action at all."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.hash_width % config.num_action_columns:
            raise ValueError(
                f"hash_width {config.hash_width} must be a multiple of num_action_columns "
                f"{config.num_action_columns} for the signed action embedding"
            )
        self.columns = config.num_action_columns
        self.table = nn.Parameter(torch.zeros(1, config.hash_width))

    def forward(self, actions: Tensor) -> Tensor:
        """[B, S, N_a] 0/1 -> [B, S, W]"""
        slices = self.table.view(self.columns, -1)  # [N_a, W / N_a]
        signed = (2 * actions.to(slices.dtype) - 1)[..., None] * slices
        has_action = (actions != 0).any(-1, keepdim=True).to(slices.dtype)
        return signed.flatten(-2) * has_action


class HistoryContext(nn.Module):
    """Timezone, local hour and day of week of an impression, concatenated and projected to W."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.timezone = Categorical(config.num_timezones, config.ctx_timezone_dim)
        self.hour = Categorical(config.num_hours, config.ctx_hour_dim)
        self.day = Categorical(config.num_days_of_week, config.ctx_day_dim)
        width = config.ctx_timezone_dim + config.ctx_hour_dim + config.ctx_day_dim
        self.proj = nn.Linear(width, config.hash_width, bias=False)

    def forward(self, context: Tensor) -> Tensor:
        parts = [
            self.timezone(context[..., TIMEZONE]),
            self.hour(context[..., LOCAL_HOUR]),
            self.day(context[..., DAY_OF_WEEK]),
        ]
        return self.proj(torch.cat(parts, -1))


class RetrievalModel(nn.Module):
    """Both towers over one embedding table of their own, trained together.

    `embed_users` is the user tower and `embed_posts` the candidate tower; the export step wraps
    each in a fixed-signature module.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        w, d = config.hash_width, config.emb_dim
        self.table = nn.Embedding(config.table_rows, w)
        self.sids = SemanticIds(config, w)
        self.actions = SignedActions(config)
        self.context = HistoryContext(config)
        self.history_proj = nn.Linear(5 * w, w, bias=False)  # X's proj_mat_3
        self.tfmr_proj = nn.Linear(w, d, bias=False) if w != d else nn.Identity()
        self.user_trunk = Trunk(config)
        self.candidate_mlp = nn.Sequential(
            nn.Linear(3 * w, config.candidate_hidden_dim, bias=False),
            nn.SiLU(),
            nn.Linear(config.candidate_hidden_dim, d, bias=False),
        )
        self._init_weights(config)

    def _init_weights(self, config: ModelConfig) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=1.0 / math.sqrt(module.in_features))
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=1.0)
        nn.init.normal_(self.actions.table, std=1.0)
        with torch.no_grad():
            self.table.weight[0].zero_()
        init_trunk(self.user_trunk, config)

    def _rows(self, hashes: Tensor) -> Tensor:
        return self.table(hashes.long()).flatten(-2)  # [..., 2W]

    def history_tokens(self, h: HistoryInputs) -> tuple[Tensor, Tensor]:
        """[B, S, D] tokens and the valid mask [B, S]."""
        parts = [
            self.sids(h.history_post_hash, h.history_sids),
            self._rows(h.history_author_hash),
            self.actions(h.history_actions),
            self.context(h.history_context),
        ]
        tokens = self.history_proj(torch.cat(parts, -1)) * math.sqrt(self.config.hash_width)
        return self.tfmr_proj(tokens), h.history_post_hash[..., 0] != 0

    def embed_users(self, history: HistoryInputs, *, x_user_tower_attention: bool = True) -> Tensor:
        """User tower: [B, D] unit-norm embeddings (zero for a viewer with no history)."""
        if not is_building_graph():
            history.validate(self.config, history.history_post_hash.shape[0])
        tokens, valid = self.history_tokens(history)
        positions = right_anchored_positions(valid, 0, self.config.history_len, 0)
        active = valid if x_user_tower_attention else torch.zeros_like(valid)
        out = self.user_trunk.forward_split(tokens, valid, active, positions)
        weights = valid.to(out.dtype).unsqueeze(-1)  # [B, S, 1]
        pooled = (out * weights).sum(1) / weights.sum(1).clamp_min(1.0)  # mean over valid
        return F.normalize(pooled.float(), dim=-1, eps=NORM_EPS)

    def embed_posts(self, post_hash: Tensor, author_hash: Tensor, sids: Tensor) -> Tensor:
        """Candidate tower: [N, 2] post rows, [N, 2] author rows, [N, K] codes -> [N, D]."""
        _check_post_inputs(self.config, post_hash, author_hash, sids)
        features = torch.cat([self._rows(author_hash), self.sids(post_hash, sids)], -1)
        return F.normalize(self.candidate_mlp(features).float(), dim=-1, eps=NORM_EPS)


def _check_post_inputs(
    config: ModelConfig, post_hash: Tensor, author_hash: Tensor, sids: Tensor
) -> None:
    if is_building_graph():
        return
    n = post_hash.shape[0] if isinstance(post_hash, Tensor) and post_hash.dim() else None
    check_tensor(post_hash, "post_hash", (n, 2), INT_DTYPES)
    check_tensor(author_hash, "author_hash", (n, 2), INT_DTYPES)
    check_tensor(sids, "sids", (n, config.sid_levels), INT_DTYPES)
    check_rows(post_hash, "post_hash", config.rows("post"))
    check_rows(author_hash, "author_hash", config.rows("author"))
    check_range(sids, "sids", config.sid_codes + 1)
