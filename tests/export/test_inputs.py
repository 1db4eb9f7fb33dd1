"""Input validation: a malformed tensor raises `InputError` whose message starts with its field."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from export.models import PhoenixRanker, RankerInputs
from export.models.sample import random_ranker_inputs
from phoenix.config import ModelConfig
from phoenix.errors import InputError

MakeRanker = Callable[..., PhoenixRanker]
Mutation = Callable[[ModelConfig, torch.Tensor], object]


def blocks(config: ModelConfig) -> dict[str, tuple[int, int]]:
    """First and last row each entity hashes to, by hand from X's layout (docs/FIDELITY.md,
    "Hashing"): row 0 padding, rows 1..64 reserved, a block of N rows at offset 65 for users, then
    posts, authors, IPs, each block's rows offset+1 .. offset+N-1."""
    n_u, n_p, n_a, n_ip = (
        config.num_user_rows,
        config.num_post_rows,
        config.num_author_rows,
        config.num_ip_rows,
    )
    user_off = 65
    post_off = user_off + n_u
    author_off = post_off + n_p
    ip_off = author_off + n_a
    return {
        "user": (user_off + 1, user_off + n_u - 1),
        "post": (post_off + 1, post_off + n_p - 1),
        "author": (author_off + 1, author_off + n_a - 1),
        "ip": (ip_off + 1, ip_off + n_ip - 1),
    }


def fill(t: torch.Tensor, value: float) -> torch.Tensor:
    """`t` with its first non-zero element replaced by `value` (the rest, padding included)."""
    t = t.clone()
    index = tuple(i[0] for i in torch.nonzero(t, as_tuple=True))
    t[index] = value
    return t


def first(t: torch.Tensor, value: float) -> torch.Tensor:
    """`t` with its very first element set to `value`."""
    t = t.clone()
    t.view(-1)[0] = value
    return t


def age(value: float) -> Mutation:
    def change(k: ModelConfig, t: torch.Tensor) -> torch.Tensor:
        t = t.clone()
        t[0, 3] = value
        return t

    return change


