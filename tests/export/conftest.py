"""Shared fixtures for the model tests: a small config, seeded generators, model factories."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import pytest
import torch

from export.models import HistoryInputs, PhoenixRanker, RetrievalModel
from phoenix.config import ModelConfig, get_config

#: tiny's geometry (D=128, 2 layers, 4/2 heads, d_k=32, W=64) with a short history and small
#: vocabularies: every forward takes milliseconds on a CPU.
SMALL = get_config("tiny").with_overrides(
    history_len=12, num_user_rows=50, num_post_rows=400, num_author_rows=60
)


@pytest.fixture
def config() -> ModelConfig:
    return SMALL


@pytest.fixture
def gen() -> torch.Generator:
    """A seeded generator for inputs, independent of the global seed used for weights."""
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def make_ranker() -> Callable[..., PhoenixRanker]:
    """`make_ranker(config, seed=0)`: a ranker with seeded random weights, in eval mode."""

    def make(config: ModelConfig, seed: int = 0) -> PhoenixRanker:
        torch.manual_seed(seed)
        return PhoenixRanker(config).eval()

    return make


@pytest.fixture
def make_retrieval() -> Callable[..., RetrievalModel]:
    def make(config: ModelConfig, seed: int = 0) -> RetrievalModel:
        torch.manual_seed(seed)
        return RetrievalModel(config).eval()

    return make


def pad_history(
    history: HistoryInputs,
    valid_lens: Sequence[int],
    generator: torch.Generator | None = None,
) -> HistoryInputs:
    """Viewer b keeps its first `valid_lens[b]` slots; later slots get post row 0 (padding).

    With a `generator`, the padded slots keep garbage that must be ignored: a valid second post
    row, valid author rows, random actions and surfaces. Without one they are all zero.
    """
    post = history.history_post_hash.clone()
    author = history.history_author_hash.clone()
    actions = history.history_actions.clone()
    surface = history.history_surface.clone()
    for b, n in enumerate(valid_lens):
        post[b, n:, 0] = 0
        if generator is None:
            post[b, n:, 1] = 0
            author[b, n:] = 0
            actions[b, n:] = 0
            surface[b, n:] = 0
        else:
            shape = actions[b, n:].shape
            actions[b, n:] = (torch.rand(shape, generator=generator) < 0.5).float()
    return dataclasses.replace(
        history,
        history_post_hash=post,
        history_author_hash=author,
        history_actions=actions,
        history_surface=surface,
    )


@pytest.fixture(name="pad_history")
def pad_history_fixture() -> Callable[..., HistoryInputs]:
    return pad_history
