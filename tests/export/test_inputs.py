"""Input validation: a malformed tensor raises `InputError` whose message starts with its field."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
import torch

from export.models import CandidateInputs, HistoryInputs, PhoenixRanker, RankerInputs
from export.models.sample import random_ranker_inputs
from phoenix.config import ModelConfig
from phoenix.errors import InputError

MakeRanker = Callable[..., PhoenixRanker]
Mutation = Callable[[ModelConfig, torch.Tensor], object]


def blocks(config: ModelConfig) -> dict[str, tuple[int, int]]:
    """First and last row of each entity block, from DESIGN.md 4.1 (rows 1..64 reserved)."""
    n_u, n_p, n_a = config.num_user_rows, config.num_post_rows, config.num_author_rows
    user = (65, 64 + n_u - 1)
    post = (user[1] + 1, user[1] + n_p - 1)
    author = (post[1] + 1, post[1] + n_a - 1)
    return {"user": user, "post": post, "author": author}


def history(inputs: RankerInputs, **changes: object) -> RankerInputs:
    return RankerInputs(dataclasses.replace(inputs.history, **changes), inputs.candidates)


def candidates(inputs: RankerInputs, **changes: object) -> RankerInputs:
    return RankerInputs(inputs.history, dataclasses.replace(inputs.candidates, **changes))


def fill_rows(t: torch.Tensor, value: float) -> torch.Tensor:
    """`t` with its first non-zero element replaced by `value` (the rest, padding included)."""
    t = t.clone()
    index = tuple(i[0] for i in torch.nonzero(t, as_tuple=True))
    t[index] = value
    return t


# (field, case id, what to put in the field given the config and the field's valid value)
CASES: list[tuple[str, str, Mutation]] = [
    ("user_hash", "three-columns", lambda k, t: t.repeat(1, 2)[:, :3]),
    ("user_hash", "1-d", lambda k, t: t[:, 0]),
    ("user_hash", "float", lambda k, t: t.float()),
    ("user_hash", "numpy", lambda k, t: t.numpy()),
    ("user_hash", "post-row", lambda k, t: fill_rows(t, blocks(k)["post"][0])),
    ("user_hash", "reserved-row", lambda k, t: fill_rows(t, 64)),
    ("user_hash", "row-1", lambda k, t: fill_rows(t, 1)),
    ("user_hash", "negative", lambda k, t: fill_rows(t, -1)),
    ("history_post_hash", "three-columns", lambda k, t: t.repeat(1, 1, 2)[..., :3]),
    ("history_post_hash", "batch", lambda k, t: t[:1]),
    ("history_post_hash", "float", lambda k, t: t.float()),
    ("history_post_hash", "user-row", lambda k, t: fill_rows(t, blocks(k)["user"][1])),
    ("history_post_hash", "author-row", lambda k, t: fill_rows(t, blocks(k)["author"][0])),
    ("history_post_hash", "beyond-table", lambda k, t: fill_rows(t, k.table_rows)),
    ("history_post_hash", "negative", lambda k, t: fill_rows(t, -3)),
    ("history_author_hash", "short", lambda k, t: t[:, :-1]),
    ("history_author_hash", "int16", lambda k, t: t.to(torch.int16)),
    ("history_author_hash", "post-row", lambda k, t: fill_rows(t, blocks(k)["post"][1])),
    ("history_author_hash", "beyond-table", lambda k, t: fill_rows(t, k.table_rows)),
    ("history_actions", "21-actions", lambda k, t: t[..., :-1]),
    ("history_actions", "short", lambda k, t: t[:, :-1]),
    ("history_actions", "long-int", lambda k, t: t.long()),
    ("history_actions", "bool", lambda k, t: t.bool()),
    ("history_actions", "two", lambda k, t: fill_rows(t, 2)),
    ("history_actions", "half", lambda k, t: fill_rows(t, 0.5)),
    ("history_actions", "minus-one", lambda k, t: fill_rows(t, -1)),
    ("history_actions", "nan", lambda k, t: fill_rows(t, float("nan"))),
    ("history_surface", "negative", lambda k, t: fill_rows(t, -1)),
    ("history_surface", "num-surfaces", lambda k, t: fill_rows(t, k.num_surfaces)),
    ("history_surface", "float", lambda k, t: t.float()),
    ("history_surface", "long", lambda k, t: torch.cat([t, t], 1)),
    ("candidate_post_hash", "batch", lambda k, t: t[:1]),
    ("candidate_post_hash", "three-columns", lambda k, t: t.repeat(1, 1, 2)[..., :3]),
    ("candidate_post_hash", "float", lambda k, t: t.double()),
    ("candidate_post_hash", "list", lambda k, t: t.tolist()),
    ("candidate_post_hash", "user-row", lambda k, t: fill_rows(t, blocks(k)["user"][0])),
    ("candidate_post_hash", "author-row", lambda k, t: fill_rows(t, blocks(k)["author"][1])),
    ("candidate_post_hash", "beyond-table", lambda k, t: fill_rows(t, 10**9)),
    ("candidate_author_hash", "short", lambda k, t: t[:, :-1]),
    ("candidate_author_hash", "float", lambda k, t: t.float()),
    ("candidate_author_hash", "post-row", lambda k, t: fill_rows(t, blocks(k)["post"][0])),
    ("candidate_author_hash", "negative", lambda k, t: fill_rows(t, -7)),
    ("candidate_surface", "negative", lambda k, t: fill_rows(t, -1)),
    ("candidate_surface", "num-surfaces", lambda k, t: fill_rows(t, k.num_surfaces)),
    ("candidate_surface", "float", lambda k, t: t.float()),
    ("candidate_surface", "3-d", lambda k, t: t[..., None]),
]


def replace_field(inputs: RankerInputs, field: str, value: object) -> RankerInputs:
    if field.startswith("candidate_"):
        return candidates(inputs, **{field: value})
    return history(inputs, **{field: value})


def field_of(inputs: RankerInputs, field: str) -> torch.Tensor:
    part = inputs.candidates if field.startswith("candidate_") else inputs.history
    return getattr(part, field)


@pytest.fixture
def inputs(config: ModelConfig, gen: torch.Generator) -> RankerInputs:
    """Two viewers, partly padded histories (so row 0 is present), 5 candidates."""
    return random_ranker_inputs(config, batch=2, num_candidates=5, valid_len=7, generator=gen)


@pytest.mark.parametrize(
    ("field", "mutate"), [(f, m) for f, _, m in CASES], ids=[f"{f}-{i}" for f, i, _ in CASES]
)
def test_bad_input_raises_input_error_naming_the_field(
    field: str,
    mutate: Mutation,
    config: ModelConfig,
    inputs: RankerInputs,
    make_ranker: MakeRanker,
) -> None:
    bad = replace_field(inputs, field, mutate(config, field_of(inputs, field)))
    pattern = rf"^{field}: "
    with pytest.raises(InputError, match=pattern):
        bad.validate(config)
    model = make_ranker(config)
    with pytest.raises(InputError, match=pattern):
        model(bad)
    with pytest.raises(InputError, match=pattern):
        model.forward_reference(bad)


def test_the_cases_cover_every_field() -> None:
    fields = (*dataclasses.fields(HistoryInputs), *dataclasses.fields(CandidateInputs))
    assert {f for f, _, _ in CASES} == {f.name for f in fields}


def test_history_longer_than_the_config_is_refused(
    config: ModelConfig, gen: torch.Generator
) -> None:
    too_long = random_ranker_inputs(
        config, num_candidates=2, history_len=config.history_len + 1, generator=gen
    )
    with pytest.raises(InputError, match=r"^history_post_hash: history length 13 exceeds"):
        too_long.validate(config)
    random_ranker_inputs(config, history_len=config.history_len, generator=gen).validate(config)


def test_more_candidates_than_max_candidates_is_refused(
    config: ModelConfig, gen: torch.Generator
) -> None:
    config = config.with_overrides(max_candidates=4)
    random_ranker_inputs(config, num_candidates=4, generator=gen).validate(config)
    too_many = random_ranker_inputs(config, num_candidates=5, generator=gen)
    with pytest.raises(InputError, match=r"^candidate_post_hash: 5 candidates exceed"):
        too_many.validate(config)


def test_block_boundaries_are_accepted(config: ModelConfig, inputs: RankerInputs) -> None:
    b = blocks(config)
    assert b["author"][1] == config.table_rows - 1

    def rows(lo_hi: tuple[int, int], shape: tuple[int, ...]) -> torch.Tensor:
        t = torch.full(shape, lo_hi[0])
        t[..., -1] = lo_hi[1]
        return t

    h = inputs.history
    cands = inputs.candidates
    edge = RankerInputs(
        dataclasses.replace(
            h,
            user_hash=rows(b["user"], tuple(h.user_hash.shape)),
            history_post_hash=rows(b["post"], tuple(h.history_post_hash.shape)),
            history_author_hash=rows(b["author"], tuple(h.history_author_hash.shape)),
            history_surface=torch.full_like(h.history_surface, config.num_surfaces - 1),
        ),
        dataclasses.replace(
            cands,
            candidate_post_hash=rows(b["post"], tuple(cands.candidate_post_hash.shape)),
            candidate_author_hash=rows(b["author"], tuple(cands.candidate_author_hash.shape)),
            candidate_surface=torch.zeros_like(cands.candidate_surface),
        ),
    )
    edge.validate(config)


@pytest.mark.parametrize(
    ("field", "value_of"),
    [
        ("user_hash", lambda b: b["user"][0] - 1),
        ("user_hash", lambda b: b["user"][1] + 1),
        ("history_post_hash", lambda b: b["post"][0] - 1),
        ("history_post_hash", lambda b: b["post"][1] + 1),
        ("history_author_hash", lambda b: b["author"][0] - 1),
        ("history_author_hash", lambda b: b["author"][1] + 1),
        ("candidate_post_hash", lambda b: b["post"][0] - 1),
        ("candidate_author_hash", lambda b: b["author"][1] + 1),
    ],
)
def test_one_row_outside_a_block_is_refused(
    field: str, value_of: Callable[..., int], config: ModelConfig, inputs: RankerInputs
) -> None:
    value = value_of(blocks(config))
    bad = replace_field(inputs, field, fill_rows(field_of(inputs, field), value))
    with pytest.raises(InputError, match=rf"^{field}: rows must be 0 \(padding\) or in"):
        bad.validate(config)


def test_accepted_variants(config: ModelConfig, inputs: RankerInputs) -> None:
    inputs.validate(config)  # partly padded
    # int32 rows and surfaces, float64 actions, a short history, all-padding rows
    h = inputs.history
    variants = [
        history(inputs, user_hash=h.user_hash.int(), history_surface=h.history_surface.int()),
        candidates(inputs, candidate_post_hash=inputs.candidates.candidate_post_hash.int()),
        history(inputs, history_actions=h.history_actions.double()),
        RankerInputs(
            dataclasses.replace(
                h,
                history_post_hash=h.history_post_hash[:, :3],
                history_author_hash=h.history_author_hash[:, :3],
                history_actions=h.history_actions[:, :3],
                history_surface=h.history_surface[:, :3],
            ),
            inputs.candidates,
        ),
        history(inputs, user_hash=torch.zeros_like(h.user_hash)),
    ]
    for variant in variants:
        variant.validate(config)
