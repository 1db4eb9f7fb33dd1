"""`RetrievalModel`: the user tower and the candidate tower (DESIGN.md 4.6)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from export.models import HistoryInputs, RetrievalModel
from export.models.sample import random_history, random_rows
from phoenix.config import ModelConfig
from phoenix.errors import InputError

MakeRetrieval = Callable[..., RetrievalModel]
PadHistory = Callable[..., HistoryInputs]
F64 = torch.float64


def users(model: RetrievalModel, history: HistoryInputs) -> Tensor:
    with torch.no_grad():
        return model.embed_users(history)


def posts(model: RetrievalModel, post_hash: Tensor, author_hash: Tensor) -> Tensor:
    with torch.no_grad():
        return model.embed_posts(post_hash, author_hash)


def random_post_rows(config: ModelConfig, n: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    return (
        random_rows((n, 2), config.post_offset, config.num_post_rows, gen),
        random_rows((n, 2), config.author_offset, config.num_author_rows, gen),
    )


def assert_unit_norm(x: Tensor) -> None:
    assert torch.isfinite(x).all()
    norms = x.to(F64).norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones_like(norms), rtol=0, atol=1e-5)


def truncate(history: HistoryInputs, n: int) -> HistoryInputs:
    rest = dataclasses.fields(history)[1:]
    return HistoryInputs(history.user_hash, *(getattr(history, f.name)[:, :n] for f in rest))


# User tower ----------------------------------------------------------------------------------
def test_user_embeddings_are_unit_norm(
    config: ModelConfig,
    make_retrieval: MakeRetrieval,
    pad_history: PadHistory,
    gen: torch.Generator,
) -> None:
    model = make_retrieval(config)
    history = pad_history(random_history(config, batch=3, generator=gen), [12, 4, 0])
    out = users(model, history)
    assert out.shape == (3, config.emb_dim)
    assert out.dtype == torch.float32
    assert_unit_norm(out)


def test_user_tower_is_the_mean_of_the_trunk_over_valid_positions(
    config: ModelConfig,
    make_retrieval: MakeRetrieval,
    pad_history: PadHistory,
    gen: torch.Generator,
) -> None:
    model = make_retrieval(config)
    history = pad_history(random_history(config, batch=2, generator=gen), [12, 5], generator=gen)
    got = users(model, history)
    with torch.no_grad():
        tokens, valid = model.embed.context(history)
        length = tokens.shape[1]
        mask = valid[:, None, :].expand(2, length, length)  # every query sees the valid keys
        out = model.user_trunk.forward_full_mask(tokens, mask, torch.arange(length))
    assert valid.tolist() == [[True] * 13, [True] * 6 + [False] * 7]
    for b in range(2):
        rows = [out[b, i].to(F64) for i in range(length) if valid[b, i]]
        mean = torch.stack(rows).mean(0)
        torch.testing.assert_close(got[b].to(F64), mean / mean.norm(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("valid", [0, 3, 11])
def test_history_padding_does_not_change_the_user_embedding(
    valid: int,
    config: ModelConfig,
    make_retrieval: MakeRetrieval,
    pad_history: PadHistory,
    gen: torch.Generator,
) -> None:
    model = make_retrieval(config)
    full = random_history(config, batch=2, generator=gen)
    want = users(model, truncate(full, valid))
    for garbage in (None, gen):
        padded = pad_history(full, [valid, valid], generator=garbage)
        assert padded.history_post_hash.shape[1] == config.history_len
        torch.testing.assert_close(users(model, padded), want, rtol=0, atol=1e-5)


def test_user_embedding_reads_the_history(
    config: ModelConfig, make_retrieval: MakeRetrieval, gen: torch.Generator
) -> None:
    # Guard for the padding test: valid slots do matter.
    model = make_retrieval(config)
    history = random_history(config, batch=1, valid_len=6, generator=gen)
    base = users(model, history)
    changed = dataclasses.replace(history, history_post_hash=history.history_post_hash.flip(-1))
    assert (users(model, changed) - base).abs().max() > 1e-4
    fewer = dataclasses.replace(
        history,
        history_post_hash=torch.cat(
            [history.history_post_hash[:, :5], torch.zeros_like(history.history_post_hash[:, 5:])],
            1,
        ),
    )
    assert (users(model, fewer) - base).abs().max() > 1e-4


def test_viewers_are_embedded_independently(
    config: ModelConfig,
    make_retrieval: MakeRetrieval,
    pad_history: PadHistory,
    gen: torch.Generator,
) -> None:
    model = make_retrieval(config)
    history = pad_history(random_history(config, batch=3, generator=gen), [12, 2, 7])
    both = users(model, history)
    for b in range(3):
        one = HistoryInputs(
            *(getattr(history, f.name)[b : b + 1] for f in dataclasses.fields(history))
        )
        torch.testing.assert_close(users(model, one), both[b : b + 1], rtol=0, atol=1e-5)


def test_user_tower_validates_its_inputs(
    config: ModelConfig, make_retrieval: MakeRetrieval, gen: torch.Generator
) -> None:
    model = make_retrieval(config)
    too_long = random_history(config, history_len=config.history_len + 1, generator=gen)
    with pytest.raises(InputError, match=r"^history_post_hash:"):
        model.embed_users(too_long)


# Candidate tower -----------------------------------------------------------------------------
def test_post_embeddings_are_unit_norm(
    config: ModelConfig, make_retrieval: MakeRetrieval, gen: torch.Generator
) -> None:
    model = make_retrieval(config)
    out = posts(model, *random_post_rows(config, 9, gen))
    assert out.shape == (9, config.emb_dim)
    assert out.dtype == torch.float32
    assert_unit_norm(out)
    empty = posts(model, *random_post_rows(config, 0, gen))
    assert empty.shape == (0, config.emb_dim)


def test_candidate_tower_formula(
    config: ModelConfig, make_retrieval: MakeRetrieval, gen: torch.Generator
) -> None:
    model = make_retrieval(config)
    post, author = random_post_rows(config, 5, gen)
    table = model.embed.table.weight.to(F64)
    first, second = (m.weight.to(F64) for m in (model.candidate_mlp[0], model.candidate_mlp[2]))
    assert first.shape == (2 * config.emb_dim, 4 * config.hash_width)
    assert second.shape == (config.emb_dim, 2 * config.emb_dim)
    x = torch.cat(
        [table[post[:, 0]], table[post[:, 1]], table[author[:, 0]], table[author[:, 1]]], 1
    )
    h = x @ first.T
    y = (h * torch.sigmoid(h)) @ second.T  # SiLU
    want = y / y.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(posts(model, post, author).to(F64), want, rtol=0, atol=1e-5)


def test_post_embeddings_are_per_row(
    config: ModelConfig, make_retrieval: MakeRetrieval, gen: torch.Generator
) -> None:
    model = make_retrieval(config)
    post, author = random_post_rows(config, 8, gen)
    batch = posts(model, post, author)
    for i in range(8):
        alone = posts(model, post[i : i + 1], author[i : i + 1])
        torch.testing.assert_close(alone, batch[i : i + 1], rtol=0, atol=1e-6)
    perm = torch.tensor([3, 7, 0, 1, 6, 2, 5, 4])
    torch.testing.assert_close(
        posts(model, post[perm], author[perm]), batch[perm], rtol=0, atol=1e-6
    )
    other_post, other_author = random_post_rows(config, 8, gen)
    mixed = posts(model, torch.cat([post[:2], other_post]), torch.cat([author[:2], other_author]))
    torch.testing.assert_close(mixed[:2], batch[:2], rtol=0, atol=1e-6)


def test_similarity_is_a_cosine(
    config: ModelConfig, make_retrieval: MakeRetrieval, gen: torch.Generator
) -> None:
    model = make_retrieval(config)
    u = users(model, random_history(config, batch=2, valid_len=5, generator=gen))
    p = posts(model, *random_post_rows(config, 6, gen))
    scores = u @ p.T
    assert scores.shape == (2, 6)
    assert (scores.abs() <= 1 + 1e-5).all()


@pytest.mark.parametrize(
    ("field", "mutate"),
    [
        ("post_hash", lambda c, p, a: (p + c.num_post_rows, a)),  # post rows in the author block
        ("post_hash", lambda c, p, a: (torch.full_like(p, c.post_offset), a)),  # one below block
        ("post_hash", lambda c, p, a: (p.float(), a)),
        ("post_hash", lambda c, p, a: (p[:, :1], a)),
        ("post_hash", lambda c, p, a: (p.numpy(), a)),
        ("author_hash", lambda c, p, a: (p, a - c.num_post_rows)),  # author rows in the post block
        ("author_hash", lambda c, p, a: (p, torch.full_like(a, c.table_rows))),
        ("author_hash", lambda c, p, a: (p, a[:3])),
        ("author_hash", lambda c, p, a: (p, a.to(torch.int16))),
    ],
)
def test_candidate_tower_validates_its_inputs(
    field: str,
    mutate: Callable[..., tuple[object, object]],
    config: ModelConfig,
    make_retrieval: MakeRetrieval,
    gen: torch.Generator,
) -> None:
    model = make_retrieval(config)
    post, author = mutate(config, *random_post_rows(config, 4, gen))
    with pytest.raises(InputError, match=rf"^{field}:"):
        model.embed_posts(post, author)  # type: ignore[arg-type]


def test_towers_have_no_biases(config: ModelConfig, make_retrieval: MakeRetrieval) -> None:
    model = make_retrieval(config)
    assert not [name for name, _ in model.named_parameters() if name.endswith("bias")]
    assert (model.embed.table.weight[0] == 0).all()