# (field, case id, what to put in the field given the config and the field's valid value)
CASES: list[tuple[str, str, Mutation]] = [
    ("user_hash", "three-columns", lambda k, t: t.repeat(1, 2)[:, :3]),
    ("user_hash", "1-d", lambda k, t: t[:, 0]),
    ("user_hash", "float", lambda k, t: t.float()),
    ("user_hash", "numpy", lambda k, t: t.numpy()),
    ("user_hash", "post-row", lambda k, t: fill(t, blocks(k)["post"][0])),
    ("user_hash", "reserved-row", lambda k, t: fill(t, 64)),
    ("user_hash", "block-offset-row", lambda k, t: fill(t, 65)),
    ("user_hash", "row-1", lambda k, t: fill(t, 1)),
    ("user_hash", "negative", lambda k, t: fill(t, -1)),
    ("user_ip_hash", "batch", lambda k, t: t[:1]),
    ("user_ip_hash", "float", lambda k, t: t.float()),
    ("user_ip_hash", "user-row", lambda k, t: fill(t, blocks(k)["user"][0])),
    ("user_ip_hash", "beyond-table", lambda k, t: fill(t, k.table_rows)),
    ("user_categorical", "six-columns", lambda k, t: t[:, :6]),
    ("user_categorical", "float", lambda k, t: t.float()),
    ("user_categorical", "negative", lambda k, t: first(t, -1)),
    ("user_float", "int", lambda k, t: t.long()),
    ("user_float", "nan", lambda k, t: first(t, float("nan"))),
    ("user_float", "inf", lambda k, t: first(t, float("inf"))),
    ("user_float", "three-columns", lambda k, t: t[:, :3]),
    ("user_float", "negative-age", age(-2.0)),  # log1p(-2) would be NaN
    ("user_float", "slightly-negative-age", age(-0.5)),
    ("user_apps", "width", lambda k, t: t[:, :-1]),
    ("user_apps", "long", lambda k, t: t.long()),
    ("user_apps", "two", lambda k, t: first(t, 2)),
    ("user_apps", "half", lambda k, t: first(t, 0.5)),
    ("user_apps", "nan", lambda k, t: first(t, float("nan"))),
    ("history_post_hash", "three-columns", lambda k, t: t.repeat(1, 1, 2)[..., :3]),
    ("history_post_hash", "batch", lambda k, t: t[:1]),
    ("history_post_hash", "float", lambda k, t: t.float()),
    ("history_post_hash", "user-row", lambda k, t: fill(t, blocks(k)["user"][1])),
    ("history_post_hash", "author-row", lambda k, t: fill(t, blocks(k)["author"][0])),
    ("history_post_hash", "beyond-table", lambda k, t: fill(t, k.table_rows)),
    ("history_post_hash", "negative", lambda k, t: fill(t, -3)),
    ("history_author_hash", "short", lambda k, t: t[:, :-1]),
    ("history_author_hash", "int16", lambda k, t: t.to(torch.int16)),
    ("history_author_hash", "post-row", lambda k, t: fill(t, blocks(k)["post"][1])),
    ("history_author_hash", "ip-row", lambda k, t: fill(t, blocks(k)["ip"][0])),
    ("history_author_hash", "beyond-table", lambda k, t: fill(t, k.table_rows)),
    ("history_surface", "negative", lambda k, t: fill(t, -1)),
    ("history_surface", "float", lambda k, t: t.float()),
    ("history_surface", "long", lambda k, t: torch.cat([t, t], 1)),
    ("history_time", "negative", lambda k, t: fill(t, -5)),
    ("history_time", "one-column", lambda k, t: t[..., 0]),
    ("history_time", "float", lambda k, t: t.double()),
    ("history_context", "negative", lambda k, t: fill(t, -1)),
    ("history_context", "two-columns", lambda k, t: t[..., :2]),
    ("history_context", "float", lambda k, t: t.float()),
    ("history_follow", "two", lambda k, t: first(t, 2)),
    ("history_follow", "negative", lambda k, t: first(t, -1)),
    ("history_follow", "three-columns", lambda k, t: t.repeat(1, 1, 2)[..., :3]),
    ("history_follow", "float", lambda k, t: t.float()),
    ("history_counts", "negative", lambda k, t: fill(t, -1)),
    ("history_counts", "four", lambda k, t: t[..., :4]),
    ("history_counts", "float", lambda k, t: t.float()),
    ("history_sids", "beyond-codebook", lambda k, t: fill(t, k.sid_codes + 1)),
    ("history_sids", "negative", lambda k, t: fill(t, -1)),
    ("history_sids", "levels", lambda k, t: t[..., :-1]),
    ("history_sids", "float", lambda k, t: t.float()),
    ("history_actions", "63-columns", lambda k, t: t[..., :-1]),
    ("history_actions", "short", lambda k, t: t[:, :-1]),
    ("history_actions", "long-int", lambda k, t: t.long()),
    ("history_actions", "bool", lambda k, t: t.bool()),
    ("history_actions", "two", lambda k, t: fill(t, 2)),
    ("history_actions", "half", lambda k, t: fill(t, 0.5)),
    ("history_actions", "minus-one", lambda k, t: fill(t, -1)),
    ("history_actions", "nan", lambda k, t: fill(t, float("nan"))),
    ("history_dwell", "nan", lambda k, t: fill(t, float("nan"))),
    ("history_dwell", "inf", lambda k, t: fill(t, float("inf"))),
    ("history_dwell", "negative", lambda k, t: fill(t, -0.5)),
    ("history_dwell", "long", lambda k, t: t.long()),
    ("history_dwell", "3-d", lambda k, t: t[..., None]),
    ("candidate_post_hash", "batch", lambda k, t: t[:1]),
    ("candidate_post_hash", "three-columns", lambda k, t: t.repeat(1, 1, 2)[..., :3]),
    ("candidate_post_hash", "float", lambda k, t: t.double()),
    ("candidate_post_hash", "list", lambda k, t: t.tolist()),
    ("candidate_post_hash", "user-row", lambda k, t: fill(t, blocks(k)["user"][0])),
    ("candidate_post_hash", "author-row", lambda k, t: fill(t, blocks(k)["author"][1])),
    ("candidate_post_hash", "beyond-table", lambda k, t: fill(t, 10**9)),
    ("candidate_author_hash", "short", lambda k, t: t[:, :-1]),
    ("candidate_author_hash", "float", lambda k, t: t.float()),
    ("candidate_author_hash", "post-row", lambda k, t: fill(t, blocks(k)["post"][0])),
    ("candidate_author_hash", "negative", lambda k, t: fill(t, -7)),
    ("candidate_surface", "negative", lambda k, t: fill(t, -1)),
    ("candidate_surface", "float", lambda k, t: t.float()),
    ("candidate_surface", "3-d", lambda k, t: t[..., None]),
    ("candidate_time", "negative", lambda k, t: fill(t, -1)),
    ("candidate_time", "three-columns", lambda k, t: t.repeat(1, 1, 2)[..., :3]),
    ("candidate_context", "negative", lambda k, t: fill(t, -2)),
    ("candidate_context", "float", lambda k, t: t.float()),
    ("candidate_follow", "two", lambda k, t: first(t, 2)),
    ("candidate_follow", "short", lambda k, t: t[:, :-1]),
    ("candidate_counts", "negative", lambda k, t: fill(t, -10)),
    ("candidate_counts", "six", lambda k, t: torch.cat([t, t[..., :1]], -1)),
    ("candidate_sids", "beyond-codebook", lambda k, t: fill(t, k.sid_codes + 1)),
    ("candidate_sids", "negative", lambda k, t: fill(t, -4)),
    ("candidate_sids", "levels", lambda k, t: torch.cat([t, t[..., :1]], -1)),
    ("candidate_stale", "two", lambda k, t: first(t, 2)),
    ("candidate_stale", "negative", lambda k, t: first(t, -1)),
    ("candidate_stale", "float", lambda k, t: t.float()),
    ("candidate_stale", "3-d", lambda k, t: t[..., None]),
]


