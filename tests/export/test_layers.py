"""`export.models.layers` (and the semantic-id hash level of `export.models.embedding`) against
hand-written float64 references: X's transformer (docs/FIDELITY.md, "Transformer")."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from export.models.embedding import SemanticIds
from export.models.layers import (
    MASK_VALUE,
    Attention,
    Block,
    FeedForward,
    RMSNorm,
    Rotary,
    Trunk,
    right_anchored_positions,
)
from phoenix.config import ModelConfig

F64 = torch.float64


# References ----------------------------------------------------------------------------------
def rms_norm_ref(x: Tensor, scale: Tensor, eps: float) -> Tensor:
    x = x.to(F64)
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * scale.to(F64)


def rotate_ref(x: Tensor, positions: Tensor, base: float = 10000.0) -> Tensor:
    """Half-split rotary as complex multiplication: pair i is (x[i], x[i + d/2]), angle p * θ_i.

    x: [B, H, T, dk] (or [B, T, dk]); positions: [B, T], each viewer's own."""
    x = x.to(F64)
    half = x.shape[-1] // 2
    theta = base ** (-2.0 * torch.arange(half, dtype=F64) / x.shape[-1])
    angles = positions.to(F64)[..., None] * theta  # [B, T, d/2]
    if x.dim() == 4:
        angles = angles[:, None]
    z = torch.complex(x[..., :half], x[..., half:]) * torch.polar(torch.ones_like(angles), angles)
    return torch.cat([z.real, z.imag], dim=-1)


def gelu_tanh_ref(x: Tensor) -> Tensor:
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def naive_attention(
    attn: Attention,
    x: Tensor,
    mask: Tensor,
    positions: Tensor,
    cap: float | None,
    kv_head_of: str = "grouped",
    active: Tensor | None = None,
) -> Tensor:
    """Head by head in float64; query head i reads kv head i // (H_q / H_kv). mask: [B, T, T];
    positions: [B, T]; rows where `active` [B, T] is False output 0.

    X's attention: qk-norm (one RMSNorm over all query heads' concatenated projections, one over
    all key heads'), then rotary, logits scaled by sqrt(128) / d_k, an optional soft cap."""
    x = x.to(F64)
    wq, wk, wv, wo = (
        p.weight.to(F64) for p in (attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj)
    )
    hq, hkv, dk = attn.num_q_heads, attn.num_kv_heads, attn.key_size
    q_all, k_all = x @ wq.T, x @ wk.T
    if attn.q_norm is not None:
        q_all = rms_norm_ref(q_all, attn.q_norm.scale, attn.q_norm.eps)
        k_all = rms_norm_ref(k_all, attn.k_norm.scale, attn.k_norm.eps)  # type: ignore[union-attr]
    heads = []
    for i in range(hq):
        j = i // (hq // hkv) if kv_head_of == "grouped" else i % hkv
        q = rotate_ref(q_all[..., i * dk : (i + 1) * dk], positions)
        k = rotate_ref(k_all[..., j * dk : (j + 1) * dk], positions)
        v = x @ wv[j * dk : (j + 1) * dk].T
        logits = q @ k.transpose(-1, -2) * (math.sqrt(128) / dk)
        if cap is not None:
            logits = cap * torch.tanh(logits / cap)
        logits = logits.masked_fill(~mask, -math.inf)
        out = torch.softmax(logits, dim=-1) @ v
        if active is not None:
            out = out * active[..., None]
        heads.append(out)
    return torch.cat(heads, dim=-1) @ wo.T


def isolation_mask(ctx_valid: Tensor, num_candidates: int) -> Tensor:
    """docs/DESIGN.md §4.4 written out with loops."""
    b, ctx_len = ctx_valid.shape
    total = ctx_len + num_candidates
    mask = torch.zeros(b, total, total, dtype=torch.bool)
    for bi in range(b):
        for row in range(total):
            for col in range(ctx_len):
                mask[bi, row, col] = bool(ctx_valid[bi, col])
            if row >= ctx_len:
                mask[bi, row, row] = True
    return mask


def layer_config(**changes: object) -> ModelConfig:
    base = {
        "name": "layers",
        "emb_dim": 64,
        "num_layers": 2,
        "num_q_heads": 4,
        "num_kv_heads": 2,
        "key_size": 16,
        "hash_width": 8,
        "history_len": 8,
        "num_user_rows": 10,
        "num_post_rows": 10,
        "num_author_rows": 10,
    }
    return ModelConfig.from_dict({**base, **changes})


