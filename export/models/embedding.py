"""Turning hashed rows into tokens (DESIGN.md 4.2).

One shared table of width W holds users, posts and authors. A token projects its rows to D
(each hash row by its own W x D block, summed: a single Linear over the concatenated rows), adds
the surface embedding and, for history, the actions (multi-hot row times an [A, D] table), and is
multiplied by sqrt(D). No biases anywhere.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from export.models.inputs import CandidateInputs, HistoryInputs
from phoenix.config import ModelConfig


class TokenEmbedder(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        d, w = config.emb_dim, config.hash_width
        self.scale = math.sqrt(d)
        self.table = nn.Embedding(config.table_rows, w, padding_idx=0)
        self.user_proj = nn.Linear(2 * w, d, bias=False)  # 2 user rows
        self.item_proj = nn.Linear(4 * w, d, bias=False)  # 2 post rows + 2 author rows
        self.surface = nn.Embedding(config.num_surfaces, d)
        self.actions = nn.Linear(config.num_actions, d, bias=False)  # multi-hot @ [A, D]
        self._init_weights(config)

    def _init_weights(self, config: ModelConfig) -> None:
        # Unit-variance rows; projections sized so a token has unit variance after * sqrt(D).
        d, w = config.emb_dim, config.hash_width
        nn.init.normal_(self.table.weight, std=1.0)
        with torch.no_grad():
            self.table.weight[0].zero_()
        nn.init.normal_(self.user_proj.weight, std=1.0 / math.sqrt(2 * w * d))
        nn.init.normal_(self.item_proj.weight, std=1.0 / math.sqrt(4 * w * d))
        nn.init.normal_(self.surface.weight, std=0.1 / math.sqrt(d))
        nn.init.normal_(self.actions.weight, std=1.0 / math.sqrt(d))

    def _rows(self, hashes: Tensor) -> Tensor:
        # [..., k] row indices -> [..., k * W] concatenated rows
        rows = self.table(hashes)
        return rows.flatten(-2)  # not reshape(..., -1): that fails on an empty history

    def user_token(self, user_hash: Tensor) -> Tensor:
        """[B, 2] -> [B, 1, D]"""
        return (self.user_proj(self._rows(user_hash)) * self.scale).unsqueeze(1)

    def item_tokens(self, post_hash: Tensor, author_hash: Tensor, surface: Tensor) -> Tensor:
        """[B, N, 2] x2, [B, N] -> [B, N, D], without actions (candidates)."""
        rows = self._rows(torch.cat([post_hash, author_hash], dim=-1))  # [B, N, 4W]
        return (self.item_proj(rows) + self.surface(surface)) * self.scale

    def history_tokens(self, history: HistoryInputs) -> Tensor:
        """[B, S, D]: item tokens plus the embedded actions."""
        items = self.item_tokens(
            history.history_post_hash, history.history_author_hash, history.history_surface
        )
        actions = self.actions(history.history_actions.to(items.dtype)) * self.scale
        return items + actions

    def context(self, history: HistoryInputs) -> tuple[Tensor, Tensor]:
        """The `[user | history]` tokens [B, 1+S, D] and their validity mask [B, 1+S]."""
        tokens = torch.cat([self.user_token(history.user_hash), self.history_tokens(history)], 1)
        valid = torch.cat(
            [history.user_hash[:, :1] != 0, history.history_post_hash[..., 0] != 0], dim=1
        )
        return tokens, valid

    def candidates(self, candidates: CandidateInputs) -> Tensor:
        return self.item_tokens(
            candidates.candidate_post_hash,
            candidates.candidate_author_hash,
            candidates.candidate_surface,
        )
