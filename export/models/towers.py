"""The two-tower retrieval model (DESIGN.md 4.6).

- user tower: the ranker's trunk over `[user | history]` (no candidates), final norm, mean over the
  valid positions, L2-normalised;
- candidate tower: the post's 2 rows and the author's 2 rows concatenated, Linear(4W -> 2D), SiLU,
  Linear(2D -> D), L2-normalised.
Both towers read one embedding table of their own; similarity is the dot product, and the ANN index
holds the candidate tower's output for every post.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from export.models.embedding import TokenEmbedder
from export.models.inputs import (
    INT_DTYPES,
    HistoryInputs,
    check_rows,
    check_tensor,
    is_building_graph,
)
from export.models.layers import Trunk
from export.models.ranker import init_trunk
from phoenix.config import ModelConfig


class RetrievalModel(nn.Module):
    """Both towers over one embedding table of their own, trained together.

    `embed_users` is the user tower and `embed_posts` the candidate tower; the export step wraps
    each in a fixed-signature module.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = TokenEmbedder(config)
        self.user_trunk = Trunk(config)
        w, d = config.hash_width, config.emb_dim
        self.candidate_mlp = nn.Sequential(
            nn.Linear(4 * w, 2 * d, bias=False), nn.SiLU(), nn.Linear(2 * d, d, bias=False)
        )
        init_trunk(self.user_trunk, config)

    def embed_users(self, history: HistoryInputs) -> Tensor:
        """User tower: [B, D] unit-norm embeddings of `[user | history]`."""
        history.validate(self.config)
        ctx, valid = self.embed.context(history)  # [B, L, D], [B, L]
        positions = torch.arange(ctx.shape[1], device=ctx.device)
        out = self.user_trunk.forward_split(ctx, valid, positions)
        weights = valid.to(out.dtype).unsqueeze(-1)  # [B, L, 1]
        pooled = (out * weights).sum(1) / weights.sum(1).clamp_min(1.0)  # mean over valid
        return F.normalize(pooled.float(), dim=-1)

    def embed_posts(self, post_hash: Tensor, author_hash: Tensor) -> Tensor:
        """Candidate tower: [N, 2] post rows and [N, 2] author rows -> [N, D] unit-norm."""
        _check_post_rows(self.config, post_hash, author_hash)
        rows = self.embed.table(torch.cat([post_hash, author_hash], dim=-1))  # [N, 4, W]
        return F.normalize(self.candidate_mlp(rows.flatten(1)).float(), dim=-1)


def _check_post_rows(config: ModelConfig, post_hash: Tensor, author_hash: Tensor) -> None:
    if is_building_graph():
        return
    n = post_hash.shape[0] if isinstance(post_hash, Tensor) and post_hash.dim() else None
    check_tensor(post_hash, "post_hash", (n, 2), INT_DTYPES)
    check_tensor(author_hash, "author_hash", (n, 2), INT_DTYPES)
    check_rows(post_hash, "post_hash", config.post_offset, config.num_post_rows)
    check_rows(author_hash, "author_hash", config.author_offset, config.num_author_rows)