# RMSNorm -------------------------------------------------------------------------------------
def test_rms_norm_fp32_matches_the_formula_and_has_unit_rms() -> None:
    g = torch.Generator().manual_seed(0)
    norm = RMSNorm(96, eps=1e-5)
    x = 3.0 * torch.randn(4, 7, 96, generator=g) + 0.5
    out = norm(x)
    assert out.dtype == torch.float32
    rms = out.to(F64).pow(2).mean(-1).sqrt()
    torch.testing.assert_close(rms, torch.ones_like(rms), rtol=1e-5, atol=0)
    with torch.no_grad():
        norm.scale.copy_(torch.rand(96, generator=g) + 0.5)
    out = norm(x)
    torch.testing.assert_close(out.to(F64), rms_norm_ref(x, norm.scale, 1e-5), rtol=1e-5, atol=1e-6)
    # Unit RMS "times scale": dividing the scale back out gives unit RMS again.
    rms = (out.to(F64) / norm.scale.to(F64)).pow(2).mean(-1).sqrt()
    torch.testing.assert_close(rms, torch.ones_like(rms), rtol=1e-5, atol=0)


def test_rms_norm_eps_is_inside_the_root() -> None:
    norm = RMSNorm(4, eps=0.5)
    x = torch.full((1, 4), 0.5)  # mean square 0.25
    torch.testing.assert_close(norm(x), x / math.sqrt(0.25 + 0.5))


def test_rms_norm_bf16_runs_in_fp32() -> None:
    g = torch.Generator().manual_seed(1)
    norm = RMSNorm(256, eps=1e-5)
    with torch.no_grad():
        norm.scale.copy_(torch.rand(256, generator=g) + 0.5)
    x = (4.0 * torch.randn(3, 5, 256, generator=g)).to(torch.bfloat16)
    out = norm(x)
    assert out.dtype == torch.bfloat16
    assert norm.scale.dtype == torch.float32
    ref = rms_norm_ref(x, norm.scale, 1e-5)  # from the same bf16 values, in float64
    torch.testing.assert_close(out.to(F64), ref, rtol=2**-8, atol=1e-6)  # one bf16 rounding


def test_rms_norm_fp16_does_not_overflow() -> None:
    # 1000^2 overflows float16 (max 65504): only an fp32 computation gets these right.
    norm = RMSNorm(64, eps=1e-5)
    x = torch.full((2, 64), 1000.0, dtype=torch.float16)
    x[1, ::2] = -2000.0
    out = norm(x)
    assert out.dtype == torch.float16
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.to(F64), rms_norm_ref(x, norm.scale, 1e-5), rtol=1e-3, atol=0)


# Rotary --------------------------------------------------------------------------------------
@pytest.mark.parametrize("key_size", [2, 16, 128])
def test_rotary_matches_the_half_split_reference(key_size: int) -> None:
    g = torch.Generator().manual_seed(2)
    rotary = Rotary(key_size, 10000.0)
    x = torch.randn(2, 3, 40, key_size, generator=g)
    one = torch.cat([torch.arange(30), torch.tensor([129, 257, 500, 1022, 1023] * 2)])
    positions = torch.stack([one, one.flip(0)])  # each viewer its own positions
    got = rotary(x, positions)
    assert got.shape == x.shape and got.dtype == x.dtype
    torch.testing.assert_close(got.to(F64), rotate_ref(x, positions), rtol=1e-4, atol=1e-4)


def test_rotary_base_is_used() -> None:
    x = torch.randn(1, 1, 3, 16, generator=torch.Generator().manual_seed(3))
    positions = torch.tensor([[0, 5, 77]])
    got = Rotary(16, 500.0)(x, positions)
    torch.testing.assert_close(
        got.to(F64), rotate_ref(x, positions, base=500.0), rtol=1e-5, atol=1e-5
    )


