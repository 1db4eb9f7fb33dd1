"""Transformer building blocks shared by the ranker and the user tower (docs/DESIGN.md §4.3).

A sequence is a *context* (the user token and the history, which attend to each other in both
directions) followed by zero or more *candidates* (each attends to the valid context and to itself,
never to another candidate). `attend_full_mask` is the plain reference with an explicit mask;
`attend_split` computes the same thing in O(L^2 + C*L) by letting each candidate's query read the
context keys plus its own key. Both must agree to 1e-5.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from phoenix.config import ModelConfig

#: Masked logits are set to this finite value, never -inf, so an all-masked row cannot give NaN.
MASK_VALUE = -1e9


class RMSNorm(nn.Module):
    """Root-mean-square norm computed in fp32 whatever the activation dtype."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return (normed * self.scale.float()).to(x.dtype)


class Rotary(nn.Module):
    """Rotary position embedding, half-split layout: rotate (x[:d/2], x[d/2:]) pairs."""

    def __init__(self, key_size: int, base: float) -> None:
        super().__init__()
        inv_freq = base ** (-torch.arange(0, key_size, 2, dtype=torch.float32) / key_size)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, x: Tensor, positions: Tensor) -> Tensor:
        # x: [B, H, T, dk]; positions: [B, T] integer positions (each viewer's own)
        angles = positions.float()[:, None, :, None] * self.inv_freq  # [B, 1, T, dk/2]
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class Attention(nn.Module):
    """Grouped-query attention: query head i reads key/value head i // (H_q / H_kv).

    As in X: optional qk-norm (one RMSNorm over all query heads together, one over all key heads,
    before rotary), logits scaled by `config.attn_scale`, no biases.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.num_q_heads = config.num_q_heads
        self.num_kv_heads = config.num_kv_heads
        self.group = config.num_q_heads // config.num_kv_heads
        self.key_size = config.key_size
        self.scale = config.attn_scale
        self.logit_cap = config.attn_logit_cap
        d, dk = config.emb_dim, config.key_size
        self.q_proj = nn.Linear(d, config.num_q_heads * dk, bias=False)
        self.k_proj = nn.Linear(d, config.num_kv_heads * dk, bias=False)
        self.v_proj = nn.Linear(d, config.num_kv_heads * dk, bias=False)
        self.o_proj = nn.Linear(config.num_q_heads * dk, d, bias=False)
        self.rotary = Rotary(dk, config.rope_base)
        qk_norm = config.qk_norm
        self.q_norm = RMSNorm(config.num_q_heads * dk, config.norm_eps) if qk_norm else None
        self.k_norm = RMSNorm(config.num_kv_heads * dk, config.norm_eps) if qk_norm else None

    def _heads(
        self,
        x: Tensor,
        proj: nn.Linear,
        heads: int,
        positions: Tensor | None,
        norm: RMSNorm | None = None,
    ) -> Tensor:
        b, t, _ = x.shape
        out = proj(x)
        if norm is not None:
            out = norm(out)
        out = out.view(b, t, heads, self.key_size).transpose(1, 2)  # [B, heads, T, dk]
        return self.rotary(out, positions) if positions is not None else out

    def _qkv(self, x: Tensor, positions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Queries grouped per kv head [B, Hkv, G*T, dk], keys and values [B, Hkv, T, dk]."""
        q = self._heads(x, self.q_proj, self.num_q_heads, positions, self.q_norm)
        k = self._heads(x, self.k_proj, self.num_kv_heads, positions, self.k_norm)
        v = self._heads(x, self.v_proj, self.num_kv_heads, None)
        return self._group_queries(q), k, v

    def _logits(self, q: Tensor, k: Tensor) -> Tensor:
        """Scaled, optionally soft-capped logits in fp32. q: [B,Hkv,G*Tq,dk], k: [B,Hkv,Tk,dk]."""
        return self._cap(torch.matmul(q, k.transpose(-1, -2)).float() * self.scale)

    def _cap(self, logits: Tensor) -> Tensor:
        """Optional soft cap `c * tanh(x / c)`."""
        if self.logit_cap is None:
            return logits
        return self.logit_cap * torch.tanh(logits / self.logit_cap)

    def _group_queries(self, q: Tensor) -> Tensor:
        # [B, Hq, T, dk] -> [B, Hkv, G*T, dk]: the G query heads sharing one kv head side by side.
        b, _, t, dk = q.shape
        return q.reshape(b, self.num_kv_heads, self.group * t, dk)

    def _merge_heads(self, out: Tensor, t: int) -> Tensor:
        # [B, Hkv, G*T, dk] -> [B, T, Hq*dk] -> [B, T, D]
        b = out.shape[0]
        out = out.reshape(b, self.num_q_heads, t, self.key_size).transpose(1, 2)
        return self.o_proj(out.reshape(b, t, self.num_q_heads * self.key_size))

    def attend_split(
        self, x: Tensor, ctx_keys: Tensor, ctx_active: Tensor, positions: Tensor
    ) -> Tensor:
        """Context self-attention plus isolated candidates, in O(L^2 + C*L).

        x: [B, L+C, D], the context (prefix + history, L = ctx_keys.shape[1]) then C candidates
        (C may be 0); ctx_keys: [B, L] bool, the context keys every query may read; ctx_active:
        [B, L] bool, the context rows that attend at all (padding rows output 0, as in X's
        kernels); positions: [B, L+C]. Projections run once over the whole sequence; only the
        attention itself is split: the context attends to the allowed context keys, and each
        candidate's query reads those keys plus its own key.
        """
        ctx_len, total = ctx_keys.shape[1], x.shape[1]
        q, k, v = self._qkv(x, positions)
        b, g = x.shape[0], self.group
        q = q.view(b, self.num_kv_heads, g, total, self.key_size)
        q_ctx = q[:, :, :, :ctx_len].reshape(b, self.num_kv_heads, g * ctx_len, self.key_size)
        k_ctx, v_ctx = k[:, :, :ctx_len], v[:, :, :ctx_len]
        key_mask = ctx_keys[:, None, None, :]  # [B, 1, 1, L]

        logits = self._logits(q_ctx, k_ctx).masked_fill(~key_mask, MASK_VALUE)  # [B,Hkv,G*L,L]
        ctx_out = torch.matmul(logits.softmax(dim=-1).to(v.dtype), v_ctx)
        ctx_out = ctx_out.view(b, self.num_kv_heads, g, ctx_len, self.key_size)
        ctx_out = ctx_out * ctx_active[:, None, None, :, None].to(ctx_out.dtype)
        if total == ctx_len:
            return self._merge_heads(ctx_out.flatten(2, 3), total)

        n = total - ctx_len
        q_c = q[:, :, :, ctx_len:]  # [B, Hkv, G, C, dk]
        k_c, v_c = k[:, :, None, ctx_len:], v[:, :, None, ctx_len:]  # [B, Hkv, 1, C, dk]
        ctx_logits = self._logits(q_c.reshape(b, self.num_kv_heads, g * n, self.key_size), k_ctx)
        ctx_logits = ctx_logits.masked_fill(~key_mask, MASK_VALUE)  # [B, Hkv, G*C, L]
        self_logits = self._cap((q_c * k_c).sum(-1).float() * self.scale)
        weights = torch.cat([ctx_logits, self_logits.reshape(b, self.num_kv_heads, g * n, 1)], -1)
        weights = weights.softmax(dim=-1).to(v.dtype)
        cand_out = torch.matmul(weights[..., :ctx_len], v_ctx).view(q_c.shape)
        cand_out = cand_out + weights[..., ctx_len:].view(*q_c.shape[:-1], 1) * v_c
        out = torch.cat([ctx_out, cand_out], dim=3)  # [B, Hkv, G, T, dk]
        return self._merge_heads(out.flatten(2, 3), total)

    def attend_full_mask(
        self, x: Tensor, mask: Tensor, active: Tensor, positions: Tensor
    ) -> Tensor:
        """Reference: attention over the whole sequence with an explicit [B, T, T] mask; rows
        where `active` [B, T] is False output 0."""
        b, t = x.shape[:2]
        q, k, v = self._qkv(x, positions)
        logits = self._logits(q, k).view(b, self.num_kv_heads, self.group, t, t)
        logits = logits.masked_fill(~mask[:, None, None], MASK_VALUE)
        weights = logits.softmax(-1) * active[:, None, None, :, None]
        weights = weights.view(b, self.num_kv_heads, self.group * t, t).to(v.dtype)
        return self._merge_heads(torch.matmul(weights, v), t)


