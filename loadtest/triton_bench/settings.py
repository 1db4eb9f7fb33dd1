"""What the benchmark serves and sends: the paths and models, its limits, and `BenchSettings`."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from phoenix.machine import usable_cpus

IN_PROCESS, HTTP, GRPC = "in-process", "HTTP", "gRPC"
#: The model Triton batches dynamically, and its twin without a batcher.
BATCHED, UNBATCHED = "phoenix_ranker", "phoenix_ranker_nobatch"
#: Largest |Δ probability| (exp of the served log-probabilities) accepted between the paths in
#: fp32; beyond it something is broken.
AGREEMENT_TOLERANCE = 1e-4
#: The export targets this benchmark serves (both Python-backend models), and their precisions.
TARGETS = ("cpu", "pytorch")
Target = Literal["cpu", "pytorch"]
Precision = Literal["fp32", "fp16", "bf16"]
#: Seconds before a single request, or the models becoming ready, counts as failed.
REQUEST_TIMEOUT_S = 60.0
READY_TIMEOUT_S = 120.0
#: Seconds to wait for Triton's statistics to count every request sent (they lag the responses).
STATS_TIMEOUT_S = 10.0

Request = dict[str, np.ndarray]
#: One case: (path, client threads, dynamic batching; None in-process).
Case = tuple[str, int, bool | None]


class BenchSettings(BaseModel):
    """What each case sends and for how long: `requests` per case, or `min_time_s` seconds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    candidates: int = Field(default=256, ge=1, description="candidates per request (one viewer)")
    concurrency: tuple[int, ...] = Field(
        default=(1, 16), min_length=1, description="client threads; one set of cases per value"
    )
    requests: int | None = Field(default=500, ge=1, description="timed requests per case")
    min_time_s: float | None = Field(default=None, gt=0, description="or seconds per case")
    warmup: int = Field(default=5, ge=0, description="untimed requests per thread, per case")
    ort_threads: int = Field(
        default_factory=usable_cpus,
        ge=1,
        description="intra-op threads of the runtime on a CPU, server and in-process",
    )
    max_queue_delay_us: int | None = Field(
        default=None, ge=0, le=1_000_000, description="batcher delay; None: the repository's"
    )
    pool_size: int = Field(default=64, ge=1, description="distinct requests, generated up front")
    seed: int = 0
    target: Target = Field(default="cpu", description="export target: ONNX Runtime or PyTorch")
    precision: Precision | None = Field(
        default=None, description="compute precision of an export; None: the target's default"
    )

    @field_validator("concurrency")
    @classmethod
    def _distinct_positive(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if min(value) < 1 or len(set(value)) != len(value):
            raise ValueError(f"need distinct positive counts, got {list(value)}")
        return value

    @field_validator("precision")
    @classmethod
    def _cpu_is_fp32(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value not in (None, "fp32") and info.data.get("target") == "cpu":
            raise ValueError(f"the cpu target serves the fp32 ONNX graph, not {value}")
        return value

    @model_validator(mode="after")
    def _one_budget(self) -> BenchSettings:
        if (self.requests is None) == (self.min_time_s is None):
            raise ValueError("set exactly one of requests and min_time_s")
        return self

    @property
    def resolved_precision(self) -> str:
        """The precision an export runs in: bf16 for pytorch and fp32 for cpu unless set."""
        if self.precision is not None:
            return self.precision
        return "bf16" if self.target == "pytorch" else "fp32"


def agreement_tolerance(precision: str) -> float:
    """Largest |Δ action_probs| accepted between the paths: `AGREEMENT_TOLERANCE` in fp32, and in
    reduced precision the export's parity bound (the served model and the in-process runner run
    the same numerics, but Triton's batcher may run a request in another bucket shape)."""
    from export.parity import TOLERANCE_PER_UNIT

    if precision == "fp32":
        return AGREEMENT_TOLERANCE
    try:
        return TOLERANCE_PER_UNIT[precision]
    except KeyError:
        raise ValueError(f"precision: unknown {precision!r}") from None
