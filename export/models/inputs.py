"""Typed model inputs and their validation.

Shapes (B = viewers in the batch, S = history length <= config.history_len, C = candidates,
A = actions). Hash tensors hold rows of the shared embedding table (`phoenix.hashing`), row 0
meaning "nothing here": a history slot or candidate whose first post row is 0 is padding.

    user_hash              [B, 2]     int64
    history_post_hash      [B, S, 2]  int64
    history_author_hash    [B, S, 2]  int64
    history_actions        [B, S, A]  float 0/1 multi-hot
    history_surface        [B, S]     int64 in [0, num_surfaces)
    candidate_post_hash    [B, C, 2]  int64
    candidate_author_hash  [B, C, 2]  int64
    candidate_surface      [B, C]     int64

Validation runs eagerly and raises `InputError` naming the field; it is skipped while tracing for
export or capturing a CUDA graph, where the shapes are fixed by the wrapper.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

from phoenix.config import ModelConfig
from phoenix.errors import InputError

INT_DTYPES = (torch.int64, torch.int32)


@dataclass(frozen=True)
class HistoryInputs:
    """The viewer: user rows and engagement history."""

    user_hash: Tensor
    history_post_hash: Tensor
    history_author_hash: Tensor
    history_actions: Tensor
    history_surface: Tensor

    def validate(self, config: ModelConfig) -> None:
        if is_building_graph():
            return
        check_tensor(self.user_hash, "user_hash", (None, 2), INT_DTYPES)
        b = self.user_hash.shape[0]
        check_tensor(self.history_post_hash, "history_post_hash", (b, None, 2), INT_DTYPES)
        s = self.history_post_hash.shape[1]
        if s > config.history_len:
            raise InputError(
                f"history_post_hash: history length {s} exceeds the config's {config.history_len}"
            )
        check_tensor(self.history_author_hash, "history_author_hash", (b, s, 2), INT_DTYPES)
        check_tensor(self.history_actions, "history_actions", (b, s, config.num_actions), None)
        check_tensor(self.history_surface, "history_surface", (b, s), INT_DTYPES)
        check_rows(self.user_hash, "user_hash", config.user_offset, config.num_user_rows)
        check_rows(
            self.history_post_hash, "history_post_hash", config.post_offset, config.num_post_rows
        )
        check_rows(
            self.history_author_hash,
            "history_author_hash",
            config.author_offset,
            config.num_author_rows,
        )
        check_range(self.history_surface, "history_surface", config.num_surfaces)
        if not torch.is_floating_point(self.history_actions):
            raise InputError(
                f"history_actions: expected a float tensor, got {self.history_actions.dtype}"
            )
        if ((self.history_actions != 0) & (self.history_actions != 1)).any():
            raise InputError("history_actions: values must be 0 or 1 (a multi-hot row per slot)")


@dataclass(frozen=True)
class CandidateInputs:
    """The posts to score for each viewer."""

    candidate_post_hash: Tensor
    candidate_author_hash: Tensor
    candidate_surface: Tensor

    def validate(self, config: ModelConfig, batch: int | None = None) -> None:
        if is_building_graph():
            return
        check_tensor(self.candidate_post_hash, "candidate_post_hash", (batch, None, 2), INT_DTYPES)
        b, c = self.candidate_post_hash.shape[:2]
        if c > config.max_candidates:
            raise InputError(
                f"candidate_post_hash: {c} candidates exceed max_candidates={config.max_candidates}"
            )
        check_tensor(self.candidate_author_hash, "candidate_author_hash", (b, c, 2), INT_DTYPES)
        check_tensor(self.candidate_surface, "candidate_surface", (b, c), INT_DTYPES)
        check_rows(
            self.candidate_post_hash,
            "candidate_post_hash",
            config.post_offset,
            config.num_post_rows,
        )
        check_rows(
            self.candidate_author_hash,
            "candidate_author_hash",
            config.author_offset,
            config.num_author_rows,
        )
        check_range(self.candidate_surface, "candidate_surface", config.num_surfaces)


@dataclass(frozen=True)
class RankerInputs:
    """A viewer's history plus the candidates to score, batched over viewers."""

    history: HistoryInputs
    candidates: CandidateInputs

    def validate(self, config: ModelConfig) -> None:
        self.history.validate(config)
        self.candidates.validate(config, batch=self.history.user_hash.shape[0])

    def to(self, device: torch.device | str) -> RankerInputs:
        return RankerInputs(_move(self.history, device), _move(self.candidates, device))


def _move(obj, device):  # type: ignore[no-untyped-def]
    return type(obj)(**{f.name: getattr(obj, f.name).to(device) for f in fields(obj)})


def is_building_graph() -> bool:
    """True while the forward is traced, exported, compiled or captured into a CUDA graph.

    The checks read tensor values (a device-to-host sync), which a traced graph cannot hold and a
    CUDA-graph capture forbids; the served shapes and values are checked before they get there.
    """
    return (
        torch.jit.is_tracing()
        or torch.onnx.is_in_onnx_export()
        or torch.compiler.is_compiling()
        or (torch.cuda.is_available() and torch.cuda.is_current_stream_capturing())
    )


def check_tensor(
    t: object,
    name: str,
    shape: tuple[int | None, ...],
    dtypes: tuple[torch.dtype, ...] | None,
) -> None:
    if not isinstance(t, Tensor):
        raise InputError(f"{name}: expected a tensor, got {type(t).__name__}")
    if t.dim() != len(shape) or any(
        want is not None and got != want for got, want in zip(t.shape, shape, strict=True)
    ):
        want_str = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
        raise InputError(f"{name}: expected shape {want_str}, got {list(t.shape)}")
    if dtypes is not None and t.dtype not in dtypes:
        raise InputError(f"{name}: expected an integer tensor (int64), got {t.dtype}")


def check_rows(t: Tensor, name: str, offset: int, num_rows: int) -> None:
    """Non-zero rows must fall inside the entity's block [offset + 1, offset + num_rows - 1]."""
    if t.numel() == 0:
        return
    nonzero = t[t != 0]
    if nonzero.numel() and (nonzero.min() <= offset or nonzero.max() >= offset + num_rows):
        raise InputError(
            f"{name}: rows must be 0 (padding) or in [{offset + 1}, {offset + num_rows - 1}], "
            f"got values in [{int(nonzero.min())}, {int(nonzero.max())}]"
        )


def check_range(t: Tensor, name: str, upper: int) -> None:
    if t.numel() and (t.min() < 0 or t.max() >= upper):
        raise InputError(
            f"{name}: values must be in [0, {upper}), got [{int(t.min())}, {int(t.max())}]"
        )
