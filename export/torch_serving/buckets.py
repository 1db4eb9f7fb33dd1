"""Static shapes for a dynamic-shape model: requests padded up to a few (batch, candidates) buckets.

A CUDA graph replays fixed shapes only, so the served model keeps one graph per bucket and pads
each call up to the smallest bucket that holds it. Padding is harmless by construction: a padded
batch row is a separate viewer whose outputs are dropped, and a padded candidate (row 0, the
padding row, everywhere) attends to the history and itself only, so the real candidates' scores
do not change (candidate isolation, docs/DESIGN.md §4.4).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from export.onnx.wrappers import DYNAMIC, TensorSpec
from phoenix.serving import gpu_candidate_buckets

#: The bucket key of a model without a candidate axis (the towers) has 0 candidates.
NO_CANDIDATES = 0


def powers_of_two_up_to(limit: int) -> tuple[int, ...]:
    """1, 2, 4, ... below `limit`, then `limit` itself."""
    sizes = []
    size = 1
    while size < limit:
        sizes.append(size)
        size *= 2
    return (*sizes, limit)


@dataclass(frozen=True)
class ShapeBuckets:
    """The (batch, candidates) shapes a model is run at; both tuples sorted ascending."""

    batch_sizes: tuple[int, ...]
    candidate_counts: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        named = (("batch_sizes", self.batch_sizes), ("candidate_counts", self.candidate_counts))
        for field, sizes in named:
            if list(sizes) != sorted(set(sizes)) or any(size < 1 for size in sizes):
                raise ValueError(f"{field}: expected distinct positive sizes, got {list(sizes)}")
        if not self.batch_sizes:
            raise ValueError("batch_sizes: at least one size is needed")

    @classmethod
    def default(cls, max_batch: int, max_candidates: int | None) -> ShapeBuckets:
        """Powers of two up to `max_batch`; the orchestrator's candidate buckets up to the limit."""
        counts: tuple[int, ...] = ()
        if max_candidates is not None:
            counts = gpu_candidate_buckets(max_candidates)
        return cls(powers_of_two_up_to(max_batch), counts)

    def pick(self, batch: int, candidates: int = NO_CANDIDATES) -> tuple[int, int] | None:
        """The smallest bucket holding `batch` rows of `candidates`, or None when none does."""
        b = _smallest_at_least(self.batch_sizes, batch)
        if b is None:
            return None
        if not self.candidate_counts:
            return (b, NO_CANDIDATES)
        c = _smallest_at_least(self.candidate_counts, candidates)
        return None if c is None else (b, c)

    def shapes(self) -> list[tuple[int, int]]:
        """Every bucket, largest first (capturing the largest first sizes a shared memory pool)."""
        counts = self.candidate_counts or (NO_CANDIDATES,)
        return sorted(((b, c) for b in self.batch_sizes for c in counts), reverse=True)


def _smallest_at_least(sizes: Sequence[int], value: int) -> int | None:
    i = bisect_left(sizes, value)
    return sizes[i] if i < len(sizes) else None


def shape_of(specs: Sequence[TensorSpec], args: Sequence[Tensor]) -> tuple[int, int]:
    """(batch, candidates) of a call; candidates is the first dynamic item dimension's size."""
    batch = args[0].shape[0]
    for spec, arg in zip(specs, args, strict=True):
        if DYNAMIC in spec.shape:
            return batch, arg.shape[1 + spec.shape.index(DYNAMIC)]
    return batch, NO_CANDIDATES


def full_shape(spec: TensorSpec, batch: int, candidates: int) -> tuple[int, ...]:
    return (batch, *(candidates if d == DYNAMIC else d for d in spec.shape))


def copy_padded(dst: Tensor, src: Tensor) -> None:
    """Write `src` into the leading corner of `dst` and zero the rest (row 0 is padding)."""
    dst.zero_()
    dst[tuple(slice(0, n) for n in src.shape)].copy_(src, non_blocking=True)


def unpad(out: Tensor, spec: TensorSpec, batch: int, candidates: int) -> Tensor:
    """The real rows (and candidates) of a padded output."""
    index: list[slice] = [slice(0, batch)]
    index += [slice(0, candidates) if d == DYNAMIC else slice(None) for d in spec.shape]
    return out[tuple(index)]


def empty_inputs(
    specs: Sequence[TensorSpec], batch: int, candidates: int, device: torch.device
) -> list[Tensor]:
    """Zero (= padding) inputs of one bucket's shape."""
    return [
        torch.zeros(
            full_shape(spec, batch, candidates), dtype=_TORCH_DTYPES[spec.dtype], device=device
        )
        for spec in specs
    ]


_TORCH_DTYPES = {"int64": torch.int64, "int32": torch.int32, "float32": torch.float32}
