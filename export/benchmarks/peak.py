"""A matrix-multiply peak measured in the same run, so achieved TFLOP/s has a yardstick.

A datasheet peak says what the chip could do with perfect kernels; a large square matmul on the same
device, dtype and torch build says what this machine actually delivers right now (clocks, power
cap, library versions). Reporting a model's TFLOP/s as a percentage of it shows how much of the
attainable compute the model uses.
"""

from __future__ import annotations

import statistics
import time

import torch

from phoenix.errors import ConfigError

#: Square matmul side by device type: big enough to saturate an H100, quick on a CPU.
DEFAULT_SIZE = {"cuda": 8192, "cpu": 1024}


def matmul_peak_tflops(
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    *,
    size: int | None = None,
    warmup: int = 2,
    repeats: int = 5,
) -> float:
    """TFLOP/s of an `size` x `size` matmul (2 * size^3 FLOPs) at the median of `repeats` calls.

    Timed like the ranker forms: on CUDA queued work is finished before each clock read.
    """
    dev = torch.device(device)
    n = DEFAULT_SIZE.get(dev.type, 1024) if size is None else size
    if n < 1:
        raise ConfigError(f"size: need at least 1, got {n}")
    if repeats < 1:
        raise ConfigError(f"repeats: need at least 1, got {repeats}")
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=generator).to(device=dev, dtype=dtype)
    b = torch.randn(n, n, generator=generator).to(device=dev, dtype=dtype)
    with torch.inference_mode():
        for _ in range(warmup):
            torch.matmul(a, b)
        seconds = []
        for _ in range(repeats):
            _synchronize(dev)
            start = time.perf_counter()
            torch.matmul(a, b)
            _synchronize(dev)
            seconds.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(seconds) / 1e12


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
