"""What the benchmark measured: one row per case, the report around them, and the statistics
that turn a case's latencies and Triton's counters into a row."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from loadtest.triton_bench.settings import IN_PROCESS, BenchSettings


@dataclass(frozen=True)
class CaseResult:
    """One (path, concurrency, batching) case. `batching` is None for in-process."""

    path: str
    concurrency: int
    batching: bool | None
    candidates: int
    requests: int
    wall_s: float
    p50_ms: float
    p99_ms: float
    avg_batch: float | None  # Triton's inferences per model execution; None in-process
    vs_in_process: float | None = None  # req/s over in-process's at the same concurrency
    batching_gain: float | None = None  # on rows: req/s with batching over without

    @property
    def req_per_s(self) -> float:
        return self.requests / self.wall_s

    @property
    def cand_per_s(self) -> float:
        return self.req_per_s * self.candidates

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "req_per_s": self.req_per_s, "cand_per_s": self.cand_per_s}


@dataclass(frozen=True)
class TritonBenchReport:
    config_name: str
    history_len: int
    settings: BenchSettings
    max_batch_size: int
    max_queue_delay_us: int
    triton_version: str
    target: str  # the export target served: "cpu" (ONNX Runtime) or "pytorch"
    precision: str  # what the served model and the in-process runtime compute in
    runtime: str  # both run it: "ONNX Runtime 1.22.0", "PyTorch 2.8.0 bf16 on cuda, CUDA graphs"
    device: str  # where the runtime computes: "cpu", "cuda", ...
    agreement_max_abs_diff: float
    agreement_tolerance: float
    rows: list[CaseResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["settings"] = self.settings.model_dump()
        data["rows"] = [row.to_dict() for row in self.rows]
        return data


def percentile_ms(seconds: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100, linear interpolation, as numpy's default) in milliseconds."""
    if not seconds:
        raise ValueError("percentile of no samples")
    return float(np.percentile(np.asarray(seconds, dtype=np.float64), q)) * 1e3


def average_batch(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    """Inferences per execution between two (inference_count, execution_count) snapshots."""
    inferences, executions = after[0] - before[0], after[1] - before[1]
    return inferences / executions if executions > 0 else None


def with_ratios(rows: Sequence[CaseResult]) -> list[CaseResult]:
    """Each row with its req/s over in-process's at the same concurrency, and each
    batching-on row with its req/s over the batching-off row of the same path and concurrency."""
    base = {r.concurrency: r.req_per_s for r in rows if r.path == IN_PROCESS}
    off = {(r.path, r.concurrency): r.req_per_s for r in rows if r.batching is False}
    out = []
    for row in rows:
        vs = row.req_per_s / base[row.concurrency] if row.concurrency in base else None
        key = (row.path, row.concurrency)
        gain = row.req_per_s / off[key] if row.batching is True and key in off else None
        out.append(replace(row, vs_in_process=vs, batching_gain=gain))
    return out