def replace_field(inputs: RankerInputs, field: str, value: object) -> RankerInputs:
    return RankerInputs.from_tensors({**inputs.tensors(), field: value})  # type: ignore[dict-item]


def field_of(inputs: RankerInputs, field: str) -> torch.Tensor:
    return inputs.tensors()[field]


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


def test_the_cases_cover_every_field(inputs: RankerInputs) -> None:
    assert {f for f, _, _ in CASES} == set(inputs.tensors())


def test_a_missing_tensor_is_named(inputs: RankerInputs) -> None:
    tensors = inputs.tensors()
    del tensors["candidate_stale"], tensors["history_dwell"]
    with pytest.raises(InputError, match=r"missing inputs: history_dwell"):
        RankerInputs.from_tensors(tensors)


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


def test_blocks_by_hand_agree_with_the_config(config: ModelConfig) -> None:
    b = blocks(config)
    for entity in ("user", "post", "author", "ip"):
        rows = config.rows(entity)
        assert (rows.start, rows.stop - 1) == b[entity], entity
    assert b["ip"][1] < config.table_rows


ROW_FIELDS = {
    "user_hash": "user",
    "user_ip_hash": "ip",
    "history_post_hash": "post",
    "history_author_hash": "author",
    "candidate_post_hash": "post",
    "candidate_author_hash": "author",
}


def test_block_boundaries_are_accepted(config: ModelConfig, inputs: RankerInputs) -> None:
    b = blocks(config)

    def edge(t: torch.Tensor, lo_hi: tuple[int, int]) -> torch.Tensor:
        out = torch.full_like(t, lo_hi[0])
        out[..., -1] = lo_hi[1]
        return torch.where(t[..., :1] != 0, out, torch.zeros_like(out))  # keep the padding

    tensors = inputs.tensors()
    for field, entity in ROW_FIELDS.items():
        tensors[field] = edge(tensors[field], b[entity])
    tensors["history_surface"] = torch.full_like(tensors["history_surface"], 15)
    tensors["history_sids"] = torch.full_like(tensors["history_sids"], config.sid_codes)
    tensors["candidate_sids"] = torch.zeros_like(tensors["candidate_sids"])
    tensors["history_dwell"] = torch.zeros_like(tensors["history_dwell"])
    RankerInputs.from_tensors(tensors).validate(config)