def right_anchored_positions(
    ctx_valid: Tensor, prefix_len: int, history_len: int, num_candidates: int
) -> Tensor:
    """[B, L+C] rotary positions (X's `right_anchored_rope_positions`): the prefix tokens take
    0..P-1, the n valid history items end at P+S-1 (newest last), every candidate takes P+S,
    padding takes 0. S is the config's history length, so padding a history changes nothing."""
    b = ctx_valid.shape[0]
    anchor = prefix_len + history_len
    hist_valid = ctx_valid[:, prefix_len:].long()
    n = hist_valid.sum(1, keepdim=True)
    rank = hist_valid.cumsum(1) - 1
    hist_pos = torch.where(hist_valid.bool(), anchor - n + rank, torch.zeros_like(rank))
    prefix = torch.arange(prefix_len, device=ctx_valid.device).expand(b, prefix_len)
    cand = torch.full((b, num_candidates), anchor, device=ctx_valid.device, dtype=torch.long)
    return torch.cat([prefix, hist_pos, cand], 1)


class FeedForward(nn.Module):
    """`down(gelu_tanh(up(x)))`, or the gated form `down(gelu_tanh(gate(x)) * up(x))`."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        d, f = config.emb_dim, config.ffn_dim
        self.up = nn.Linear(d, f, bias=False)
        self.gate = nn.Linear(d, f, bias=False) if config.gated_ffn else None
        self.down = nn.Linear(f, d, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        if self.gate is None:
            return self.down(F.gelu(self.up(x), approximate="tanh"))
        return self.down(F.gelu(self.gate(x), approximate="tanh") * self.up(x))


class Block(nn.Module):
    """Pre-norm residual block: `h += Attn(norm(h))`, `h += FFN(norm(h))`."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        eps = config.norm_eps
        self.attn_norm = RMSNorm(config.emb_dim, eps)
        self.attn = Attention(config)
        self.ffn_norm = RMSNorm(config.emb_dim, eps)
        self.ffn = FeedForward(config)
        post = config.post_sublayer_norm
        self.attn_out_norm = RMSNorm(config.emb_dim, eps) if post else nn.Identity()
        self.ffn_out_norm = RMSNorm(config.emb_dim, eps) if post else nn.Identity()

    def _ffn(self, h: Tensor) -> Tensor:
        return h + self.ffn_out_norm(self.ffn(self.ffn_norm(h)))

    def forward_split(
        self, x: Tensor, ctx_keys: Tensor, ctx_active: Tensor, positions: Tensor
    ) -> Tensor:
        attn = self.attn.attend_split(self.attn_norm(x), ctx_keys, ctx_active, positions)
        return self._ffn(x + self.attn_out_norm(attn))

    def forward_full_mask(
        self, x: Tensor, mask: Tensor, active: Tensor, positions: Tensor
    ) -> Tensor:
        attn = self.attn.attend_full_mask(self.attn_norm(x), mask, active, positions)
        return self._ffn(x + self.attn_out_norm(attn))


class Trunk(nn.Module):
    """The stack of blocks plus the final norm."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.final_norm = RMSNorm(config.emb_dim, config.norm_eps)

    def forward_split(
        self, x: Tensor, ctx_keys: Tensor, ctx_active: Tensor, positions: Tensor
    ) -> Tensor:
        """`[context | candidates]` with the split attention; x: [B, L+C, D], C may be 0."""
        for block in self.blocks:
            x = block.forward_split(x, ctx_keys, ctx_active, positions)
        return self.final_norm(x)

    def forward_full_mask(
        self, x: Tensor, mask: Tensor, active: Tensor, positions: Tensor
    ) -> Tensor:
        for block in self.blocks:
            x = block.forward_full_mask(x, mask, active, positions)
        return self.final_norm(x)
