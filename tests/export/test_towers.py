"""`RetrievalModel`: X's two-tower model (docs/FIDELITY.md, "The two-tower model")."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from export.models import HistoryInputs, RetrievalModel
from export.models.layers import right_anchored_positions
from export.models.sample import random_history, random_rows
from phoenix.config import ModelConfig
from phoenix.errors import InputError

MakeRetrieval = Callable[..., RetrievalModel]
PadHistory = Callable[..., HistoryInputs]
F64 = torch.float64


@pytest.fixture
def towers(config: ModelConfig) -> ModelConfig:
    """The towers' config: the small geometry with X's two-tower choices."""
    return config.retrieval_config()


def users(model: RetrievalModel, history: HistoryInputs, **kwargs: bool) -> Tensor:
    with torch.no_grad():
        return model.embed_users(history, **kwargs)


def posts(model: RetrievalModel, post_hash: Tensor, author_hash: Tensor, sids: Tensor) -> Tensor:
    with torch.no_grad():
        return model.embed_posts(post_hash, author_hash, sids)


def random_posts(
    config: ModelConfig, n: int, gen: torch.Generator
) -> tuple[Tensor, Tensor, Tensor]:
    sids = torch.randint(1, config.sid_codes + 1, (n, config.sid_levels), generator=gen)
    if n > 2:
        sids[1] = 0  # a post without semantic ids
        sids[2, 0] = 0  # first level missing: no hash level either
    return (
        random_rows((n, 2), config.rows("post"), gen),
        random_rows((n, 2), config.rows("author"), gen),
        sids,
    )


def assert_unit_norm(x: Tensor) -> None:
    assert torch.isfinite(x).all()
    norms = x.to(F64).norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones_like(norms), rtol=0, atol=1e-5)


def truncate(history: HistoryInputs, n: int) -> HistoryInputs:
    return HistoryInputs(**{k: v[:, :n] for k, v in history.tensors().items()})


def replace(history: HistoryInputs, **changes: Tensor) -> HistoryInputs:
    return HistoryInputs(**{**history.tensors(), **changes})


def test_towers_config_is_xs_two_tower_choice(config: ModelConfig, towers: ModelConfig) -> None:
    assert towers.post_sublayer_norm and towers.sid_cross_attention
    assert towers.sid_width == towers.hash_width
    assert (towers.emb_dim, towers.num_layers, towers.history_len) == (
        config.emb_dim,
        config.num_layers,
        config.history_len,
    )


# User tower ----------------------------------------------------------------------------------
def test_user_embeddings_are_unit_norm_and_zero_without_history(
    towers: ModelConfig,
    make_retrieval: MakeRetrieval,
    pad_history: PadHistory,
    gen: torch.Generator,
) -> None:
    model = make_retrieval(towers)
    history = pad_history(random_history(towers, batch=3, generator=gen), [12, 4, 0], gen)
    out = users(model, history)
    assert out.shape == (3, towers.emb_dim)
    assert out.dtype == torch.float32
    assert_unit_norm(out[:2])
    assert (out[2] == 0).all()  # no history: the zero vector, as X's
    assert (users(model, truncate(history, 0)) == 0).all()


def test_user_tower_is_the_mean_of_the_trunk_over_valid_items(
    towers: ModelConfig,
    make_retrieval: MakeRetrieval,
    pad_history: PadHistory,
    gen: torch.Generator,
) -> None:
    model = make_retrieval(towers)
    history = pad_history(random_history(towers, batch=2, generator=gen), [12, 5], generator=gen)
    got = users(model, history)
    with torch.no_grad():
        tokens, valid = model.history_tokens(history)
        length = tokens.shape[1]
        mask = valid[:, None, :].expand(2, length, length)  # every query sees the valid items
        positions = right_anchored_positions(valid, 0, towers.history_len, 0)
        out = model.user_trunk.forward_full_mask(tokens, mask, valid, positions)
    assert valid.tolist() == [[True] * 12, [True] * 5 + [False] * 7]
    assert positions[1].tolist() == [7, 8, 9, 10, 11] + [0] * 7  # right-anchored
    for b in range(2):
        rows = [out[b, i].to(F64) for i in range(length) if valid[b, i]]
        mean = torch.stack(rows).mean(0)
        torch.testing.assert_close(got[b].to(F64), mean / mean.norm(), rtol=0, atol=1e-5)


def test_history_token_is_xs_projection(
    towers: ModelConfig, make_retrieval: MakeRetrieval, gen: torch.Generator
) -> None:
    # proj([semantic ids | author's two rows | signed actions | context]) * sqrt(W), then to D.
    model = make_retrieval(towers)
    h = random_history(towers, batch=1, valid_len=4, generator=gen)
    w = towers.hash_width
    with torch.no_grad():
        tokens, _ = model.history_tokens(h)
        table = model.table.weight.to(F64)
        author = torch.cat(
            [table[h.history_author_hash[..., 0]], table[h.history_author_hash[..., 1]]], -1
        )
        slices = model.actions.table.to(F64).view(64, w // 64)
        acts = h.history_actions.to(F64)
        signed = ((2 * acts - 1)[..., None] * slices).flatten(-2)
        signed = signed * (acts.sum(-1, keepdim=True) > 0)
        ctx = h.history_context
        context = (
            torch.cat(
                [
                    model.context.timezone.weight.to(F64)[ctx[..., 0]],
                    model.context.hour.weight.to(F64)[ctx[..., 1]],
                    model.context.day.weight.to(F64)[ctx[..., 2]],
                ],
                -1,
            )
            @ model.context.proj.weight.to(F64).T
        )
        sid = model.sids(h.history_post_hash, h.history_sids).to(F64)
        x = torch.cat([sid, author, signed, context], -1) @ model.history_proj.weight.to(F64).T
        want = (x * math.sqrt(w)) @ model.tfmr_proj.weight.to(F64).T
    assert model.history_proj.weight.shape == (w, 5 * w)
    torch.testing.assert_close(tokens.to(F64), want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("attention", [True, False])
@pytest.mark.parametrize("valid", [0, 3, 11])
def test_history_padding_does_not_change_the_user_embedding(
    valid: int,
    attention: bool,
    towers: ModelConfig,
    make_retrieval: MakeRetrieval,
    pad_history: PadHistory,
    gen: torch.Generator,
) -> None:
    model = make_retrieval(towers)
    full = random_history(towers, batch=2, generator=gen)
    want = users(model, truncate(full, valid), x_user_tower_attention=attention)
    for garbage in (None, gen):
        padded = pad_history(full, [valid, valid], generator=garbage)
        assert padded.history_post_hash.shape[1] == towers.history_len
        got = users(model, padded, x_user_tower_attention=attention)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    middle = truncate(pad_history(full, [valid, valid], generator=gen), valid + 1)
    torch.testing.assert_close(
        users(model, middle, x_user_tower_attention=attention), want, rtol=0, atol=1e-5
    )


#: Fields X's user tower reads, with a valid change each.
READ = {
    "history_post_hash": lambda k, t: t.flip(-1),  # through the semantic-id hash level
    "history_author_hash": lambda k, t: t.flip(-1),
    "history_sids": lambda k, t: torch.where(t > 0, t % k.sid_codes + 1, t),
    "history_actions": lambda k, t: 1 - t,
    "history_context": lambda k, t: (t + 1) % 7,
}
#: Fields it does not read (X's two-tower history token has no surface, age, follow, counts or
#: dwell): changing them must change nothing.
NOT_READ = {
    "history_surface": lambda k, t: (t + 1) % 16,
    "history_time": lambda k, t: t + 86400,
    "history_follow": lambda k, t: 1 - t,
    "history_counts": lambda k, t: t * 7 + 3,
    "history_dwell": lambda k, t: (t + 7) % 30,
}


def test_the_read_cases_cover_every_history_field(towers: ModelConfig) -> None:
    assert set(READ) | set(NOT_READ) == set(random_history(towers).tensors())


@pytest.mark.parametrize("field", list(READ))
def test_user_embedding_reads_the_history(
    field: str, towers: ModelConfig, make_retrieval: MakeRetrieval, gen: torch.Generator
) -> None:
    # Guard for the padding test: valid slots do matter.
    model = make_retrieval(towers)
    history = random_history(towers, batch=1, valid_len=6, generator=gen)
    t = history.tensors()[field]
    changed = READ[field](towers, t)
    changed[:, 6:] = 0  # padding stays padding
    base = users(model, history)
    assert (users(model, replace(history, **{field: changed})) - base).abs().max() > 1e-4


@pytest.mark.parametrize("field", list(NOT_READ))
def test_fields_xs_user_tower_does_not_read_change_nothing(
    field: str, towers: ModelConfig, make_retrieval: MakeRetrieval, gen: torch.Generator
) -> None:
    model = make_retrieval(towers)
    history = random_history(towers, batch=2, valid_len=6, generator=gen)
    changed = replace(history, **{field: NOT_READ[field](towers, history.tensors()[field])})
    assert torch.equal(users(model, changed), users(model, history))


def test_fewer_items_and_their_order_matter(
    towers: ModelConfig, make_retrieval: MakeRetrieval, gen: torch.Generator
) -> None:
    model = make_retrieval(towers)
    history = random_history(towers, batch=1, valid_len=6, generator=gen)
    base = users(model, history)
    assert (users(model, truncate(history, 5)) - base).abs().max() > 1e-4
    swapped = [1, 0, *range(2, towers.history_len)]
    reordered = HistoryInputs(**{k: v[:, swapped] for k, v in history.tensors().items()})
    assert (users(model, reordered) - base).abs().max() > 1e-4  # positions, through attention


def test_without_attention_is_a_model_whose_attention_outputs_are_zero(
    towers: ModelConfig,
    make_retrieval: MakeRetrieval,
    pad_history: PadHistory,
    gen: torch.Generator,
) -> None:
    # docs/FIDELITY.md, deviation 2: X's unpacked user tower's attention contributes nothing;
    # `x_user_tower_attention=False` reproduces it. The same model with every attention output
    # projection zeroed must give the same embeddings.
    model = make_retrieval(towers)
    zeroed = copy.deepcopy(model)
    with torch.no_grad():
        for block in zeroed.user_trunk.blocks:
            block.attn.o_proj.weight.zero_()
    history = pad_history(random_history(towers, batch=3, generator=gen), [12, 6, 1], gen)
    x_like = users(model, history, x_user_tower_attention=False)
    torch.testing.assert_close(x_like, users(zeroed, history), rtol=0, atol=1e-6)
    assert_unit_norm(x_like)
    assert (users(model, history) - x_like).abs().max() > 1e-3  # attention does work by default
    # Without attention the items do not see each other: their order cannot matter.
    perm = [5, 2, 0, 4, 1, 3, *range(6, towers.history_len)]
    one = HistoryInputs(**{k: v[1:2, perm] for k, v in history.tensors().items()})
    torch.testing.assert_close(
        users(model, one, x_user_tower_attention=False), x_like[1:2], rtol=0, atol=1e-5
    )


def test_viewers_are_embedded_independently(
    towers: ModelConfig,
    make_retrieval: MakeRetrieval,
    pad_history: PadHistory,
    gen: torch.Generator,
) -> None:
    model = make_retrieval(towers)
    history = pad_history(random_history(towers, batch=3, generator=gen), [12, 2, 7], gen)
    both = users(model, history)
    for b in range(3):
        one = HistoryInputs(**{k: v[b : b + 1] for k, v in history.tensors().items()})
        torch.testing.assert_close(users(model, one), both[b : b + 1], rtol=0, atol=1e-5)


def test_user_tower_validates_its_inputs(
    towers: ModelConfig, make_retrieval: MakeRetrieval, gen: torch.Generator
) -> None:
    model = make_retrieval(towers)
    too_long = random_history(towers, history_len=towers.history_len + 1, generator=gen)
    with pytest.raises(InputError, match=r"^history_post_hash:"):
        model.embed_users(too_long)
    history = random_history(towers, batch=2, generator=gen)
    sids = history.history_sids.clone()
    sids[0, 0, 0] = towers.sid_codes + 1
    with pytest.raises(InputError, match=r"^history_sids:"):
        model.embed_users(replace(history, history_sids=sids))
    dwell = history.history_dwell.clone()
    dwell[1, 3] = float("nan")
    with pytest.raises(InputError, match=r"^history_dwell:"):
        model.embed_users(replace(history, history_dwell=dwell))


# Candidate tower -----------------------------------------------------------------------------
def test_post_embeddings_are_unit_norm(
    towers: ModelConfig, make_retrieval: MakeRetrieval, gen: torch.Generator
) -> None:
    model = make_retrieval(towers)
    out = posts(model, *random_posts(towers, 9, gen))
    assert out.shape == (9, towers.emb_dim)
    assert out.dtype == torch.float32
    assert_unit_norm(out)
    empty = posts(model, *random_posts(towers, 0, gen))
    assert empty.shape == (0, towers.emb_dim)


def sid_cross_attention_ref(model: RetrievalModel, post: Tensor, sids: Tensor) -> Tensor:
    """X's semantic-id embedding with cross-attention over the levels, in float64: the six levels
    plus the hash level (rows l * (codes+1) + c; a missing code is a zero vector that still takes
    part), self-attention with scale 1/sqrt(W), mean(attended) + mean(levels)."""
    k, codes = model.config.sid_levels, model.config.sid_codes
    table = model.sids.table.weight.to(F64)
    hash_level = model.sids.hash_level(post[:, 0], sids)
    all_codes = torch.cat([sids, hash_level[:, None]], -1)  # [N, K+1]
    levels = torch.stack(
        [
            torch.stack(
                [
                    table[lvl * (codes + 1) + c] if c else torch.zeros(table.shape[1], dtype=F64)
                    for lvl, c in enumerate(row.tolist())
                ]
            )
            for row in all_codes
        ]
    )  # [N, K+1, W]
    assert levels.shape[1] == k + 1
    q, kk, v = (levels @ model.sids.cross.weight.to(F64).T).chunk(3, -1)  # type: ignore[union-attr]
    weights = torch.softmax(q @ kk.transpose(-1, -2) / math.sqrt(levels.shape[-1]), -1)
    return (weights @ v).mean(-2) + levels.mean(-2)


def test_candidate_tower_formula(
    towers: ModelConfig, make_retrieval: MakeRetrieval, gen: torch.Generator
) -> None:
    model = make_retrieval(towers)
    post, author, sids = random_posts(towers, 5, gen)
    table = model.table.weight.to(F64)
    first, second = (m.weight.to(F64) for m in (model.candidate_mlp[0], model.candidate_mlp[2]))
    w, d = towers.hash_width, towers.emb_dim
    assert first.shape == (2 * d, 3 * w)
    assert second.shape == (d, 2 * d)
    with torch.no_grad():
        x = torch.cat(
            [table[author[:, 0]], table[author[:, 1]], sid_cross_attention_ref(model, post, sids)],
            1,
        )
    h = x @ first.T
    y = (h * torch.sigmoid(h)) @ second.T  # SiLU
    want = y / y.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(posts(model, post, author, sids).to(F64), want, rtol=0, atol=1e-5)


def test_post_rows_are_read_only_through_the_semantic_id_hash_level(
    towers: ModelConfig, make_retrieval: MakeRetrieval, gen: torch.Generator
) -> None:
    # X's candidate tower reads the author rows and the semantic ids; the post's own row only
    # picks the hash level. Without semantic ids the post row does not matter at all.
    model = make_retrieval(towers)
    post, author, sids = random_posts(towers, 6, gen)
    other = random_rows((6, 2), towers.rows("post"), gen)
    a, b = posts(model, post, author, sids), posts(model, other, author, sids)
    same_level = model.sids.hash_level(post[:, 0], sids) == model.sids.hash_level(other[:, 0], sids)
    assert not same_level.all()
    torch.testing.assert_close(a[same_level], b[same_level], rtol=0, atol=1e-6)
    assert (a[~same_level] - b[~same_level]).abs().max() > 1e-4
    no_ids = torch.zeros_like(sids)
    torch.testing.assert_close(
        posts(model, post, author, no_ids), posts(model, other, author, no_ids), rtol=0, atol=1e-6
    )


def test_xs_two_tower_table_layout(
    towers: ModelConfig, make_retrieval: MakeRetrieval, gen: torch.Generator
) -> None:
    # X's two-tower has no user, IP or post block: posts hash into item_hash_vocab_size buckets
    # that overlap the author block (docs/FIDELITY.md).
    x_like = towers.with_overrides(
        num_user_rows=0, num_post_rows=0, num_ip_rows=0, num_post_hash_rows=300
    )
    assert x_like.rows("post").start == x_like.rows("author").start == 66
    model = make_retrieval(x_like)
    post, author, sids = random_posts(x_like, 5, gen)
    assert_unit_norm(posts(model, post, author, sids))
    history = random_history(x_like, batch=2, valid_len=4, generator=gen)
    assert_unit_norm(users(model, history))


def test_post_embeddings_are_per_row(
    towers: ModelConfig, make_retrieval: MakeRetrieval, gen: torch.Generator
) -> None:
    model = make_retrieval(towers)
    post, author, sids = random_posts(towers, 8, gen)
    batch = posts(model, post, author, sids)
    for i in range(8):
        alone = posts(model, post[i : i + 1], author[i : i + 1], sids[i : i + 1])
        torch.testing.assert_close(alone, batch[i : i + 1], rtol=0, atol=1e-6)
    perm = torch.tensor([3, 7, 0, 1, 6, 2, 5, 4])
    torch.testing.assert_close(
        posts(model, post[perm], author[perm], sids[perm]), batch[perm], rtol=0, atol=1e-6
    )
    o_post, o_author, o_sids = random_posts(towers, 8, gen)
    mixed = posts(
        model,
        torch.cat([post[:2], o_post]),
        torch.cat([author[:2], o_author]),
        torch.cat([sids[:2], o_sids]),
    )
    torch.testing.assert_close(mixed[:2], batch[:2], rtol=0, atol=1e-6)


def test_similarity_is_a_cosine(
    towers: ModelConfig, make_retrieval: MakeRetrieval, gen: torch.Generator
) -> None:
    model = make_retrieval(towers)
    u = users(model, random_history(towers, batch=2, valid_len=5, generator=gen))
    p = posts(model, *random_posts(towers, 6, gen))
    scores = u @ p.T
    assert scores.shape == (2, 6)
    assert (scores.abs() <= 1 + 1e-5).all()


@pytest.mark.parametrize(
    ("field", "mutate"),
    [
        ("post_hash", lambda c, p, a, s: (p + c.num_post_rows, a, s)),  # into the author block
        ("post_hash", lambda c, p, a, s: (torch.full_like(p, c.post_offset), a, s)),  # offset row
        ("post_hash", lambda c, p, a, s: (p.float(), a, s)),
        ("post_hash", lambda c, p, a, s: (p[:, :1], a, s)),
        ("post_hash", lambda c, p, a, s: (p.numpy(), a, s)),
        ("author_hash", lambda c, p, a, s: (p, a - c.num_post_rows, s)),  # into the post block
        ("author_hash", lambda c, p, a, s: (p, torch.full_like(a, c.table_rows), s)),
        ("author_hash", lambda c, p, a, s: (p, a[:3], s)),
        ("author_hash", lambda c, p, a, s: (p, a.to(torch.int16), s)),
        ("sids", lambda c, p, a, s: (p, a, s.clamp_min(1) + c.sid_codes)),  # past the codebook
        ("sids", lambda c, p, a, s: (p, a, s - c.sid_codes - 1)),  # negative
        ("sids", lambda c, p, a, s: (p, a, s[:, :-1])),
        ("sids", lambda c, p, a, s: (p, a, s.float())),
        ("sids", lambda c, p, a, s: (p, a, s[:3])),
    ],
)
def test_candidate_tower_validates_its_inputs(
    field: str,
    mutate: Callable[..., tuple[object, object, object]],
    towers: ModelConfig,
    make_retrieval: MakeRetrieval,
    gen: torch.Generator,
) -> None:
    model = make_retrieval(towers)
    post, author, sids = mutate(towers, *random_posts(towers, 4, gen))
    with pytest.raises(InputError, match=rf"^{field}:"):
        model.embed_posts(post, author, sids)  # type: ignore[arg-type]


def test_towers_have_no_biases(towers: ModelConfig, make_retrieval: MakeRetrieval) -> None:
    model = make_retrieval(towers)
    assert not [name for name, _ in model.named_parameters() if name.endswith("bias")]
    assert (model.table.weight[0] == 0).all()
    assert model.table.weight.shape == (towers.table_rows, towers.hash_width)