@pytest.mark.parametrize(
    ("field", "value_of"),
    [
        ("user_hash", lambda b: b["user"][0] - 1),
        ("user_hash", lambda b: b["user"][1] + 1),
        ("user_ip_hash", lambda b: b["ip"][0] - 1),
        ("user_ip_hash", lambda b: b["ip"][1] + 1),
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
    bad = replace_field(inputs, field, fill(field_of(inputs, field), value))
    with pytest.raises(InputError, match=rf"^{field}: rows must be 0 \(padding\) or in"):
        bad.validate(config)


def test_an_entity_without_a_block_takes_only_xs_rows(
    config: ModelConfig, gen: torch.Generator
) -> None:
    # X turns an entity off with a block of 0 rows: IP addresses then hash to 0 only, users to
    # row 1 (a presence bit) or 0 (docs/FIDELITY.md, "Hashing").
    off = config.with_overrides(num_ip_rows=0, num_user_rows=0)
    assert off.rows("ip") == range(0) and off.rows("user") == range(1, 2)
    inputs = random_ranker_inputs(off, batch=2, num_candidates=2, generator=gen)
    assert (inputs.user.user_ip_hash == 0).all()
    presence = torch.tensor([[1, 0], [0, 0]])
    replace_field(inputs, "user_hash", presence).validate(off)
    ip = torch.tensor([[blocks(config)["ip"][0], 0], [0, 0]])
    with pytest.raises(InputError, match=r"^user_ip_hash: this model has no rows for it"):
        replace_field(inputs, "user_ip_hash", ip).validate(off)
    with pytest.raises(InputError, match=r"^user_hash: rows must be 0 \(padding\) or in \[1, 1\]"):
        replace_field(inputs, "user_hash", torch.tensor([[66, 0], [0, 0]])).validate(off)


def test_categorical_codes_beyond_a_vocabulary_read_its_last_row(
    config: ModelConfig, inputs: RankerInputs, make_ranker: MakeRanker
) -> None:
    # An earlier version refused surfaces >= num_surfaces. X clips every categorical code into
    # its vocabulary instead (an unknown code lands on the last row), and so does the model now:
    # a code past the end scores exactly like the last code, and is not an error.
    model = make_ranker(config)
    t = inputs.tensors()
    last = {
        "candidate_surface": torch.full_like(t["candidate_surface"], config.num_surfaces - 1),
        "history_context": t["history_context"].clone(),
        "user_categorical": t["user_categorical"].clone(),
    }
    beyond = {
        "candidate_surface": torch.full_like(t["candidate_surface"], config.num_surfaces + 40),
        "history_context": t["history_context"].clone(),
        "user_categorical": t["user_categorical"].clone(),
    }
    last["history_context"][..., 0] = config.num_timezones - 1
    beyond["history_context"][..., 0] = config.num_timezones + 3
    last["user_categorical"][:, 1] = config.num_countries - 1
    beyond["user_categorical"][:, 1] = 10**6
    with torch.no_grad():
        a = model(RankerInputs.from_tensors({**t, **last}))
        b = model(RankerInputs.from_tensors({**t, **beyond}))
        base = model(inputs)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.continuous, b.continuous)
    assert (a.logits - base.logits).abs().max() > 1e-4  # guard: the codes are read


def test_accepted_variants(config: ModelConfig, inputs: RankerInputs) -> None:
    inputs.validate(config)  # partly padded
    t = inputs.tensors()
    as_int32 = {k: (v if v.is_floating_point() else v.int()) for k, v in t.items()}
    as_float64 = {k: (v.double() if v.is_floating_point() else v) for k, v in t.items()}
    short = {k: (v[:, :3] if k.startswith("history_") else v) for k, v in t.items()}
    no_user = {**t, "user_hash": torch.zeros_like(t["user_hash"])}
    no_ids = {
        **t,
        "history_sids": torch.zeros_like(t["history_sids"]),
        "candidate_sids": torch.zeros_like(t["candidate_sids"]),
    }
    unknown_times = {**t, "candidate_time": torch.zeros_like(t["candidate_time"])}
    long_dwell = {**t, "history_dwell": t["history_dwell"] + 1000.0}  # clipped to 30 s by the model
    for variant in (as_int32, as_float64, short, no_user, no_ids, unknown_times, long_dwell):
        RankerInputs.from_tensors(variant).validate(config)
