"""Transformer building blocks shared by the ranker and the user tower (DESIGN.md 4.3).

Every attention call takes a *context* (the user token and the history, which attend to each other
in both directions) and optional *candidates* (each attends to the valid context and to itself,
never to another candidate). `attend_full_mask` is the plain reference over the concatenated
sequence; `attend_split` computes the same thing in O(L^2 + C*L) by letting each candidate's query
read the context keys plus its own key. Both must agree to 1e-5.
"""

from __future__ import annotations

import math

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
        # x: [B, H, T, dk]; positions: [T] (integer positions, shared by the batch)
        angles = positions.float()[:, None] * self.inv_freq[None, :]  # [T, dk/2]
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class Attention(nn.Module):
    """Grouped-query attention: query head i reads key/value head i // (H_q / H_kv)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.num_q_heads = config.num_q_heads
        self.num_kv_heads = config.num_kv_heads
        self.group = config.num_q_heads // config.num_kv_heads
        self.key_size = config.key_size
        self.logit_cap = config.attn_logit_cap
        d, dk = config.emb_dim, config.key_size
        self.q_proj = nn.Linear(d, config.num_q_heads * dk, bias=False)
        self.k_proj = nn.Linear(d, config.num_kv_heads * dk, bias=False)
        self.v_proj = nn.Linear(d, config.num_kv_heads * dk, bias=False)
        self.o_proj = nn.Linear(config.num_q_heads * dk, d, bias=False)
        self.rotary = Rotary(dk, config.rope_base)

    def _heads(self, x: Tensor, proj: nn.Linear, heads: int, positions: Tensor | None) -> Tensor:
        b, t, _ = x.shape
        out = proj(x).view(b, t, heads, self.key_size).transpose(1, 2)  # [B, heads, T, dk]
        return self.rotary(out, positions) if positions is not None else out

    def _logits(self, q: Tensor, k: Tensor) -> Tensor:
        """Scaled, optionally soft-capped logits in fp32. q: [B,Hkv,G*Tq,dk], k: [B,Hkv,Tk,dk]."""
        logits = torch.matmul(q, k.transpose(-1, -2)).float() / math.sqrt(self.key_size)
        if self.logit_cap is not None:
            logits = self.logit_cap * torch.tanh(logits / self.logit_cap)
        return logits

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
        self,
        ctx: Tensor,
        ctx_valid: Tensor,
        ctx_positions: Tensor,
        cand: Tensor | None,
        cand_position: Tensor,
    ) -> tuple[Tensor, Tensor | None]:
        """Context self-attention, then candidates over (context keys + own key).

        ctx: [B, L, D]; ctx_valid: [B, L] bool; cand: [B, C, D] or None.
        """
        ctx_len = ctx.shape[1]
        q = self._group_queries(self._heads(ctx, self.q_proj, self.num_q_heads, ctx_positions))
        k = self._heads(ctx, self.k_proj, self.num_kv_heads, ctx_positions)  # [B, Hkv, L, dk]
        v = self._heads(ctx, self.v_proj, self.num_kv_heads, None)
        key_mask = ctx_valid[:, None, None, :]  # [B, 1, 1, L]
        logits = self._logits(q, k).masked_fill(~key_mask, MASK_VALUE)  # [B, Hkv, G*L, L]
        weights = logits.softmax(dim=-1).to(v.dtype)
        ctx_out = self._merge_heads(torch.matmul(weights, v), ctx_len)
        if cand is None:
            return ctx_out, None

        n = cand.shape[1]
        cand_pos = cand_position.expand(n)
        qc = self._group_queries(self._heads(cand, self.q_proj, self.num_q_heads, cand_pos))
        kc = self._heads(cand, self.k_proj, self.num_kv_heads, cand_pos)  # [B, Hkv, C, dk]
        vc = self._heads(cand, self.v_proj, self.num_kv_heads, None)
        # Each candidate's own key, repeated for the G query heads of its kv head.
        kc_g = kc.unsqueeze(2).expand(-1, -1, self.group, -1, -1).reshape(qc.shape)
        vc_g = vc.unsqueeze(2).expand(-1, -1, self.group, -1, -1).reshape(qc.shape)
        ctx_logits = self._logits(qc, k).masked_fill(~key_mask, MASK_VALUE)  # [B, Hkv, G*C, L]
        self_logits = (qc * kc_g).sum(-1, keepdim=True).float() / math.sqrt(self.key_size)
        if self.logit_cap is not None:
            self_logits = self.logit_cap * torch.tanh(self_logits / self.logit_cap)
        weights = torch.cat([ctx_logits, self_logits], dim=-1).softmax(dim=-1).to(v.dtype)
        cand_out = torch.matmul(weights[..., :ctx_len], v) + weights[..., ctx_len:] * vc_g
        return ctx_out, self._merge_heads(cand_out, n)

    def attend_full_mask(self, x: Tensor, mask: Tensor, positions: Tensor) -> Tensor:
        """Reference: attention over the whole sequence with an explicit [B, T, T] mask."""
        t = x.shape[1]
        q = self._group_queries(self._heads(x, self.q_proj, self.num_q_heads, positions))
        k = self._heads(x, self.k_proj, self.num_kv_heads, positions)
        v = self._heads(x, self.v_proj, self.num_kv_heads, None)
        b = x.shape[0]
        logits = self._logits(q, k).view(b, self.num_kv_heads, self.group, t, t)
        logits = logits.masked_fill(~mask[:, None, None], MASK_VALUE)
        weights = logits.view(b, self.num_kv_heads, self.group * t, t).softmax(-1).to(v.dtype)
        return self._merge_heads(torch.matmul(weights, v), t)


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
        self,
        ctx: Tensor,
        ctx_valid: Tensor,
        ctx_positions: Tensor,
        cand: Tensor | None,
        cand_position: Tensor,
    ) -> tuple[Tensor, Tensor | None]:
        ctx_attn, cand_attn = self.attn.attend_split(
            self.attn_norm(ctx),
            ctx_valid,
            ctx_positions,
            None if cand is None else self.attn_norm(cand),
            cand_position,
        )
        ctx = self._ffn(ctx + self.attn_out_norm(ctx_attn))
        if cand is None or cand_attn is None:
            return ctx, None
        return ctx, self._ffn(cand + self.attn_out_norm(cand_attn))

    def forward_full_mask(self, x: Tensor, mask: Tensor, positions: Tensor) -> Tensor:
        x = x + self.attn_out_norm(self.attn.attend_full_mask(self.attn_norm(x), mask, positions))
        return self._ffn(x)


class Trunk(nn.Module):
    """The stack of blocks plus the final norm."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.final_norm = RMSNorm(config.emb_dim, config.norm_eps)

    def forward_split(
        self,
        ctx: Tensor,
        ctx_valid: Tensor,
        ctx_positions: Tensor,
        cand: Tensor,
        cand_position: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """Context and candidates through every block; both normed. cand: [B, C, D]."""
        cand_out: Tensor | None = cand
        for block in self.blocks:
            ctx, cand_out = block.forward_split(
                ctx, ctx_valid, ctx_positions, cand_out, cand_position
            )
        if cand_out is None:  # unreachable: blocks return candidates when given them
            raise RuntimeError("trunk lost the candidate stream")
        return self.final_norm(ctx), self.final_norm(cand_out)

    def forward_context(self, ctx: Tensor, ctx_valid: Tensor, ctx_positions: Tensor) -> Tensor:
        """Context only (the user tower): no candidates."""
        unused = torch.zeros((), dtype=torch.long, device=ctx.device)
        for block in self.blocks:
            ctx, _ = block.forward_split(ctx, ctx_valid, ctx_positions, None, unused)
        return self.final_norm(ctx)

    def forward_full_mask(self, x: Tensor, mask: Tensor, positions: Tensor) -> Tensor:
        for block in self.blocks:
            x = block.forward_full_mask(x, mask, positions)
        return self.final_norm(x)
