"""The Phoenix ranker (DESIGN.md 4.2-4.5).

Reads `[user | history | candidates]` and predicts, for every candidate, the probability of
each action in `phoenix.actions.ACTIONS` plus the dwell time. Candidates are isolated: each attends
to the valid user/history tokens and to itself only, so its score does not depend on the others.

Two forward paths compute the same numbers:
- `forward_reference`: one transformer pass over the concatenated sequence with an explicit mask
  (O((S+C)^2)), the readable definition;
- `forward`: the serving form. History never attends to candidates, so it is computed once; in each
  layer each candidate's query reads the history keys plus its own key (O(S^2 + C*S)).

Positions: user and history take 0..S (slot index); every candidate takes `config.sequence_len`
(= 1 + config.history_len), so a shorter history padded up to the config's length scores the same.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from export.models.embedding import TokenEmbedder
from export.models.inputs import RankerInputs
from export.models.layers import Trunk
from phoenix.actions import DWELL_TIME_SCALE_S
from phoenix.config import ModelConfig


class RankerOutput(NamedTuple):
    action_logits: Tensor  # [B, C, A]
    dwell_logit: Tensor  # [B, C]

    @property
    def action_probs(self) -> Tensor:
        return torch.sigmoid(self.action_logits.float())

    @property
    def dwell_time(self) -> Tensor:
        """Predicted dwell time in seconds."""
        return DWELL_TIME_SCALE_S * torch.sigmoid(self.dwell_logit.float())


class PhoenixRanker(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = TokenEmbedder(config)
        self.trunk = Trunk(config)
        self.unembed = nn.Linear(config.emb_dim, config.num_actions, bias=False)  # [D, A]
        self.dwell_head = nn.Linear(config.emb_dim, 1, bias=False)  # [D, 1]
        init_trunk(self.trunk, config)

    def _heads(self, cand: Tensor) -> RankerOutput:
        return RankerOutput(self.unembed(cand), self.dwell_head(cand).squeeze(-1))

    def forward(self, inputs: RankerInputs) -> RankerOutput:
        """One-pass form: context computed once, candidates attend to its keys plus their own."""
        inputs.validate(self.config)
        ctx, ctx_valid = self.embed.context(inputs.history)  # [B, L, D], [B, L]
        cand = self.embed.candidates(inputs.candidates)  # [B, C, D]
        ctx_len = ctx.shape[1]
        out = self.trunk.forward_split(
            torch.cat([ctx, cand], dim=1), ctx_valid, self._positions(ctx_len, cand.shape[1])
        )
        return self._heads(out[:, ctx_len:])

    def forward_reference(self, inputs: RankerInputs) -> RankerOutput:
        """Full-mask reference over the whole sequence; the fast form is tested against it."""
        inputs.validate(self.config)
        ctx, ctx_valid = self.embed.context(inputs.history)
        cand = self.embed.candidates(inputs.candidates)
        ctx_len, n = ctx.shape[1], cand.shape[1]
        x = torch.cat([ctx, cand], dim=1)  # [B, L+C, D]
        mask = candidate_isolation_mask(ctx_valid, n)  # [B, L+C, L+C]
        out = self.trunk.forward_full_mask(x, mask, self._positions(ctx_len, n))
        return self._heads(out[:, ctx_len:])

    def _positions(self, ctx_len: int, num_candidates: int) -> Tensor:
        """Slot index for user and history; `config.sequence_len` for every candidate."""
        device = self.unembed.weight.device
        return torch.cat(
            [
                torch.arange(ctx_len, device=device),
                torch.full((num_candidates,), self.config.sequence_len, device=device),
            ]
        )


def candidate_isolation_mask(ctx_valid: Tensor, num_candidates: int) -> Tensor:
    """[B, L+C, L+C] bool: who may attend to whom.

    Context rows see every valid context key (both directions); candidate rows see every valid
    context key and their own key, never another candidate.
    """
    b, ctx_len = ctx_valid.shape
    total = ctx_len + num_candidates
    key_valid = torch.cat(
        [ctx_valid, torch.zeros(b, num_candidates, dtype=torch.bool, device=ctx_valid.device)], 1
    )
    mask = key_valid[:, None, :].expand(b, total, total).clone()
    own = torch.arange(ctx_len, total, device=ctx_valid.device)
    mask[:, own, own] = True
    return mask


def init_trunk(trunk: Trunk, config: ModelConfig) -> None:
    """GPT-2 style: small normal weights, residual outputs scaled down by depth."""
    residual_std = 0.02 / (2 * config.num_layers) ** 0.5
    for name, param in trunk.named_parameters():
        if param.dim() < 2:
            continue
        is_residual_out = name.endswith(("o_proj.weight", "down.weight"))
        nn.init.normal_(param, std=residual_std if is_residual_out else 0.02)
