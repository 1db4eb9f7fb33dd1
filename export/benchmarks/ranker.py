"""The ranker's one-pass form against its full-mask reference (DESIGN.md 4.4).

`PhoenixRanker.forward` computes a viewer's history once and lets each candidate attend to the
history keys plus its own key: O(S^2 + C*S). `forward_reference` runs one masked pass over the whole
`[user | history | candidates]` sequence: O((S+C)^2). This module measures what that difference is
worth for one viewer (batch 1) with a full history, at several candidate counts.

Both forms are timed in the same run, alternating call by call (and swapping which goes first every
round), so drift in the machine's speed lands on both equally. Before timing, each case checks that
the two forms give the same probabilities and refuses to time code that disagrees.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from tqdm import tqdm

from export.models.inputs import RankerInputs
from export.models.ranker import PhoenixRanker, RankerOutput
from export.models.sample import random_ranker_inputs
from phoenix.config import ModelConfig, get_config
from phoenix.errors import ConfigError

#: The issue's table: two CPU-sized configs at three candidate counts.
DEFAULT_CONFIGS = ("tiny", "mini")
DEFAULT_CANDIDATES = (64, 256, 1024)

#: Largest max |Δp| accepted between the two forms, by dtype; beyond it the code is wrong.
AGREEMENT_TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 2e-2, torch.float16: 2e-2}

Forward = Callable[[RankerInputs], RankerOutput]


@dataclass(frozen=True)
class FormTiming:
    """Latency of one form for one viewer, over `samples` timed calls."""

    median_ms: float
    p90_ms: float
    samples: int

    @classmethod
    def from_seconds(cls, seconds: Sequence[float]) -> FormTiming:
        ms = [s * 1e3 for s in seconds]
        p90 = statistics.quantiles(ms, n=10, method="inclusive")[-1] if len(ms) > 1 else ms[0]
        return cls(median_ms=statistics.median(ms), p90_ms=p90, samples=len(ms))

    def candidates_per_s(self, candidates: int) -> float:
        return candidates / (self.median_ms / 1e3)


@dataclass(frozen=True)
class RankerBenchRow:
    """One config at one candidate count: both forms, side by side."""

    config: str
    history_len: int
    candidates: int
    device: str
    dtype: str
    one_pass: FormTiming
    reference: FormTiming
    max_abs_diff: float  # max |p_one_pass - p_reference| over every action and dwell probability

    @property
    def one_pass_cand_per_s(self) -> float:
        return self.one_pass.candidates_per_s(self.candidates)

    @property
    def reference_cand_per_s(self) -> float:
        return self.reference.candidates_per_s(self.candidates)

    @property
    def speedup(self) -> float:
        """One-pass throughput over reference throughput (> 1: one-pass is faster)."""
        return self.one_pass_cand_per_s / self.reference_cand_per_s

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "one_pass_cand_per_s": self.one_pass_cand_per_s,
            "reference_cand_per_s": self.reference_cand_per_s,
            "speedup": self.speedup,
        }


@dataclass(frozen=True)
class TimingPlan:
    """How long to time each case: `warmup` untimed calls per form, then timed calls until each
    form has at least `repeats` samples and the case has run for at least `min_time_s` seconds."""

    warmup: int = 3
    min_time_s: float = 2.0
    repeats: int = 10

    def __post_init__(self) -> None:
        if self.warmup < 0:
            raise ConfigError(f"warmup: need 0 or more calls, got {self.warmup}")
        if self.min_time_s < 0:
            raise ConfigError(f"min_time_s: need 0 or more seconds, got {self.min_time_s}")
        if self.repeats < 1:
            raise ConfigError(f"repeats: need at least 1, got {self.repeats}")


def bench_ranker(
    configs: Sequence[ModelConfig | str] = DEFAULT_CONFIGS,
    candidate_counts: Sequence[int] = DEFAULT_CANDIDATES,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    warmup: int = TimingPlan.warmup,
    min_time_s: float = TimingPlan.min_time_s,
    repeats: int = TimingPlan.repeats,
    threads: int | None = None,
    progress: bool = True,
) -> list[RankerBenchRow]:
    """Time both forms for every (config, candidate count), batch 1 with a full history.

    Returns one row per case, configs outer, candidate counts inner. `threads` sets torch's CPU
    thread count for the run and is restored afterwards; `progress` shows a tqdm bar on stderr.
    """
    plan = TimingPlan(warmup, min_time_s, repeats)
    dev = torch.device(device)
    resolved = [c if isinstance(c, ModelConfig) else get_config(c) for c in configs]
    _check_args(resolved, candidate_counts, dev, dtype, threads)
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _bench_all(resolved, candidate_counts, dev, dtype, plan, progress)
    finally:
        torch.set_num_threads(previous_threads)


def _check_args(
    configs: Sequence[ModelConfig],
    candidate_counts: Sequence[int],
    device: torch.device,
    dtype: torch.dtype,
    threads: int | None,
) -> None:
    if not configs:
        raise ConfigError("configs: need at least one config")
    if not candidate_counts or any(n <= 0 for n in candidate_counts):
        raise ConfigError(f"candidate_counts: need positive counts, got {list(candidate_counts)}")
    for config in configs:
        if max(candidate_counts) > config.max_candidates:
            raise ConfigError(
                f"candidate_counts: {max(candidate_counts)} exceeds "
                f"{config.name}'s max_candidates={config.max_candidates}"
            )
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda requested but torch.cuda.is_available() is False")
    if dtype not in AGREEMENT_TOLERANCE:
        raise ConfigError(f"dtype: expected float32, bfloat16 or float16, got {dtype}")
    if threads is not None and threads < 1:
        raise ConfigError(f"threads: need at least 1, got {threads}")


def _bench_all(
    configs: Sequence[ModelConfig],
    candidate_counts: Sequence[int],
    device: torch.device,
    dtype: torch.dtype,
    plan: TimingPlan,
    progress: bool,
) -> list[RankerBenchRow]:
    rows = []
    total = len(configs) * len(candidate_counts)
    bar = tqdm(total=total, desc="bench ranker", unit="case", disable=not progress, leave=False)
    with bar, torch.inference_mode():
        for config in configs:
            model = make_model(config, device, dtype)
            for n in candidate_counts:
                bar.set_postfix_str(f"{config.name} C={n} S={config.history_len}")
                rows.append(_bench_case(model, n, plan))
                bar.update()
    return rows


def make_model(config: ModelConfig, device: torch.device, dtype: torch.dtype) -> PhoenixRanker:
    """A seeded ranker in eval mode, on `device`, weights cast to `dtype`."""
    torch.manual_seed(0)
    return PhoenixRanker(config).to(device=device, dtype=dtype).eval()


def full_history_inputs(config: ModelConfig, candidates: int, device: torch.device) -> RankerInputs:
    """One viewer with every one of `config.history_len` slots valid; ints stay int64."""
    generator = torch.Generator().manual_seed(candidates)
    return random_ranker_inputs(config, 1, candidates, generator=generator).to(device)


def _bench_case(model: PhoenixRanker, candidates: int, plan: TimingPlan) -> RankerBenchRow:
    config = model.config
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    inputs = full_history_inputs(config, candidates, device)
    diff = check_agreement(model, inputs, AGREEMENT_TOLERANCE[dtype])
    forms = {"one_pass": model.forward, "reference": model.forward_reference}
    for _ in range(plan.warmup):
        for fn in forms.values():
            fn(inputs)
    samples = time_interleaved(forms, inputs, device, plan.min_time_s, plan.repeats)
    return RankerBenchRow(
        config=config.name,
        history_len=config.history_len,
        candidates=candidates,
        device=device.type,
        dtype=str(dtype).removeprefix("torch."),
        one_pass=FormTiming.from_seconds(samples["one_pass"]),
        reference=FormTiming.from_seconds(samples["reference"]),
        max_abs_diff=diff,
    )


def probabilities(out: RankerOutput) -> torch.Tensor:
    """[B, C, A+1] fp32: every action probability plus the dwell sigmoid."""
    return torch.cat([out.action_probs, torch.sigmoid(out.dwell_logit.float())[..., None]], -1)


def check_agreement(model: PhoenixRanker, inputs: RankerInputs, tolerance: float) -> float:
    """Max |Δp| between the two forms; a gap above `tolerance` means a bug, so it raises."""
    fast = probabilities(model.forward(inputs))
    ref = probabilities(model.forward_reference(inputs))
    diff = (fast - ref).abs().max().item()
    if not diff <= tolerance:  # also catches NaN
        raise RuntimeError(
            f"one-pass and reference forms disagree for {model.config.name} with "
            f"{inputs.candidates.candidate_post_hash.shape[1]} candidates: max |Δp| = {diff:.3g} "
            f"> {tolerance:g}; refusing to time code that computes different things"
        )
    return diff


def time_interleaved(
    forms: dict[str, Forward],
    inputs: RankerInputs,
    device: torch.device,
    min_time_s: float,
    repeats: int,
) -> dict[str, list[float]]:
    """Seconds per call for each form, alternating forms and swapping their order every round."""
    samples: dict[str, list[float]] = {name: [] for name in forms}
    order = list(forms)
    start = time.perf_counter()
    while min(map(len, samples.values())) < repeats or time.perf_counter() - start < min_time_s:
        for name in order:
            samples[name].append(time_call(forms[name], inputs, device))
        order.reverse()
    return samples


def time_call(fn: Forward, inputs: RankerInputs, device: torch.device) -> float:
    """Wall-clock seconds for one call; on CUDA, queued work is finished before each clock read."""
    _synchronize(device)
    start = time.perf_counter()
    fn(inputs)
    _synchronize(device)
    return time.perf_counter() - start


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# Output ---------------------------------------------------------------------------------------

_HEADER = (
    "config",
    "candidates",
    "history",
    "one-pass ms (median / p90)",
    "reference ms (median / p90)",
    "one-pass cand/s",
    "reference cand/s",
    "speed-up",
    r"max \|Δp\|",  # '|' escaped: it would end the Markdown cell
)


def format_table(rows: Sequence[RankerBenchRow]) -> str:
    """A Markdown table, one line per row; speed-up is one-pass over reference throughput."""
    lines = [_md_line(_HEADER), _md_line(["---"] * len(_HEADER))]
    lines += [_md_line(_cells(row)) for row in rows]
    return "\n".join(lines)


def _cells(row: RankerBenchRow) -> list[str]:
    return [
        row.config,
        str(row.candidates),
        str(row.history_len),
        f"{row.one_pass.median_ms:.2f} / {row.one_pass.p90_ms:.2f}",
        f"{row.reference.median_ms:.2f} / {row.reference.p90_ms:.2f}",
        f"{row.one_pass_cand_per_s:,.0f}",
        f"{row.reference_cand_per_s:,.0f}",
        f"{row.speedup:.2f}×",
        f"{row.max_abs_diff:.1e}",
    ]


def _md_line(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def to_json(rows: Sequence[RankerBenchRow], machine: dict[str, Any] | None = None) -> str:
    """`{"machine": {...}, "rows": [...]}`, each row with its derived throughputs and speed-up."""
    return json.dumps({"machine": machine or {}, "rows": [r.to_dict() for r in rows]}, indent=2)
