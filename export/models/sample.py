"""Random but valid model inputs: for tests, benchmarks, parity checks and export tracing."""

from __future__ import annotations

import torch
from torch import Tensor

from export.models.inputs import (
    NUM_USER_CATEGORICAL,
    CandidateInputs,
    HistoryInputs,
    RankerInputs,
    UserInputs,
    ViewerInputs,
)
from phoenix.config import ModelConfig

#: A plausible window of Unix seconds for impression and creation times.
_NOW_S = 1_780_000_000
_WEEK_S = 7 * 24 * 3600


def random_rows(
    shape: tuple[int, ...], rows: range, generator: torch.Generator | None = None
) -> Tensor:
    """Rows drawn uniformly from one entity's block (`ModelConfig.rows`); zeros if it is empty."""
    if not rows:
        return torch.zeros(shape, dtype=torch.long)
    return torch.randint(rows.start, rows.stop, shape, generator=generator)


def _ints(high: int, shape: tuple[int, ...], g: torch.Generator | None) -> Tensor:
    return torch.randint(0, high, shape, generator=g)


def random_user(
    config: ModelConfig, batch: int = 1, generator: torch.Generator | None = None
) -> UserInputs:
    g = generator
    floats = torch.rand(batch, 4, generator=g)
    floats[:, 0] = floats[:, 0] * 360 - 180  # longitude
    floats[:, 1] = floats[:, 1] * 180 - 90  # latitude
    floats[:, 3] = 13 + floats[:, 3] * 60  # age in years
    return UserInputs(
        user_hash=random_rows((batch, 2), config.rows("user"), g),
        user_ip_hash=random_rows((batch, 2), config.rows("ip"), g),
        user_categorical=_ints(10, (batch, NUM_USER_CATEGORICAL), g),
        user_float=floats,
        user_apps=(torch.rand(batch, config.num_apps, generator=g) < 0.2).float(),
    )


def _sequence(
    config: ModelConfig, prefix: str, shape: tuple[int, int], g: torch.Generator | None
) -> dict[str, Tensor]:
    b, n = shape
    impression = _NOW_S - _ints(_WEEK_S, shape, g)
    created = impression - _ints(3 * 24 * 3600, shape, g)
    sids = _ints(config.sid_codes, (b, n, config.sid_levels), g) + 1
    sids[torch.rand(b, n, generator=g) < 0.15] = 0  # some posts have no semantic ids
    context = torch.stack(
        [_ints(config.num_timezones, shape, g), _ints(24, shape, g) + 1, _ints(7, shape, g) + 1],
        -1,
    )
    return {
        f"{prefix}_post_hash": random_rows((b, n, 2), config.rows("post"), g),
        f"{prefix}_author_hash": random_rows((b, n, 2), config.rows("author"), g),
        f"{prefix}_surface": _ints(config.num_surfaces, shape, g),
        f"{prefix}_time": torch.stack([impression, created], -1),
        f"{prefix}_context": context,
        f"{prefix}_follow": _ints(2, (b, n, 2), g),
        f"{prefix}_counts": _ints(100_000, (b, n, config.num_counts), g),
        f"{prefix}_sids": sids,
    }


def random_history(
    config: ModelConfig,
    batch: int = 1,
    history_len: int | None = None,
    valid_len: int | None = None,
    generator: torch.Generator | None = None,
) -> HistoryInputs:
    """A batch of left-aligned histories; slots from `valid_len` on are padding (all zeros)."""
    s = config.history_len if history_len is None else history_len
    valid = s if valid_len is None else valid_len
    fields = _sequence(config, "history", (batch, s), generator)
    actions = torch.rand(batch, s, config.num_action_columns, generator=generator) < 0.1
    actions[..., 0] = False  # X's column 0 (INVALID_NAME) is never set
    fields["history_actions"] = actions.float()
    fields["history_dwell"] = torch.rand(batch, s, generator=generator) * 40
    for name, value in fields.items():
        value[:, valid:] = 0
        fields[name] = value
    return HistoryInputs(**fields)


def random_candidates(
    config: ModelConfig,
    batch: int = 1,
    num_candidates: int = 8,
    generator: torch.Generator | None = None,
) -> CandidateInputs:
    fields = _sequence(config, "candidate", (batch, num_candidates), generator)
    fields["candidate_stale"] = _ints(2, (batch, num_candidates), generator)
    return CandidateInputs(**fields)


def random_viewer(
    config: ModelConfig,
    batch: int = 1,
    history_len: int | None = None,
    valid_len: int | None = None,
    generator: torch.Generator | None = None,
) -> ViewerInputs:
    return ViewerInputs(
        random_user(config, batch, generator),
        random_history(config, batch, history_len, valid_len, generator),
    )


def random_ranker_inputs(
    config: ModelConfig,
    batch: int = 1,
    num_candidates: int = 8,
    history_len: int | None = None,
    valid_len: int | None = None,
    generator: torch.Generator | None = None,
) -> RankerInputs:
    viewer = random_viewer(config, batch, history_len, valid_len, generator)
    return RankerInputs(
        viewer.user, viewer.history, random_candidates(config, batch, num_candidates, generator)
    )
