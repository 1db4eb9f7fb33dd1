"""Random but valid model inputs: for tests, benchmarks and export tracing."""

from __future__ import annotations

import torch
from torch import Tensor

from export.models.inputs import CandidateInputs, HistoryInputs, RankerInputs
from phoenix.config import ModelConfig


def random_rows(
    shape: tuple[int, ...], offset: int, num_rows: int, generator: torch.Generator | None = None
) -> Tensor:
    """Rows drawn uniformly from one entity's block [offset + 1, offset + num_rows - 1]."""
    return torch.randint(offset + 1, offset + num_rows, shape, generator=generator)


def random_history(
    config: ModelConfig,
    batch: int = 1,
    history_len: int | None = None,
    valid_len: int | None = None,
    generator: torch.Generator | None = None,
) -> HistoryInputs:
    """A batch of histories; slots from `valid_len` on are padding (all-zero rows and actions)."""
    s = config.history_len if history_len is None else history_len
    valid = s if valid_len is None else valid_len
    post = random_rows((batch, s, 2), config.post_offset, config.num_post_rows, generator)
    author = random_rows((batch, s, 2), config.author_offset, config.num_author_rows, generator)
    actions = (torch.rand(batch, s, config.num_actions, generator=generator) < 0.15).float()
    post[:, valid:] = 0
    author[:, valid:] = 0
    actions[:, valid:] = 0
    return HistoryInputs(
        user_hash=random_rows((batch, 2), config.user_offset, config.num_user_rows, generator),
        history_post_hash=post,
        history_author_hash=author,
        history_actions=actions,
        history_surface=torch.randint(0, config.num_surfaces, (batch, s), generator=generator),
    )


def random_candidates(
    config: ModelConfig,
    batch: int = 1,
    num_candidates: int = 8,
    generator: torch.Generator | None = None,
) -> CandidateInputs:
    shape = (batch, num_candidates, 2)
    return CandidateInputs(
        candidate_post_hash=random_rows(shape, config.post_offset, config.num_post_rows, generator),
        candidate_author_hash=random_rows(
            shape, config.author_offset, config.num_author_rows, generator
        ),
        candidate_surface=torch.randint(
            0, config.num_surfaces, (batch, num_candidates), generator=generator
        ),
    )


def random_ranker_inputs(
    config: ModelConfig,
    batch: int = 1,
    num_candidates: int = 8,
    history_len: int | None = None,
    valid_len: int | None = None,
    generator: torch.Generator | None = None,
) -> RankerInputs:
    return RankerInputs(
        random_history(config, batch, history_len, valid_len, generator),
        random_candidates(config, batch, num_candidates, generator),
    )
