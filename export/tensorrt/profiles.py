"""Optimization profiles: the min/opt/max shape of every input of a dynamic-shape engine.

TensorRT needs, for each input, the smallest, typical and largest shape it will see. Our inputs
have a batch dimension (Triton's `max_batch_size`) and, for the ranker's candidate inputs, a
candidate dimension (-1 in the per-item shape); every other dimension is fixed by the config.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from export.repository.model_config import TensorLike


@dataclass(frozen=True)
class ShapeRange:
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


@dataclass(frozen=True)
class ProfileLimits:
    max_batch: int
    max_candidates: int
    opt_batch: int = 1
    opt_candidates: int = 512

    def __post_init__(self) -> None:
        if not 1 <= self.opt_batch <= self.max_batch:
            raise ValueError(f"opt_batch must be in [1, max_batch={self.max_batch}]")
        if not 1 <= self.opt_candidates <= self.max_candidates:
            raise ValueError(f"opt_candidates must be in [1, max_candidates={self.max_candidates}]")


def shape_ranges(inputs: Sequence[TensorLike], limits: ProfileLimits) -> dict[str, ShapeRange]:
    """Full shapes (batch first) per input; -1 item dims are the candidate dimension."""

    def full(batch: int, candidates: int, spec: TensorLike) -> tuple[int, ...]:
        return (batch, *(candidates if d == -1 else d for d in spec.shape))

    return {
        spec.name: ShapeRange(
            min=full(1, 1, spec),
            opt=full(limits.opt_batch, limits.opt_candidates, spec),
            max=full(limits.max_batch, limits.max_candidates, spec),
        )
        for spec in inputs
    }