def test_rotary_at_position_zero_is_the_identity() -> None:
    x = torch.randn(2, 2, 4, 32, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(Rotary(32, 10000.0)(x, torch.zeros(2, 4, dtype=torch.long)), x)


def test_rotary_preserves_norms() -> None:
    x = torch.randn(2, 4, 64, 32, generator=torch.Generator().manual_seed(5))
    positions = (torch.arange(64) * 17).expand(2, 64)
    got = Rotary(32, 10000.0)(x, positions)
    torch.testing.assert_close(got.norm(dim=-1), x.norm(dim=-1), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(got, x, atol=1e-3)  # it does rotate


def test_rotary_dot_products_depend_only_on_relative_position() -> None:
    g = torch.Generator().manual_seed(6)
    rotary = Rotary(64, 10000.0)
    q = torch.randn(1, 1, 1, 64, generator=g)
    k = torch.randn(1, 1, 1, 64, generator=g)

    def dot(p: int, p_k: int) -> float:
        rq = rotary(q, torch.tensor([[p]]))
        rk = rotary(k, torch.tensor([[p_k]]))
        return float((rq * rk).sum())

    for p, p_k, shift in [(0, 0, 5), (3, 10, 1), (10, 3, 100), (7, 7, 500), (0, 40, 900)]:
        assert dot(p, p_k) == pytest.approx(dot(p + shift, p_k + shift), rel=1e-4, abs=1e-4)
    assert abs(dot(0, 0) - dot(0, 3)) > 1e-3  # but it does depend on the offset


# Right-anchored positions (X's right_anchored_rope_positions), by hand --------------------------
T, F_ = True, False


@pytest.mark.parametrize(
    ("ctx_valid", "prefix_len", "history_len", "candidates", "want"),
    [
        # P=2, S=5: the n valid items end at P+S-1 = 6, candidates at P+S = 7, padding at 0.
        ([T, T, T, T, T, F_, F_], 2, 5, 2, [0, 1, 4, 5, 6, 0, 0, 7, 7]),
        ([T, T, T, T, T, T, T], 2, 5, 2, [0, 1, 2, 3, 4, 5, 6, 7, 7]),
        ([T, T, T, F_, F_, F_, F_], 2, 5, 1, [0, 1, 6, 0, 0, 0, 0, 7]),
        # no history, no user rows: the prefix keeps 0 and 1 (the user token's 0 either way)
        ([F_, T, F_, F_, F_, F_, F_], 2, 5, 3, [0, 1, 0, 0, 0, 0, 0, 7, 7, 7]),
        # a history tensor shorter than the config's S=5: the same positions as padded to 5
        ([T, T, T, T], 2, 5, 1, [0, 1, 5, 6, 7]),
        # the user tower: no prefix, S=4
        ([T, T, F_, F_], 0, 4, 0, [2, 3, 0, 0]),
        ([T, T, T, T], 0, 4, 0, [0, 1, 2, 3]),
        # a hole (never sent: histories are left-aligned): the valid items are ranked, so the
        # newest still sits at P+S-1. X's formula uses the slot index there (it would put the
        # last item at 7, on the candidates' position); both agree on left-aligned histories.
        ([T, T, T, F_, T, F_, F_], 2, 5, 1, [0, 1, 5, 0, 6, 0, 0, 7]),
    ],
)
def test_right_anchored_positions_by_hand(
    ctx_valid: list[bool], prefix_len: int, history_len: int, candidates: int, want: list[int]
) -> None:
    valid = torch.tensor([ctx_valid])
    got = right_anchored_positions(valid, prefix_len, history_len, candidates)
    assert got.tolist() == [want]
    # per viewer: a batch gives each row its own
    both = right_anchored_positions(valid.repeat(2, 1), prefix_len, history_len, candidates)
    assert both.tolist() == [want, want]


def test_right_anchored_positions_differ_per_viewer() -> None:
    valid = torch.tensor([[T, T, T, T, F_], [F_, T, T, F_, F_]])
    got = right_anchored_positions(valid, 2, 3, 2)
    assert got.tolist() == [[0, 1, 3, 4, 0, 5, 5], [0, 1, 4, 0, 0, 5, 5]]


# Semantic-id hash level (export/models/embedding.py), against X's int32 mix by hand ------------
def int32(v: int) -> int:
    """Two's-complement wrap of a Python int to int32."""
    return (v + 2**31) % 2**32 - 2**31


def x_hash_level(row: int, first_code: int, codes: int) -> int:
    """X's extra semantic-id level: h = int32(row); m = h * 1540483477 in int32; m ^= m >> 16
    (arithmetic shift); |m| % codes + 1; 0 when the post's first code is 0 (no ids)."""
    if first_code == 0:
        return 0
    m = int32(int32(row) * 1540483477)
    m ^= m >> 16  # Python's >> on a negative int is arithmetic, as int32's
    assert m >= 0  # the sign bit xors with itself: X's abs never sees INT32_MIN
    return abs(m) % codes + 1


#: Table rows, including ones whose product with the multiplier wraps and rows that overflow
#: int32 themselves (X casts the row to int32 first).
HASH_ROWS = [0, 1, 2, 65, 1_070, 3_062, 12_345, 99_999, 2**20 + 3, 2**31 - 1, 2**31, 2**31 + 5,
             3_000_000_000, 2**32 - 1, 2**32 + 7, 2**40 + 3]  # fmt: skip


@pytest.mark.parametrize("codes", [256, 100, 7])
def test_semantic_id_hash_level_is_xs_int32_mix(codes: int) -> None:
    config = layer_config(sid_codes=codes, sid_levels=3)
    sids_module = SemanticIds(config, 64)
    rows = torch.tensor(HASH_ROWS)
    first = torch.tensor([(i % 3) * (1 + i % codes) for i in range(len(HASH_ROWS))])  # some 0s
    sids = torch.stack([first, torch.ones_like(first), torch.full_like(first, codes)], -1)
    got = sids_module.hash_level(rows, sids)
    want = [x_hash_level(r, int(f), codes) for r, f in zip(HASH_ROWS, first.tolist(), strict=True)]
    assert got.tolist() == want
    assert all(1 <= w <= codes for w, f in zip(want, first.tolist(), strict=True) if f)
    # Batched [B, L] like the models call it.
    torch.testing.assert_close(
        sids_module.hash_level(rows.view(2, -1), sids.view(2, -1, 3)), got.view(2, -1)
    )
    # Not vacuous: the int32 wrap-around decides some codes (the product overflows int32 for
    # most rows). Modulo 256 only the low 24 bits of the product count, which the wrap keeps, so
    # this guard needs a codebook that is not a power of two.
    if codes & (codes - 1) == 0:
        return
    unwrapped = [(r * 1540483477 ^ (r * 1540483477) >> 16) % codes + 1 for r in HASH_ROWS]
    assert [u for u, w in zip(unwrapped, want, strict=True) if w] != [w for w in want if w]


def test_semantic_id_embedding_sums_the_present_levels_and_projects() -> None:
    config = layer_config(sid_codes=5, sid_levels=2)
    torch.manual_seed(21)
    module = SemanticIds(config, 64)
    with torch.no_grad():
        module.table.weight.normal_()  # rows for missing codes hold values that must not count
    assert module.table.weight.shape == (3 * 6, 8)  # (levels + hash level) x (codes + 1), W
    rows = torch.tensor([[1_070, 77, 0]])
    sids = torch.tensor([[[2, 5], [0, 3], [0, 0]]])  # full, first level missing, no ids at all
    table, proj = module.table.weight.to(F64), module.proj.weight.to(F64)
    want = []
    for r, (a, b) in zip(rows[0].tolist(), sids[0].tolist(), strict=True):
        h = x_hash_level(r, a, 5)
        levels = [
            table[0 * 6 + a] if a else 0,
            table[1 * 6 + b] if b else 0,
            table[2 * 6 + h] if h else 0,
        ]
        want.append(
            sum(levels) @ proj.T if any(c for c in (a, b, h)) else torch.zeros(64, dtype=F64)
        )
    with torch.no_grad():
        got = module(torch.stack([rows, rows], -1), sids)
    torch.testing.assert_close(got[0].to(F64), torch.stack(want), rtol=1e-5, atol=1e-5)
    assert (got[0, 2] == 0).all()


# Attention -----------------------------------------------------------------------------------
HEADS = [(4, 2), (4, 4), (4, 1), (6, 3), (8, 2)]


def random_mask(b: int, t: int, g: torch.Generator) -> Tensor:
    mask = torch.rand(b, t, t, generator=g) < 0.6
    mask |= torch.eye(t, dtype=torch.bool)  # every row has a key
    return mask


@pytest.mark.parametrize("qk_norm", [True, False])
@pytest.mark.parametrize(("hq", "hkv"), HEADS)
@pytest.mark.parametrize("cap", [None, 0.5, 5.0])
def test_full_mask_attention_equals_naive_grouped_query_attention(
    hq: int, hkv: int, cap: float | None, qk_norm: bool
) -> None:
    torch.manual_seed(7)
    attn = Attention(
        layer_config(num_q_heads=hq, num_kv_heads=hkv, attn_logit_cap=cap, qk_norm=qk_norm)
    )
    assert (attn.q_norm is not None) == qk_norm
    g = torch.Generator().manual_seed(8)
    if qk_norm:  # distinct scales, so swapped or per-head norms would show
        with torch.no_grad():
            attn.q_norm.scale.copy_(torch.rand(hq * 16, generator=g) + 0.5)  # type: ignore[union-attr]
            attn.k_norm.scale.copy_(torch.rand(hkv * 16, generator=g) + 0.5)  # type: ignore[union-attr]
    x = 3.0 * torch.randn(2, 9, 64, generator=g)
    mask = random_mask(2, 9, g)
    positions = torch.tensor([[0, 1, 2, 3, 4, 5, 6, 9, 9], [0, 1, 0, 0, 7, 8, 9, 10, 10]])
    active = torch.tensor([[T] * 9, [T, T, F_, F_, T, T, T, T, T]])
    with torch.no_grad():
        got = attn.attend_full_mask(x, mask, active, positions)
        want = naive_attention(attn, x, mask, positions, cap, active=active)
    assert got.shape == x.shape
    torch.testing.assert_close(got.to(F64), want, rtol=1e-5, atol=1e-5)
    assert (got[1, 2:4] == 0).all()  # inactive rows output 0
    if hkv not in (1, hq):  # guard: the other kv-head assignment gives different numbers
        wrong = naive_attention(attn, x, mask, positions, cap, kv_head_of="modulo", active=active)
        assert not torch.allclose(got.to(F64), wrong, rtol=1e-3, atol=1e-3)
    if cap is not None:  # guard: the cap changes the result
        uncapped = naive_attention(attn, x, mask, positions, None, active=active)
        assert not torch.allclose(got.to(F64), uncapped, rtol=1e-3, atol=1e-3)


def test_attention_scale_is_xs_sqrt128_over_key_size() -> None:
    # X scales logits by sqrt(128) / d_k (= 1/sqrt(d_k) only at d_k = 128): at d_k = 32 that is
    # twice 1/sqrt(32), and 1/sqrt(d_k) would give different outputs.
    config = layer_config(key_size=32, qk_norm=False)
    assert config.attn_scale == pytest.approx(math.sqrt(128) / 32)
    torch.manual_seed(22)
    attn = Attention(config)
    x = 3.0 * torch.randn(1, 5, 64)
    q = attn.q_proj(x).view(1, 5, 4, 32).transpose(1, 2)[:, :2]  # query heads 0 and 1 (kv head 0)
    k = attn.k_proj(x).view(1, 5, 2, 32).transpose(1, 2)[:, :1]
    logits = attn._logits(q.reshape(1, 1, 10, 32), k)
    raw = q.reshape(1, 1, 10, 32).to(F64) @ k.to(F64).transpose(-1, -2)
    torch.testing.assert_close(logits.to(F64), raw * math.sqrt(128) / 32, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("qk_norm", [True, False])
@pytest.mark.parametrize(("hq", "hkv"), HEADS)
@pytest.mark.parametrize("cap", [None, 2.0])
def test_split_attention_equals_naive_attention_with_candidate_isolation(
    hq: int, hkv: int, cap: float | None, qk_norm: bool
) -> None:
    torch.manual_seed(9)
    attn = Attention(
        layer_config(num_q_heads=hq, num_kv_heads=hkv, attn_logit_cap=cap, qk_norm=qk_norm)
    )
    g = torch.Generator().manual_seed(10)
    b, ctx_len, n = 3, 7, 5
    ctx = 3.0 * torch.randn(b, ctx_len, 64, generator=g)
    cand = 3.0 * torch.randn(b, n, 64, generator=g)
    ctx_valid = torch.rand(b, ctx_len, generator=g) < 0.7
    ctx_valid[:, 1] = True  # the user-features token
    ctx_valid[2, 2:] = False  # no history
    ctx_positions = right_anchored_positions(ctx_valid, 2, 5, 0)
    positions = right_anchored_positions(ctx_valid, 2, 5, n)
    x = torch.cat([ctx, cand], dim=1)
    active = torch.cat([ctx_valid, torch.ones(b, n, dtype=torch.bool)], 1)
    with torch.no_grad():
        out = attn.attend_split(x, ctx_valid, ctx_valid, positions)
        want = naive_attention(attn, x, isolation_mask(ctx_valid, n), positions, cap, active=active)
        ctx_only = attn.attend_split(ctx, ctx_valid, ctx_valid, ctx_positions)
    ctx_out, cand_out = out[:, :ctx_len], out[:, ctx_len:]
    torch.testing.assert_close(ctx_out.to(F64), want[:, :ctx_len], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cand_out.to(F64), want[:, ctx_len:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ctx_only, ctx_out)
    assert (ctx_out[~ctx_valid] == 0).all()  # padded context rows output 0, as in X's kernels


def test_split_attention_keys_and_active_rows_are_separate() -> None:
    # X's serving kernel: more keys (padding read) than active rows; the split form takes both.
    torch.manual_seed(23)
    attn = Attention(layer_config())
    g = torch.Generator().manual_seed(24)
    x = 3.0 * torch.randn(2, 9, 64, generator=g)
    ctx_active = torch.tensor([[T, T, T, F_, F_, F_], [F_, T, T, T, T, F_]])
    ctx_keys = torch.ones(2, 6, dtype=torch.bool)
    positions = right_anchored_positions(ctx_active, 2, 4, 3)
    mask = isolation_mask(ctx_keys, 3)
    active = torch.cat([ctx_active, torch.ones(2, 3, dtype=torch.bool)], 1)
    with torch.no_grad():
        got = attn.attend_split(x, ctx_keys, ctx_active, positions)
        full = attn.attend_full_mask(x, mask, active, positions)
    want = naive_attention(attn, x, mask, positions, None, active=active)
    torch.testing.assert_close(got.to(F64), want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(full.to(F64), want, rtol=1e-5, atol=1e-5)


def test_soft_cap_bounds_logits() -> None:
    attn = Attention(layer_config(attn_logit_cap=3.0))
    g = torch.Generator().manual_seed(11)
    q = 50.0 * torch.randn(1, 2, 6, 16, generator=g)
    k = 50.0 * torch.randn(1, 2, 5, 16, generator=g)
    logits = attn._logits(q, k)
    raw = (q.to(F64) @ k.to(F64).transpose(-1, -2)) * (math.sqrt(128) / 16)
    assert raw.abs().max() > 30  # far beyond the cap
    assert logits.abs().max() <= 3.0
    torch.testing.assert_close(logits.to(F64), 3.0 * torch.tanh(raw / 3.0), rtol=1e-5, atol=1e-5)
    uncapped = Attention(layer_config())._logits(q, k)
    torch.testing.assert_close(uncapped.to(F64), raw, rtol=1e-5, atol=1e-3)


def test_masked_logits_are_finite_so_an_all_masked_row_gives_no_nan() -> None:
    assert math.isfinite(MASK_VALUE) and MASK_VALUE < -1e8
    torch.manual_seed(12)
    attn = Attention(layer_config())
    x = torch.randn(1, 4, 64)
    mask = torch.ones(1, 4, 4, dtype=torch.bool)
    mask[0, 2] = False  # query 2 sees nothing
    ctx_valid = torch.zeros(1, 4, dtype=torch.bool)  # no valid context at all
    all_active = torch.ones(1, 4, dtype=torch.bool)
    with torch.no_grad():
        out = attn.attend_full_mask(x, mask, all_active, torch.arange(4)[None])
        split = attn.attend_split(
            torch.cat([x, torch.randn(1, 2, 64)], 1),
            ctx_valid,
            ctx_valid,
            torch.tensor([[0, 1, 2, 3, 5, 5]]),
        )
    assert torch.isfinite(out).all() and torch.isfinite(split).all()


def test_attention_has_no_biases() -> None:
    attn = Attention(layer_config())
    assert all(not name.endswith("bias") for name, _ in attn.named_parameters())


# FFN, block, trunk ---------------------------------------------------------------------------
@pytest.mark.parametrize("widening", [2.0, 1.3])
def test_plain_ffn_is_down_gelu_tanh_up(widening: float) -> None:
    config = layer_config(ffn_widening=widening)
    torch.manual_seed(13)
    ffn = FeedForward(config)
    assert ffn.gate is None
    assert ffn.up.weight.shape == (config.ffn_dim, 64)
    assert ffn.down.weight.shape == (64, config.ffn_dim)
    x = torch.randn(2, 5, 64)
    up, down = ffn.up.weight.to(F64), ffn.down.weight.to(F64)
    want = gelu_tanh_ref(x.to(F64) @ up.T) @ down.T
    with torch.no_grad():
        torch.testing.assert_close(ffn(x).to(F64), want, rtol=1e-5, atol=1e-6)


def test_gated_ffn_is_down_of_gelu_gate_times_up() -> None:
    config = layer_config(gated_ffn=True)
    torch.manual_seed(14)
    ffn = FeedForward(config)
    assert ffn.gate is not None
    x = torch.randn(2, 5, 64)
    x64 = x.to(F64)
    gate, up, down = (m.weight.to(F64) for m in (ffn.gate, ffn.up, ffn.down))
    want = (gelu_tanh_ref(x64 @ gate.T) * (x64 @ up.T)) @ down.T
    with torch.no_grad():
        torch.testing.assert_close(ffn(x).to(F64), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("post_norm", [False, True])
def test_block_is_pre_norm_residual(post_norm: bool) -> None:
    config = layer_config(post_sublayer_norm=post_norm)
    torch.manual_seed(15)
    block = Block(config)
    g = torch.Generator().manual_seed(16)
    with torch.no_grad():  # distinct scales, so swapped norms would show
        for norm in (block.attn_norm, block.ffn_norm, block.attn_out_norm, block.ffn_out_norm):
            if isinstance(norm, RMSNorm):
                norm.scale.copy_(torch.rand(64, generator=g) + 0.5)
    x = torch.randn(2, 6, 64, generator=g)
    mask = random_mask(2, 6, g)
    active = torch.ones(2, 6, dtype=torch.bool)
    positions = torch.arange(6).expand(2, 6)

    def out_norm(norm: torch.nn.Module, y: Tensor) -> Tensor:
        return rms_norm_ref(y, norm.scale, 1e-5).float() if post_norm else y  # type: ignore[arg-type]

    with torch.no_grad():
        got = block.forward_full_mask(x, mask, active, positions)
        a = block.attn.attend_full_mask(
            rms_norm_ref(x, block.attn_norm.scale, 1e-5).float(), mask, active, positions
        )
        h = x + out_norm(block.attn_out_norm, a)
        f = block.ffn(rms_norm_ref(h, block.ffn_norm.scale, 1e-5).float())
        want = h + out_norm(block.ffn_out_norm, f)
    assert isinstance(block.attn_out_norm, RMSNorm) == post_norm
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_trunk_ends_with_the_final_norm() -> None:
    torch.manual_seed(17)
    trunk = Trunk(layer_config(num_layers=3))
    assert len(trunk.blocks) == 3
    x = 2.0 * torch.randn(2, 6, 64)
    with torch.no_grad():
        out = trunk.forward_full_mask(
            x,
            torch.ones(2, 6, 6, dtype=torch.bool),
            torch.ones(2, 6, dtype=torch.bool),
            torch.arange(6).expand(2, 6),
        )
    rms = out.to(F64).pow(2).mean(-1).sqrt()
    torch.testing.assert_close(rms, torch.ones_like(rms), rtol=1e-4, atol=0)


@pytest.mark.parametrize("qk_norm", [True, False])
@pytest.mark.parametrize("post_norm", [False, True])
def test_trunk_split_equals_full_mask(post_norm: bool, qk_norm: bool) -> None:
    config = layer_config(
        num_layers=3, gated_ffn=True, post_sublayer_norm=post_norm, qk_norm=qk_norm
    )
    torch.manual_seed(18)
    trunk = Trunk(config)
    g = torch.Generator().manual_seed(19)
    ctx = torch.randn(2, 6, 64, generator=g)
    cand = torch.randn(2, 4, 64, generator=g)
    ctx_valid = torch.tensor([[True] * 6, [True, True, True, True, False, False]])
    active = torch.cat([ctx_valid, torch.ones(2, 4, dtype=torch.bool)], 1)
    with torch.no_grad():
        positions = right_anchored_positions(ctx_valid, 2, 4, 4)
        split = trunk.forward_split(torch.cat([ctx, cand], 1), ctx_valid, ctx_valid, positions)
        ctx_out, cand_out = split[:, :6], split[:, 6:]
        ctx_only = trunk.forward_split(
            ctx, ctx_valid, ctx_valid, right_anchored_positions(ctx_valid, 2, 4, 0)
        )
        full = trunk.forward_full_mask(
            torch.cat([ctx, cand], 1), isolation_mask(ctx_valid, 4), active, positions
        )
    torch.testing.assert_close(cand_out, full[:, 6:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ctx_out[ctx_valid], full[:, :6][ctx_valid], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ctx_only, ctx_out)
