"""`PhoenixRanker` (X's architecture, docs/FIDELITY.md): one-pass == full-mask reference, candidate
isolation, padding and batch invariance, the heads, gradients."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from export.models import CandidateInputs, HistoryInputs, PhoenixRanker, RankerInputs, RankerOutput
from export.models.ranker import candidate_isolation_mask, serving_kernel_keys
from export.models.sample import random_candidates, random_ranker_inputs
from phoenix.config import PRESETS, ModelConfig

MakeRanker = Callable[..., PhoenixRanker]
PadHistory = Callable[..., HistoryInputs]
#: The training-kernel semantics in both forms, and X's serving kernel (the parity option).
METHODS = ["forward", "forward_reference", "x_serving_kernel"]


def run(model: PhoenixRanker, inputs: RankerInputs, method: str = "forward") -> RankerOutput:
    with torch.no_grad():
        if method == "x_serving_kernel":
            return model(inputs, x_serving_kernel=True)
        return getattr(model, method)(inputs)


def take(cands: CandidateInputs, index: Tensor | list[int]) -> CandidateInputs:
    """The candidates at `index` (dim 1), in that order."""
    index = torch.as_tensor(index)
    return CandidateInputs(**{k: v[:, index] for k, v in cands.tensors().items()})


def concat(*parts: CandidateInputs) -> CandidateInputs:
    names = parts[0].tensors()
    return CandidateInputs(**{k: torch.cat([p.tensors()[k] for p in parts], 1) for k in names})


def zero_candidates(like: CandidateInputs, n: int) -> CandidateInputs:
    """`n` all-zero (padding) candidates per viewer."""
    return CandidateInputs(
        **{k: v.new_zeros((v.shape[0], n, *v.shape[2:])) for k, v in like.tensors().items()}
    )


def cols(out: RankerOutput, index: list[int] | slice) -> RankerOutput:
    return RankerOutput(out.logits[:, index], out.continuous[:, index])


def viewer(inputs: RankerInputs, b: int) -> RankerInputs:
    parts = (inputs.user, inputs.history, inputs.candidates)
    return RankerInputs(
        *(type(p)(**{k: v[b : b + 1] for k, v in p.tensors().items()}) for p in parts)
    )


def with_fields(inputs: RankerInputs, **changes: Tensor) -> RankerInputs:
    """`inputs` with some tensors replaced, whichever part holds them."""
    assert set(changes) <= set(inputs.tensors()), set(changes) - set(inputs.tensors())
    parts = (inputs.user, inputs.history, inputs.candidates)
    return RankerInputs(
        *(
            dataclasses.replace(p, **{k: v for k, v in changes.items() if k in p.tensors()})
            for p in parts
        )
    )


def truncate(inputs: RankerInputs, n: int) -> RankerInputs:
    """The first `n` history slots only: a shorter history tensor."""
    h = HistoryInputs(**{k: v[:, :n] for k, v in inputs.history.tensors().items()})
    return RankerInputs(inputs.user, h, inputs.candidates)


def assert_same_scores(got: RankerOutput, want: RankerOutput, atol: float = 1e-5) -> None:
    torch.testing.assert_close(got.logits, want.logits, rtol=0, atol=atol)
    torch.testing.assert_close(got.continuous, want.continuous, rtol=0, atol=atol)


def assert_one_pass_equals_reference(
    model: PhoenixRanker, inputs: RankerInputs, *, x_serving_kernel: bool = False
) -> None:
    with torch.no_grad():
        fast = model(inputs, x_serving_kernel=x_serving_kernel)
        ref = model.forward_reference(inputs, x_serving_kernel=x_serving_kernel)
    assert torch.isfinite(fast.logits).all() and torch.isfinite(fast.continuous).all()
    assert_same_scores(fast, ref, atol=1e-5)


def mixed_padding_inputs(
    config: ModelConfig, pad_history: PadHistory, gen: torch.Generator, num_candidates: int = 5
) -> RankerInputs:
    """Three viewers: a full history; a partly padded one with garbage in the padded slots; no
    history and no user rows (only the user-features token is valid)."""
    inputs = random_ranker_inputs(config, batch=3, num_candidates=num_candidates, generator=gen)
    history = pad_history(inputs.history, [config.history_len, 5, 0], generator=gen)
    user_hash = inputs.user.user_hash.clone()
    user_hash[2] = 0
    return with_fields(RankerInputs(inputs.user, history, inputs.candidates), user_hash=user_hash)


# Outputs and heads ---------------------------------------------------------------------------
def test_output_shapes_and_heads(
    config: ModelConfig, make_ranker: MakeRanker, gen: torch.Generator
) -> None:
    model = make_ranker(config)
    inputs = random_ranker_inputs(config, batch=2, num_candidates=7, generator=gen)
    surface = inputs.candidates.candidate_surface.clone()
    surface[:, ::2] = 10  # X's GALLERY surface: dwell capped at 300 s, not 30 s
    surface[:, 1::2] = 3
    inputs = with_fields(inputs, candidate_surface=surface)
    raw: dict[str, Tensor] = {}
    hooks = [
        module.register_forward_hook(lambda m, i, o, name=name: raw.__setitem__(name, o))
        for name, module in (("logits", model.unembed), ("cont", model.continuous_head))
    ]
    out = run(model, inputs)
    for hook in hooks:
        hook.remove()
    assert out.logits.shape == (2, 7, 64) and out.continuous.shape == (2, 7, 8)
    assert out.logits.dtype == torch.float32 and out.continuous.dtype == torch.float32
    # X's output scale sqrt(512 / D) * 2, D = 128: exactly 4.
    torch.testing.assert_close(out.logits, 4.0 * raw["logits"])
    torch.testing.assert_close(out.probs, 1 / (1 + torch.exp(-out.logits)))
    torch.testing.assert_close(out.log_probs, torch.log(out.probs), rtol=1e-5, atol=1e-6)
    assert (out.log_probs < 0).all()
    # Continuous outputs: raw, except column 1, the dwell time in seconds.
    cont = raw["cont"]
    others = [0, *range(2, 8)]
    torch.testing.assert_close(out.continuous[..., others], cont[..., others])
    gallery = 300 * torch.tanh(torch.log1p(torch.exp(cont[..., 1])) / 300)
    want = torch.where(surface == 10, gallery, 30 / (1 + torch.exp(-cont[..., 1])))
    torch.testing.assert_close(out.dwell_time, want)
    torch.testing.assert_close(out.dwell_time, out.continuous[..., 1])
    assert ((out.dwell_time[:, 1::2] > 0) & (out.dwell_time[:, 1::2] < 30)).all()
    assert (out.dwell_time[:, ::2] > 0).all()


def test_gallery_dwell_is_not_capped_at_30_seconds(
    config: ModelConfig, make_ranker: MakeRanker, gen: torch.Generator
) -> None:
    # A raw dwell output of 40: 30 * sigmoid(40) = 30 s on every surface but GALLERY (10), where
    # X's activation is 300 * tanh(softplus(40) / 300), about 39.8 s.
    model = make_ranker(config)
    inputs = random_ranker_inputs(config, batch=1, num_candidates=2, generator=gen)
    inputs = with_fields(inputs, candidate_surface=torch.tensor([[10, 3]]))

    def raw_forty(module, args, output):  # type: ignore[no-untyped-def]
        output = output.clone()
        output[..., 1] = 40.0
        return output

    hook = model.continuous_head.register_forward_hook(raw_forty)
    try:
        dwell = run(model, inputs).dwell_time[0]
    finally:
        hook.remove()
    assert float(dwell[0]) == pytest.approx(300 * math.tanh(40.0 / 300), rel=1e-5)
    assert float(dwell[0]) > 39.5
    assert float(dwell[1]) == pytest.approx(30.0, rel=1e-6)


def test_heads_have_the_design_shapes_and_no_biases(
    config: ModelConfig, make_ranker: MakeRanker
) -> None:
    model = make_ranker(config)
    assert model.unembed.weight.shape == (64, config.emb_dim)  # X's 64 action columns
    assert model.continuous_head.weight.shape == (8, config.emb_dim)
    assert model.embed.table.weight.shape == (config.table_rows, config.hash_width)
    assert config.table_rows % 512 == 0  # X rounds the table up to a multiple of 512 rows
    assert not [name for name, _ in model.named_parameters() if name.endswith("bias")]
    assert (model.embed.table.weight[0] == 0).all()


def test_candidate_isolation_mask() -> None:
    ctx_valid = torch.tensor([[True, False, True], [True, True, True]])
    mask = candidate_isolation_mask(ctx_valid, 2)
    assert mask.shape == (2, 5, 5)
    for b in range(2):
        for row in range(5):
            for col in range(5):
                want = bool(ctx_valid[b, col]) if col < 3 else row == col
                assert bool(mask[b, row, col]) == want, (b, row, col)


@pytest.mark.parametrize(
    ("last_valid", "limit"),
    [(1, 128), (126, 128), (127, 128), (128, 256), (130, 256), (255, 256), (256, 300), (299, 300)],
)
def test_serving_kernel_keys_are_whole_128_blocks_up_to_the_last_valid_token(
    last_valid: int, limit: int
) -> None:
    # X's serving kernel reads every key of each 128-block up to the one holding the last valid
    # context token, padding included (docs/FIDELITY.md, deviation 1). L = 300 here.
    ctx_valid = torch.zeros(2, 300, dtype=torch.bool)
    ctx_valid[0, : last_valid + 1] = True  # a left-aligned context
    ctx_valid[1, [1, last_valid]] = True  # holes before the last valid token change nothing
    keys = serving_kernel_keys(ctx_valid)
    want = torch.arange(300) < limit
    assert keys.shape == (2, 300)
    assert torch.equal(keys[0], want) and torch.equal(keys[1], want)


# One pass == full-mask reference -------------------------------------------------------------
@pytest.mark.parametrize("name", ["tiny", "mini", "nano", "x-nano", "prod"])
def test_one_pass_equals_reference_for_every_preset(
    name: str, make_ranker: MakeRanker, pad_history: PadHistory, gen: torch.Generator
) -> None:
    # The preset's geometry with a short history and small vocabularies (prod's 100k-row tables
    # at W=1024 would dominate the runtime).
    config = PRESETS[name].with_overrides(
        history_len=12, num_user_rows=50, num_post_rows=400, num_author_rows=60, num_ip_rows=30
    )
    model = make_ranker(config)
    assert len(model.trunk.blocks) == PRESETS[name].num_layers
    assert model.embed.sids.table.weight.shape[1] == PRESETS[name].sid_width
    inputs = mixed_padding_inputs(config, pad_history, gen, num_candidates=3)
    assert_one_pass_equals_reference(model, inputs)
    assert_one_pass_equals_reference(model, inputs, x_serving_kernel=True)


VARIANTS = {
    "mha": {"num_q_heads": 4, "num_kv_heads": 4},
    "gqa": {"num_q_heads": 4, "num_kv_heads": 2},
    "mqa": {"num_q_heads": 4, "num_kv_heads": 1},
    "gqa-8-2": {"num_q_heads": 8, "num_kv_heads": 2, "key_size": 16},
    "cap": {"attn_logit_cap": 5.0},
    "tight-cap": {"attn_logit_cap": 0.5},
    "no-qk-norm": {"qk_norm": False},
    "no-qk-norm-cap": {"qk_norm": False, "attn_logit_cap": 2.0},
    "gated": {"gated_ffn": True},
    "post-norm": {"post_sublayer_norm": True},
    "everything": {
        "num_q_heads": 8,
        "num_kv_heads": 2,
        "key_size": 16,
        "attn_logit_cap": 20.0,
        "gated_ffn": True,
        "post_sublayer_norm": True,
        "num_layers": 3,
    },
}


@pytest.mark.parametrize("x_serving_kernel", [False, True], ids=["train-kernel", "serve-kernel"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_one_pass_equals_reference_for_every_variant(
    variant: str,
    x_serving_kernel: bool,
    config: ModelConfig,
    make_ranker: MakeRanker,
    pad_history: PadHistory,
    gen: torch.Generator,
) -> None:
    config = config.with_overrides(**VARIANTS[variant])
    model = make_ranker(config)
    inputs = mixed_padding_inputs(config, pad_history, gen)
    assert_one_pass_equals_reference(model, inputs, x_serving_kernel=x_serving_kernel)


def test_one_pass_equals_reference_with_many_candidates(
    config: ModelConfig, make_ranker: MakeRanker, gen: torch.Generator
) -> None:
    model = make_ranker(config)
    inputs = random_ranker_inputs(config, batch=2, num_candidates=100, valid_len=7, generator=gen)
    assert_one_pass_equals_reference(model, inputs)
    assert_one_pass_equals_reference(model, inputs, x_serving_kernel=True)


def test_one_pass_equals_reference_beyond_one_serving_block(
    config: ModelConfig, make_ranker: MakeRanker, pad_history: PadHistory, gen: torch.Generator
) -> None:
    # 2 + 300 context tokens: the serving kernel's keys stop at a 128-block boundary (256 or 384)
    # that differs per viewer.
    config = config.with_overrides(history_len=300)
    model = make_ranker(config)
    inputs = random_ranker_inputs(config, batch=3, num_candidates=4, generator=gen)
    inputs = RankerInputs(
        inputs.user, pad_history(inputs.history, [300, 200, 100], generator=gen), inputs.candidates
    )
    assert_one_pass_equals_reference(model, inputs)
    assert_one_pass_equals_reference(model, inputs, x_serving_kernel=True)


@pytest.mark.parametrize("user_padded", [False, True])
def test_all_padding_history_gives_finite_equal_scores(
    user_padded: bool, config: ModelConfig, make_ranker: MakeRanker, gen: torch.Generator
) -> None:
    model = make_ranker(config.with_overrides(attn_logit_cap=10.0))
    inputs = random_ranker_inputs(config, batch=2, num_candidates=4, valid_len=0, generator=gen)
    if user_padded:
        inputs = with_fields(inputs, user_hash=torch.zeros(2, 2, dtype=torch.long))
    assert_one_pass_equals_reference(model, inputs)
    assert_one_pass_equals_reference(model, inputs, x_serving_kernel=True)


# X's serving kernel ----------------------------------------------------------------------------
def test_serving_kernel_differs_only_where_there_is_padding(
    config: ModelConfig, make_ranker: MakeRanker, pad_history: PadHistory, gen: torch.Generator
) -> None:
    # docs/FIDELITY.md, deviation 1: X's serving kernel reads padded history as keys. On a full
    # history with a valid user it is the training kernel; with padding it is not.
    model = make_ranker(config)
    inputs = mixed_padding_inputs(config, pad_history, gen)
    train, serve = run(model, inputs), run(model, inputs, "x_serving_kernel")
    full = [0]  # viewer 0: a full history and a valid user
    assert_same_scores(RankerOutput(serve.logits[full], serve.continuous[full]),
                       RankerOutput(train.logits[full], train.continuous[full]))  # fmt: skip
    for b in (1, 2):
        assert (serve.logits[b] - train.logits[b]).abs().max() > 1e-3, b


# Candidate isolation -------------------------------------------------------------------------
@pytest.fixture
def isolation_case(
    config: ModelConfig, make_ranker: MakeRanker, pad_history: PadHistory, gen: torch.Generator
) -> tuple[PhoenixRanker, RankerInputs, torch.Generator]:
    model = make_ranker(config)
    inputs = random_ranker_inputs(config, batch=2, num_candidates=6, generator=gen)
    history = pad_history(inputs.history, [12, 6], generator=gen)
    return model, RankerInputs(inputs.user, history, inputs.candidates), gen


def with_candidates(inputs: RankerInputs, cands: CandidateInputs) -> RankerInputs:
    return RankerInputs(inputs.user, inputs.history, cands)


@pytest.mark.parametrize("method", METHODS)
def test_scores_do_not_depend_on_candidate_order(isolation_case, method: str) -> None:  # type: ignore[no-untyped-def]
    model, inputs, _ = isolation_case
    base = run(model, inputs, method)
    perm = [4, 0, 5, 2, 1, 3]
    out = run(model, with_candidates(inputs, take(inputs.candidates, perm)), method)
    assert_same_scores(out, cols(base, perm))


@pytest.mark.parametrize("method", METHODS)
def test_scores_do_not_depend_on_the_other_candidates(isolation_case, method: str) -> None:  # type: ignore[no-untyped-def]
    model, inputs, gen = isolation_case
    cands = inputs.candidates
    base = run(model, inputs, method)
    others = random_candidates(model.config, batch=2, num_candidates=6, generator=gen)
    replaced = concat(take(cands, [0]), take(others, [1, 2]), take(cands, [3]), take(others, [4]))
    out = run(model, with_candidates(inputs, replaced), method)
    assert_same_scores(cols(out, [0, 3]), cols(base, [0, 3]))
    # guard: the replaced candidates do score differently
    assert not torch.allclose(out.logits[:, 1], base.logits[:, 1], atol=1e-4)


@pytest.mark.parametrize("method", METHODS)
def test_scores_do_not_depend_on_how_many_candidates(isolation_case, method: str) -> None:  # type: ignore[no-untyped-def]
    model, inputs, gen = isolation_case
    cands = inputs.candidates
    base = run(model, inputs, method)
    for i in range(6):  # alone
        alone = run(model, with_candidates(inputs, take(cands, [i])), method)
        assert_same_scores(alone, cols(base, [i]))
    kept = [0, 2, 5]  # some removed
    assert_same_scores(
        run(model, with_candidates(inputs, take(cands, kept)), method), cols(base, kept)
    )
    more = concat(cands, random_candidates(model.config, 2, num_candidates=40, generator=gen))
    out = run(model, with_candidates(inputs, more), method)
    assert out.logits.shape[1] == 46
    assert_same_scores(cols(out, slice(0, 6)), base)


@pytest.mark.parametrize("method", METHODS)
def test_padded_candidates_change_nothing_else(isolation_case, method: str) -> None:  # type: ignore[no-untyped-def]
    model, inputs, _ = isolation_case
    base = run(model, inputs, method)
    padded = concat(inputs.candidates, zero_candidates(inputs.candidates, 5))
    out = run(model, with_candidates(inputs, padded), method)
    assert out.logits.shape[1] == 11
    assert_same_scores(cols(out, slice(0, 6)), base)
    assert torch.isfinite(out.logits).all() and torch.isfinite(out.continuous).all()


def test_identical_candidates_score_identically(isolation_case) -> None:  # type: ignore[no-untyped-def]
    model, inputs, _ = isolation_case
    out = run(model, with_candidates(inputs, take(inputs.candidates, [2, 0, 2, 2])))
    for i in (2, 3):
        torch.testing.assert_close(out.logits[:, i], out.logits[:, 0])
        torch.testing.assert_close(out.continuous[:, i], out.continuous[:, 0])


# Batch invariance ----------------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_viewers_in_a_batch_do_not_affect_each_other(
    method: str,
    config: ModelConfig,
    make_ranker: MakeRanker,
    pad_history: PadHistory,
    gen: torch.Generator,
) -> None:
    model = make_ranker(config)
    inputs = mixed_padding_inputs(config, pad_history, gen)
    both = run(model, inputs, method)
    for b in range(3):
        one = run(model, viewer(inputs, b), method)
        assert_same_scores(one, RankerOutput(both.logits[b : b + 1], both.continuous[b : b + 1]))
    # guard: the viewers do score differently
    assert (both.logits[0] - both.logits[1]).abs().max() > 1e-3


# History padding -----------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["forward", "forward_reference"])
@pytest.mark.parametrize("valid", [0, 1, 5, 11])
def test_padding_a_history_does_not_change_scores(
    valid: int,
    method: str,
    config: ModelConfig,
    make_ranker: MakeRanker,
    pad_history: PadHistory,
    gen: torch.Generator,
) -> None:
    # Histories are left-aligned, oldest first: padding goes at the end, and the right-anchored
    # positions do not depend on how much there is (docs/FIDELITY.md, "Positions").
    model = make_ranker(config)
    full = random_ranker_inputs(config, batch=2, num_candidates=5, generator=gen)
    short = truncate(full, valid)  # length `valid`, no padding at all
    assert short.history.history_post_hash.shape[1] == valid
    zero_padded = pad_history(full.history, [valid, valid])  # padded to config.history_len
    garbage_padded = pad_history(full.history, [valid, valid], generator=gen)  # with garbage
    assert garbage_padded.history_actions[:, valid:].sum() > 0
    assert (garbage_padded.history_author_hash[:, valid:] != 0).all()
    want = run(model, short, method)
    for history in (zero_padded, garbage_padded):
        assert history.history_post_hash.shape[1] == config.history_len
        assert_same_scores(
            run(model, RankerInputs(full.user, history, full.candidates), method), want
        )
    # padded to an intermediate length
    middle = truncate(RankerInputs(full.user, garbage_padded, full.candidates), valid + 1)
    assert_same_scores(run(model, middle, method), want)


def test_the_serving_kernel_is_not_padding_invariant(
    config: ModelConfig, make_ranker: MakeRanker, pad_history: PadHistory, gen: torch.Generator
) -> None:
    # The reason the project follows X's training kernel (docs/FIDELITY.md, deviation 1).
    model = make_ranker(config)
    full = random_ranker_inputs(config, batch=2, num_candidates=5, generator=gen)
    short = truncate(full, 5)
    padded = RankerInputs(full.user, pad_history(full.history, [5, 5]), full.candidates)
    assert_same_scores(run(model, short, "x_serving_kernel"), run(model, short))
    serve, train = run(model, padded, "x_serving_kernel"), run(model, padded)
    assert (serve.logits - train.logits).abs().max() > 1e-3


#: A change to one input that keeps it valid, by field. Every field the ranker reads must move the
#: scores when changed (guards for the isolation and padding tests: nothing is silently dropped).
def _bump(column: int | None, vocab: str | None = None) -> Callable[[ModelConfig, Tensor], Tensor]:
    def change(config: ModelConfig, t: Tensor) -> Tensor:
        t = t.clone()
        view = t if column is None else t[..., column]
        high = getattr(config, vocab) if vocab else 5
        view.copy_((view + 1) % high)
        return t

    return change


FIELD_CHANGES: dict[str, Callable[[ModelConfig, Tensor], Tensor]] = {
    "user_hash": lambda k, t: t.flip(-1),
    "user_ip_hash": lambda k, t: t.flip(-1),
    "user_categorical": lambda k, t: (t + 1) % 5,
    "user_float": lambda k, t: t + torch.tensor([20.0, 10.0, 0.3, 5.0]),
    "user_apps": lambda k, t: 1 - t,
    "history_post_hash": lambda k, t: t.flip(-1),
    "history_author_hash": lambda k, t: t.flip(-1),
    "history_surface": _bump(None, "num_surfaces"),
    "history_time": lambda k, t: t + torch.tensor([2 * 86400, 0]),
    "history_context": lambda k, t: _bump(1, "num_hours")(k, _bump(0, "num_timezones")(k, t)),
    "history_follow": lambda k, t: 1 - t,
    "history_counts": lambda k, t: torch.where(t > 50_000, 0, 2**40),  # log2 scale: a big change
    "history_sids": lambda k, t: torch.where(t > 0, t % k.sid_codes + 1, t),
    "history_actions": lambda k, t: 1 - t,
    "history_dwell": lambda k, t: (t + 7) % 30,
    "candidate_post_hash": lambda k, t: t.flip(-1),
    "candidate_author_hash": lambda k, t: t.flip(-1),
    "candidate_surface": _bump(None, "num_surfaces"),
    "candidate_time": lambda k, t: t + torch.tensor([2 * 86400, 0]),
    "candidate_context": lambda k, t: _bump(1, "num_hours")(k, _bump(0, "num_timezones")(k, t)),
    "candidate_follow": lambda k, t: 1 - t,
    "candidate_counts": lambda k, t: torch.where(t > 50_000, 0, 2**40),
    "candidate_sids": lambda k, t: torch.where(t > 0, t % k.sid_codes + 1, t),
    "candidate_stale": lambda k, t: 1 - t,
}


def test_every_input_field_has_a_change_case() -> None:
    inputs = random_ranker_inputs(PRESETS["tiny"], batch=1, num_candidates=1)
    assert set(FIELD_CHANGES) == set(inputs.tensors())


@pytest.mark.parametrize("field", list(FIELD_CHANGES))
def test_every_input_field_is_read(
    field: str, config: ModelConfig, make_ranker: MakeRanker, gen: torch.Generator
) -> None:
    model = make_ranker(config)
    inputs = random_ranker_inputs(config, batch=2, num_candidates=4, generator=gen)  # full
    changed = with_fields(inputs, **{field: FIELD_CHANGES[field](config, inputs.tensors()[field])})
    changed.validate(config)
    assert (run(model, changed).logits - run(model, inputs).logits).abs().max() > 1e-4


@pytest.mark.parametrize(
    ("field", "column"),
    [
        ("history_context", 2),  # day of week: X's ranker preset leaves it disabled
        ("candidate_context", 2),
        ("user_categorical", 2),  # not one of X's user-feature columns
        ("user_categorical", 5),
    ],
)
def test_columns_xs_ranker_does_not_read_change_nothing(
    field: str, column: int, config: ModelConfig, make_ranker: MakeRanker, gen: torch.Generator
) -> None:
    model = make_ranker(config)
    inputs = random_ranker_inputs(config, batch=2, num_candidates=4, generator=gen)
    t = inputs.tensors()[field].clone()
    t[..., column] = (t[..., column] + 3) % 7 + 1
    changed = with_fields(inputs, **{field: t})
    assert_same_scores(run(model, changed), run(model, inputs), atol=0)


def test_history_order_matters(
    config: ModelConfig, make_ranker: MakeRanker, gen: torch.Generator
) -> None:
    # Right-anchored positions: swapping two engagements changes their positions.
    model = make_ranker(config)
    inputs = random_ranker_inputs(config, batch=1, num_candidates=4, valid_len=8, generator=gen)
    swapped = [1, 0, *range(2, config.history_len)]
    h = HistoryInputs(**{k: v[:, swapped] for k, v in inputs.history.tensors().items()})
    out = run(model, RankerInputs(inputs.user, h, inputs.candidates))
    assert (out.logits - run(model, inputs).logits).abs().max() > 1e-4


def test_dwell_is_clipped_at_30_seconds_and_post_age_at_xs_overflow_bucket(
    config: ModelConfig, make_ranker: MakeRanker, gen: torch.Generator
) -> None:
    # X clips the history's dwell time to [0, 30] s, and post ages at 80 hours (bucket 81).
    model = make_ranker(config)
    inputs = random_ranker_inputs(config, batch=1, num_candidates=3, generator=gen)

    def dwell(seconds: float) -> RankerOutput:
        return run(
            model,
            with_fields(
                inputs, history_dwell=torch.full_like(inputs.history.history_dwell, seconds)
            ),
        )

    assert_same_scores(dwell(30.0), dwell(45.0), atol=0)
    assert (dwell(10.0).logits - dwell(20.0).logits).abs().max() > 1e-4

    def age(hours: float) -> RankerOutput:
        time = inputs.candidates.candidate_time.clone()
        time[..., 1] = time[..., 0] - int(hours * 3600)
        return run(model, with_fields(inputs, candidate_time=time))

    assert_same_scores(age(80.0), age(500.0), atol=0)
    assert (age(79.0).logits - age(80.0).logits).abs().max() > 1e-4


def test_int32_inputs_score_like_int64(
    config: ModelConfig, make_ranker: MakeRanker, gen: torch.Generator
) -> None:
    model = make_ranker(config)
    inputs = random_ranker_inputs(config, batch=2, num_candidates=3, valid_len=4, generator=gen)
    small = RankerInputs.from_tensors(
        {k: (v if v.is_floating_point() else v.int()) for k, v in inputs.tensors().items()}
    )
    assert small.candidates.candidate_post_hash.dtype == torch.int32
    assert small.history.history_sids.dtype == torch.int32
    assert_same_scores(run(model, small), run(model, inputs), atol=0)


# Gradients -----------------------------------------------------------------------------------
def test_gradients_reach_the_rows_used_and_never_row_zero(
    config: ModelConfig, make_ranker: MakeRanker, gen: torch.Generator
) -> None:
    model = make_ranker(config).train()
    inputs = random_ranker_inputs(config, batch=2, num_candidates=4, valid_len=6, generator=gen)
    out = model(inputs)
    (out.logits.sum() + out.continuous.sum()).backward()

    grad = model.embed.table.weight.grad
    assert grad is not None and torch.isfinite(grad).all()
    hashes = torch.cat(
        [
            inputs.user.user_hash.flatten(),
            inputs.user.user_ip_hash.flatten(),
            inputs.history.history_post_hash.flatten(),
            inputs.history.history_author_hash.flatten(),
            inputs.candidates.candidate_post_hash.flatten(),
            inputs.candidates.candidate_author_hash.flatten(),
        ]
    )
    assert (hashes == 0).any()  # padding rows are in play
    used = torch.unique(hashes[hashes != 0])
    assert (grad[used].abs().sum(-1) > 0).all()
    assert (grad[0] == 0).all()
    unused = torch.ones(config.table_rows, dtype=torch.bool)
    unused[used] = False
    assert (grad[unused] == 0).all()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


@pytest.mark.parametrize("method", METHODS)
def test_no_candidates_gives_empty_outputs(
    method: str, config: ModelConfig, make_ranker: MakeRanker, gen: torch.Generator
) -> None:
    model = make_ranker(config)
    out = run(model, random_ranker_inputs(config, batch=2, num_candidates=0, generator=gen), method)
    assert out.logits.shape == (2, 0, 64)
    assert out.continuous.shape == (2, 0, 8)
    assert out.dwell_time.shape == (2, 0)
