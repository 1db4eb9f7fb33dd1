"""The Phoenix ranker: X's `home_direct_packed` architecture (docs/FIDELITY.md).

Reads `[user | user features | history | candidates]` and predicts, for every candidate, a logit
for each of X's action columns (column i = X's proto `ActionName` i) and X's continuous outputs
(column 1 the dwell time in seconds). Candidates are isolated: each attends to the valid
prefix/history tokens and to itself only, so its score does not depend on the others.

Two forward paths compute the same numbers:
- `forward_reference`: one transformer pass over the concatenated sequence with an explicit mask
  (O((P+S+C)^2)), the readable definition;
- `forward`: the serving form. History never attends to candidates, so it is computed once; in each
  layer each candidate's query reads the context keys plus its own key (O(S^2 + C*S)).

Positions are X's right-anchored ones: the two prefix tokens take 0 and 1, the n valid history
items take P+S-n .. P+S-1 (the newest is last), every candidate takes P+S, padding takes 0; S is
the config's history length, so a shorter history padded up to it scores the same.

`x_serving_kernel=True` reproduces X's serving kernel instead of its training kernel: every key in
the 128-blocks up to the last valid context token is read, padded history included. That is a bug
in X's kernel (docs/FIDELITY.md) kept only for parity checks against X's own outputs.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from export.models.embedding import TokenEmbedder
from export.models.inputs import RankerInputs
from export.models.layers import Trunk, right_anchored_positions
from phoenix.config import GALLERY_SURFACE, PREFIX_LEN, ModelConfig

#: X's serving kernel reads whole blocks of this many keys.
X_KERNEL_BLOCK = 128
#: Column of the continuous outputs that holds the dwell time.
DWELL_COLUMN = 1
#: Dwell time: 30 * sigmoid(x) seconds, except on the gallery surface:
#: 300 * tanh(softplus(x) / 300).
DWELL_CAP_S = 30.0
GALLERY_DWELL_CAP_S = 300.0


class RankerOutput(NamedTuple):
    logits: Tensor  # [B, C, N_a] action logits, X's columns
    continuous: Tensor  # [B, C, N_cont], the dwell column activated (seconds)

    @property
    def log_probs(self) -> Tensor:
        """What X's serving returns: log sigmoid of the logits.

        Written out as min(x, 0) - log1p(exp(-|x|)): exported as is, `logsigmoid` becomes
        ONNX Runtime's approximate Sigmoid, off by 2e-3 at x = -11.
        """
        x = self.logits.float()
        return torch.clamp(x, max=0.0) - torch.log1p(torch.exp(-x.abs()))

    @property
    def probs(self) -> Tensor:
        return torch.sigmoid(self.logits.float())

    @property
    def dwell_time(self) -> Tensor:
        """Predicted dwell time in seconds [B, C]."""
        return self.continuous[..., DWELL_COLUMN].float()


class PhoenixRanker(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = TokenEmbedder(config)
        self.trunk = Trunk(config)
        self.unembed = nn.Linear(config.emb_dim, config.num_action_columns, bias=False)
        self.continuous_head = nn.Linear(config.emb_dim, config.num_continuous, bias=False)
        init_trunk(self.trunk, config)
        nn.init.normal_(self.unembed.weight, std=0.02)
        nn.init.normal_(self.continuous_head.weight, std=0.02)

    def _heads(self, cand: Tensor, surface: Tensor) -> RankerOutput:
        logits = self.unembed(cand) * self.config.logit_scale
        cont = self.continuous_head(cand).float()
        raw = cont[..., DWELL_COLUMN]
        gallery = GALLERY_DWELL_CAP_S * torch.tanh(F.softplus(raw) / GALLERY_DWELL_CAP_S)
        dwell = torch.where(surface == GALLERY_SURFACE, gallery, DWELL_CAP_S * torch.sigmoid(raw))
        cont = torch.cat(
            [cont[..., :DWELL_COLUMN], dwell[..., None], cont[..., DWELL_COLUMN + 1 :]], -1
        )
        return RankerOutput(logits, cont)

    def _tokens(self, inputs: RankerInputs) -> tuple[Tensor, Tensor, Tensor]:
        inputs.validate(self.config)
        ctx, ctx_valid = self.embed.context(inputs.user, inputs.history)  # [B, L, D], [B, L]
        cand = self.embed.candidate_tokens(inputs.candidates)  # [B, C, D]
        return ctx, ctx_valid, cand

    def forward(self, inputs: RankerInputs, *, x_serving_kernel: bool = False) -> RankerOutput:
        """One-pass form: context computed once, candidates attend to its keys plus their own."""
        ctx, ctx_valid, cand = self._tokens(inputs)
        ctx_len = ctx.shape[1]
        keys = serving_kernel_keys(ctx_valid) if x_serving_kernel else ctx_valid
        positions = right_anchored_positions(
            ctx_valid, PREFIX_LEN, self.config.history_len, cand.shape[1]
        )
        out = self.trunk.forward_split(torch.cat([ctx, cand], dim=1), keys, ctx_valid, positions)
        return self._heads(out[:, ctx_len:], inputs.candidates.candidate_surface)

    def forward_reference(
        self, inputs: RankerInputs, *, x_serving_kernel: bool = False
    ) -> RankerOutput:
        """Full-mask reference over the whole sequence; the fast form is tested against it."""
        ctx, ctx_valid, cand = self._tokens(inputs)
        ctx_len, n = ctx.shape[1], cand.shape[1]
        keys = serving_kernel_keys(ctx_valid) if x_serving_kernel else ctx_valid
        mask = candidate_isolation_mask(keys, n)  # [B, L+C, L+C]
        positions = right_anchored_positions(ctx_valid, PREFIX_LEN, self.config.history_len, n)
        active = torch.cat([ctx_valid, torch.ones_like(ctx_valid[:, :1]).expand(-1, n)], 1)
        x = torch.cat([ctx, cand], dim=1)
        out = self.trunk.forward_full_mask(x, mask, active, positions)
        return self._heads(out[:, ctx_len:], inputs.candidates.candidate_surface)


def serving_kernel_keys(ctx_valid: Tensor) -> Tensor:
    """[B, L] context keys X's serving kernel reads: every key in the 128-blocks up to the last
    valid context token, padding included (X's `pallas_ranker_attn_infer`)."""
    ctx_len = ctx_valid.shape[1]
    index = torch.arange(ctx_len, device=ctx_valid.device)
    last = torch.where(ctx_valid, index, torch.full_like(index, -1)).amax(1, keepdim=True)
    limit = torch.div(last + X_KERNEL_BLOCK, X_KERNEL_BLOCK, rounding_mode="floor") * X_KERNEL_BLOCK
    return index[None, :] < limit


def candidate_isolation_mask(ctx_valid: Tensor, num_candidates: int) -> Tensor:
    """[B, L+C, L+C] bool: who may attend to whom.

    Context rows see every allowed context key (both directions); candidate rows see every allowed
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
