"""`PhoenixRanker`: one-pass == full-mask reference, candidate isolation, padding, gradients."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from export.models import CandidateInputs, HistoryInputs, PhoenixRanker, RankerInputs, RankerOutput
from export.models.ranker import candidate_isolation_mask
from export.models.sample import random_candidates, random_history, random_ranker_inputs
from phoenix.actions import NUM_ACTIONS
from phoenix.config import PRESETS, ModelConfig

MakeRanker = Callable[..., PhoenixRanker]
PadHistory = Callable[..., HistoryInputs]
METHODS = ["forward", "forward_reference"]


def run(model: PhoenixRanker, inputs: RankerInputs, method: str = "forward") -> RankerOutput:
    with torch.no_grad():
        return getattr(model, method)(inputs)


def take(cands: CandidateInputs, index: Tensor | list[int]) -> CandidateInputs:
    """The candidates at `index` (dim 1), in that order."""
    index = torch.as_tensor(index)
    return CandidateInputs(*(getattr(cands, f.name)[:, index] for f in dataclasses.fields(cands)))


def concat(*parts: CandidateInputs) -> CandidateInputs:
    return CandidateInputs(
        *(
            torch.cat([getattr(p, f.name) for p in parts], dim=1)
            for f in dataclasses.fields(CandidateInputs)
        )
    )


def assert_same_scores(got: RankerOutput, want: RankerOutput, atol: float = 1e-5) -> None:
    torch.testing.assert_close(got.action_probs, want.action_probs, rtol=0, atol=atol)
    torch.testing.assert_close(got.dwell_time, want.dwell_time, rtol=0, atol=atol * 30)


def assert_one_pass_equals_reference(model: PhoenixRanker, inputs: RankerInputs) -> None:
    fast, ref = run(model, inputs, "forward"), run(model, inputs, "forward_reference")
    assert torch.isfinite(fast.action_logits).all() and torch.isfinite(fast.dwell_logit).all()
    torch.testing.assert_close(fast.action_logits, ref.action_logits, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fast.dwell_logit, ref.dwell_logit, rtol=1e-5, atol=1e-6)


def mixed_padding_inputs(
    config: ModelConfig, pad_history: PadHistory, gen: torch.Generator, num_candidates: int = 5
) -> RankerInputs:
    """Three viewers: a full history, a partly padded one with garbage, an all-padding one."""
    inputs = random_ranker_inputs(config, batch=3, num_candidates=num_candidates, generator=gen)
    history = pad_history(inputs.history, [config.history_len, 5, 0], generator=gen)
    return RankerInputs(history, inputs.candidates)


# Outputs -------------------------------------------------------------------------------------
def test_output_shapes_and_heads(
    config: ModelConfig, make_ranker: MakeRanker, gen: torch.Generator
) -> None:
    model = make_ranker(config)
    out = run(model, random_ranker_inputs(config, batch=2, num_candidates=7, generator=gen))
    assert out.action_logits.shape == (2, 7, NUM_ACTIONS)
    assert out.dwell_logit.shape == (2, 7)
    assert out.action_logits.dtype == torch.float32
    torch.testing.assert_close(out.action_probs, 1 / (1 + torch.exp(-out.action_logits)))
    torch.testing.assert_close(out.dwell_time, 30 / (1 + torch.exp(-out.dwell_logit)))
    assert ((out.action_probs > 0) & (out.action_probs < 1)).all()
    assert ((out.dwell_time > 0) & (out.dwell_time < 30)).all()


def test_heads_have_the_design_shapes_and_no_biases(
    config: ModelConfig, make_ranker: MakeRanker
) -> None:
    model = make_ranker(config)
    assert model.unembed.weight.shape == (NUM_ACTIONS, config.emb_dim)  # [D, A] as a Linear
    assert model.dwell_head.weight.shape == (1, config.emb_dim)
    assert model.embed.table.weight.shape == (config.table_rows, config.hash_width)
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


# One pass == full-mask reference -------------------------------------------------------------
@pytest.mark.parametrize("name", ["tiny", "mini", "nano", "prod"])
def test_one_pass_equals_reference_for_every_preset(
    name: str, make_ranker: MakeRanker, pad_history: PadHistory, gen: torch.Generator
) -> None:
    # The preset's geometry with a short history and small vocabularies (prod's 100k-row tables
    # at W=1024 would dominate the runtime).
    config = PRESETS[name].with_overrides(
        history_len=12, num_user_rows=50, num_post_rows=400, num_author_rows=60
    )
    model = make_ranker(config)
    assert len(model.trunk.blocks) == PRESETS[name].num_layers
    inputs = mixed_padding_inputs(config, pad_history, gen, num_candidates=3)
    assert_one_pass_equals_reference(model, inputs)


VARIANTS = {
    "mha": {"num_q_heads": 4, "num_kv_heads": 4},
    "gqa": {"num_q_heads": 4, "num_kv_heads": 2},
    "mqa": {"num_q_heads": 4, "num_kv_heads": 1},
    "gqa-8-2": {"num_q_heads": 8, "num_kv_heads": 2, "key_size": 16},
    "cap": {"attn_logit_cap": 5.0},
    "tight-cap": {"attn_logit_cap": 0.5},
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


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_one_pass_equals_reference_for_every_variant(
    variant: str,
    config: ModelConfig,
    make_ranker: MakeRanker,
    pad_history: PadHistory,
    gen: torch.Generator,
) -> None:
    config = config.with_overrides(**VARIANTS[variant])
    model = make_ranker(config)
    assert_one_pass_equals_reference(model, mixed_padding_inputs(config, pad_history, gen))


def test_one_pass_equals_reference_with_many_candidates(
    config: ModelConfig, make_ranker: MakeRanker, gen: torch.Generator
) -> None:
    model = make_ranker(config)
    inputs = random_ranker_inputs(config, batch=2, num_candidates=100, valid_len=7, generator=gen)
    assert_one_pass_equals_reference(model, inputs)


@pytest.mark.parametrize("user_padded", [False, True])
def test_all_padding_history_gives_finite_equal_scores(
    user_padded: bool, config: ModelConfig, make_ranker: MakeRanker, gen: torch.Generator
) -> None:
    model = make_ranker(config.with_overrides(attn_logit_cap=10.0))
    inputs = random_ranker_inputs(config, batch=2, num_candidates=4, valid_len=0, generator=gen)
    if user_padded:
        history = dataclasses.replace(inputs.history, user_hash=torch.zeros(2, 2, dtype=torch.long))
        inputs = RankerInputs(history, inputs.candidates)
    assert_one_pass_equals_reference(model, inputs)


# Candidate isolation -------------------------------------------------------------------------
@pytest.fixture
def isolation_case(
    config: ModelConfig, make_ranker: MakeRanker, pad_history: PadHistory, gen: torch.Generator
) -> tuple[PhoenixRanker, HistoryInputs, CandidateInputs, torch.Generator]:
    model = make_ranker(config)
    history = pad_history(random_history(config, batch=2, generator=gen), [12, 6])
    cands = random_candidates(config, batch=2, num_candidates=6, generator=gen)
    return model, history, cands, gen


@pytest.mark.parametrize("method", METHODS)
def test_scores_do_not_depend_on_candidate_order(isolation_case, method: str) -> None:  # type: ignore[no-untyped-def]
    model, history, cands, _ = isolation_case
    base = run(model, RankerInputs(history, cands), method)
    perm = torch.tensor([4, 0, 5, 2, 1, 3])
    out = run(model, RankerInputs(history, take(cands, perm)), method)
    assert_same_scores(out, RankerOutput(base.action_logits[:, perm], base.dwell_logit[:, perm]))


@pytest.mark.parametrize("method", METHODS)
def test_scores_do_not_depend_on_the_other_candidates(isolation_case, method: str) -> None:  # type: ignore[no-untyped-def]
    model, history, cands, gen = isolation_case
    config = model.config
    base = run(model, RankerInputs(history, cands), method)
    others = random_candidates(config, batch=2, num_candidates=6, generator=gen)
    replaced = concat(take(cands, [0]), take(others, [1, 2]), take(cands, [3]), take(others, [4]))
    out = run(model, RankerInputs(history, replaced), method)
    keep = [0, 3]
    assert_same_scores(
        RankerOutput(out.action_logits[:, keep], out.dwell_logit[:, keep]),
        RankerOutput(base.action_logits[:, keep], base.dwell_logit[:, keep]),
    )
    # guard: the replaced candidates do score differently
    assert not torch.allclose(out.action_logits[:, 1], base.action_logits[:, 1], atol=1e-4)


@pytest.mark.parametrize("method", METHODS)
def test_scores_do_not_depend_on_how_many_candidates(isolation_case, method: str) -> None:  # type: ignore[no-untyped-def]
    model, history, cands, gen = isolation_case
    base = run(model, RankerInputs(history, cands), method)
    for i in range(6):  # alone
        alone = run(model, RankerInputs(history, take(cands, [i])), method)
        assert_same_scores(
            alone, RankerOutput(base.action_logits[:, [i]], base.dwell_logit[:, [i]])
        )
    more = concat(cands, random_candidates(model.config, 2, num_candidates=40, generator=gen))
    out = run(model, RankerInputs(history, more), method)
    assert out.action_logits.shape[1] == 46
    assert_same_scores(RankerOutput(out.action_logits[:, :6], out.dwell_logit[:, :6]), base)


def test_identical_candidates_score_identically(isolation_case) -> None:  # type: ignore[no-untyped-def]
    model, history, cands, _ = isolation_case
    out = run(model, RankerInputs(history, take(cands, [2, 0, 2, 2])))
    for i in (2, 3):
        torch.testing.assert_close(out.action_logits[:, i], out.action_logits[:, 0])


def test_viewers_in_a_batch_do_not_affect_each_other(isolation_case) -> None:  # type: ignore[no-untyped-def]
    model, history, cands, _ = isolation_case
    both = run(model, RankerInputs(history, cands))
    for b in range(2):
        one_history = HistoryInputs(
            *(getattr(history, f.name)[b : b + 1] for f in dataclasses.fields(history))
        )
        one_cands = CandidateInputs(
            *(getattr(cands, f.name)[b : b + 1] for f in dataclasses.fields(cands))
        )
        one = run(model, RankerInputs(one_history, one_cands))
        assert_same_scores(
            one, RankerOutput(both.action_logits[b : b + 1], both.dwell_logit[b : b + 1])
        )


# History padding -----------------------------------------------------------------------------
def truncate(history: HistoryInputs, n: int) -> HistoryInputs:
    return HistoryInputs(
        history.user_hash,
        *(getattr(history, f.name)[:, :n] for f in dataclasses.fields(history)[1:]),
    )


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("valid", [0, 1, 5, 11])
def test_padding_a_history_does_not_change_scores(
    valid: int,
    method: str,
    config: ModelConfig,
    make_ranker: MakeRanker,
    pad_history: PadHistory,
    gen: torch.Generator,
) -> None:
    model = make_ranker(config)
    full = random_history(config, batch=2, generator=gen)
    cands = random_candidates(config, batch=2, num_candidates=5, generator=gen)
    short = truncate(full, valid)  # length n, no padding at all
    assert short.history_post_hash.shape[1] == valid
    zero_padded = pad_history(full, [valid, valid])  # padded to config.history_len with zeros
    garbage_padded = pad_history(full, [valid, valid], generator=gen)  # padded slots hold garbage
    assert garbage_padded.history_actions[:, valid:].sum() > 0
    want = run(model, RankerInputs(short, cands), method)
    for history in (zero_padded, garbage_padded):
        assert history.history_post_hash.shape[1] == config.history_len
        assert_same_scores(run(model, RankerInputs(history, cands), method), want)


def test_valid_history_content_and_order_matter(
    config: ModelConfig, make_ranker: MakeRanker, gen: torch.Generator
) -> None:
    # Guards for the padding and isolation tests: the scores do read the history.
    model = make_ranker(config)
    inputs = random_ranker_inputs(config, batch=1, num_candidates=4, valid_len=8, generator=gen)
    base = run(model, inputs).action_logits
    h = inputs.history
    swapped = [1, 0, *range(2, config.history_len)]
    changes = {
        "post row": dataclasses.replace(h, history_post_hash=h.history_post_hash.flip(-1)),
        "actions": dataclasses.replace(h, history_actions=1 - h.history_actions.clone()),
        "surface": dataclasses.replace(
            h, history_surface=(h.history_surface + 1) % config.num_surfaces
        ),
        "order": HistoryInputs(
            h.user_hash, *(getattr(h, f.name)[:, swapped] for f in dataclasses.fields(h)[1:])
        ),
        "user": dataclasses.replace(h, user_hash=h.user_hash.flip(-1)),
    }
    for what, history in changes.items():
        if what == "actions":  # keep padded slots free of actions
            acts = history.history_actions.clone()
            acts[:, 8:] = 0
            history = dataclasses.replace(history, history_actions=acts)
        out = run(model, RankerInputs(history, inputs.candidates)).action_logits
        assert (out - base).abs().max() > 1e-4, what


def test_int32_rows_score_like_int64(
    config: ModelConfig, make_ranker: MakeRanker, gen: torch.Generator
) -> None:
    model = make_ranker(config)
    inputs = random_ranker_inputs(config, batch=2, num_candidates=3, valid_len=4, generator=gen)

    def as_int32(obj):  # type: ignore[no-untyped-def]
        return type(obj)(
            **{
                f.name: (t.int() if not t.is_floating_point() else t)
                for f in dataclasses.fields(obj)
                for t in [getattr(obj, f.name)]
            }
        )

    small = RankerInputs(as_int32(inputs.history), as_int32(inputs.candidates))
    assert small.candidates.candidate_post_hash.dtype == torch.int32
    torch.testing.assert_close(run(model, small).action_logits, run(model, inputs).action_logits)


# Gradients -----------------------------------------------------------------------------------
def test_gradients_reach_the_rows_used_and_never_row_zero(
    config: ModelConfig, make_ranker: MakeRanker, gen: torch.Generator
) -> None:
    model = make_ranker(config).train()
    inputs = random_ranker_inputs(config, batch=2, num_candidates=4, valid_len=6, generator=gen)
    out = model(inputs)
    (out.action_logits.sum() + out.dwell_logit.sum()).backward()

    grad = model.embed.table.weight.grad
    assert grad is not None and torch.isfinite(grad).all()
    hashes = torch.cat(
        [
            inputs.history.user_hash.flatten(),
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
    assert out.action_logits.shape == (2, 0, NUM_ACTIONS)
    assert out.dwell_logit.shape == (2, 0)
