"""Exact top-k on a GPU with PyTorch: the fallback where cuVS is absent.

A device mirror of the corpus (rows swapped in place on removal, like `DenseStore`) searched with
one matrix product and `torch.topk` per block of rows. Exact, so it never needs a rebuild once
built. PyTorch is imported only when this backend is used: the orchestrator does not need it, and
`torch_unavailable_reason` looks for an NVIDIA device before importing anything.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.retrieval.base import Accelerator, StoreBackedIndex
from orchestrator.retrieval.dense import _SCORE_BLOCK, DenseStore, Result, empty_result, pad_result
from orchestrator.retrieval.validation import Ids, Vectors
from phoenix.errors import ConfigError


@functools.lru_cache(maxsize=4)
def torch_unavailable_reason(device: str = "cuda") -> str | None:
    """None when PyTorch can search on `device`, else what is missing."""
    if importlib.util.find_spec("torch") is None:
        return "PyTorch is not installed"
    if device.startswith("cuda"):
        if not Path("/proc/driver/nvidia/gpus").is_dir() and not Path("/dev/nvidia0").exists():
            return "no NVIDIA GPU on this machine"
        import torch

        if not torch.cuda.is_available():
            return f"torch {torch.__version__} sees no CUDA device"
    return None


class _TorchXp:
    """The few NumPy-style calls `DenseStore` makes, done with torch tensors on one device."""

    def __init__(self, device: str) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)

    def asarray(self, a: Any) -> Any:
        return self.torch.as_tensor(np.asarray(a), device=self.device)

    def empty(self, shape: tuple[int, ...], dtype: object = None) -> Any:
        return self.torch.empty(shape, dtype=self.torch.float32, device=self.device)


class _TorchMirror(DenseStore):
    """The corpus on the device; `search` is exact (matrix product + `torch.topk`)."""

    def __init__(self, dim: int, device: str, ids: Ids, vectors: Vectors) -> None:
        self._t = _TorchXp(device)
        super().__init__(dim, xp=self._t)
        self.device = device
        self.add(ids, vectors)

    def remove(self, ids: Ids) -> None:  # type: ignore[override]
        super().remove(ids)

    def search(self, queries: Vectors, k: int) -> Result:
        n_queries, n = len(queries), len(self)
        if not n or not n_queries:
            return empty_result(n_queries, k)
        torch = self._t.torch
        q = self._t.asarray(np.ascontiguousarray(queries, dtype=np.float32))
        kk = min(k, n)
        block = max(kk, _SCORE_BLOCK // n_queries)
        best_vals = best_rows = None
        for start in range(0, n, block):
            scores = q @ self._matrix[start : min(n, start + block)].T
            vals, rows = torch.topk(scores, min(kk, scores.shape[1]), dim=1)
            rows = rows + start
            if best_vals is not None:
                vals = torch.cat([best_vals, vals], dim=1)
                rows = torch.cat([best_rows, rows], dim=1)
                vals, cols = torch.topk(vals, kk, dim=1)
                rows = torch.gather(rows, 1, cols)
            best_vals, best_rows = vals, rows
        ids = self._row_ids[best_rows.cpu().numpy()]
        return pad_result(ids, best_vals.float().cpu().numpy(), k)

    def describe(self) -> str:
        return f"torch exact on {self.device}"


class TorchIndex(StoreBackedIndex):
    """Exact search with PyTorch on `device` (cuda by default; "cpu" works too, for tests)."""

    name = "torch"

    def __init__(self, dim: int, *, device: str = "cuda") -> None:
        reason = torch_unavailable_reason(device)
        if reason is not None:
            raise ConfigError(f"torch backend: {reason}")
        super().__init__(dim)
        self.device = device

    def _build(self, ids: Ids, vectors: Vectors) -> Accelerator | None:
        return _TorchMirror(self.dim, self.device, ids, vectors) if len(ids) else None

    def _rebuild_due(self, accel: Accelerator | None, live: int, built: int, churn: int) -> bool:
        return accel is None and live > 0  # exact: once built it only follows the writes
