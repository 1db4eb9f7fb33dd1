"""Shared fixtures for the model tests: a small config, seeded generators, model factories."""

from __future__ import annotations

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
    """`make_retrieval(config, seed=0)`: the two towers with seeded random weights, in eval mode.

    Pass a towers' config (`ModelConfig.retrieval_config()`) for X's two-tower choices."""

    def make(config: ModelConfig, seed: int = 0) -> RetrievalModel:
        torch.manual_seed(seed)
        return RetrievalModel(config).eval()

    return make


def pad_history(
    history: HistoryInputs,
    valid_lens: Sequence[int],
    generator: torch.Generator | None = None,
) -> HistoryInputs:
    """Viewer b keeps its first `valid_lens[b]` slots; later slots become padding (post row 0).

    Histories are left-aligned, oldest first, so padding sits at the end. With a `generator`, the
    padded slots keep garbage that must be ignored: every field but the first post row keeps its
    (valid, random) value and the actions are redrawn. Without one, padded slots are all zero.
    """
    fields = {name: t.clone() for name, t in history.tensors().items()}
    for b, n in enumerate(valid_lens):
        if generator is None:
            for t in fields.values():
                t[b, n:] = 0
            continue
        fields["history_post_hash"][b, n:, 0] = 0
        actions = fields["history_actions"][b, n:]
        actions.copy_((torch.rand(actions.shape, generator=generator) < 0.5).float())
    return HistoryInputs(**fields)


@pytest.fixture(name="pad_history")
def pad_history_fixture() -> Callable[..., HistoryInputs]:
    return pad_history
