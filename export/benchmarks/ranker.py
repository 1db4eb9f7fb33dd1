"""The ranker's one-pass form vs its full-mask reference (docs/DESIGN.md §4.4, docs/FIDELITY.md).

`PhoenixRanker.forward` computes a viewer's context (the two prefix tokens and the history) once
and lets each candidate attend to the context keys plus its own key: O(S^2 + C*S).
`forward_reference` runs one masked pass over the whole `[user | user features | history |
candidates]` sequence: O((S+C)^2). A third form, *chunked*, is X's serving
contract: the candidates are scored `chunk` at a time (64 by default), each chunk a separate
one-pass forward that recomputes the history. This module measures what those differences are
worth for one viewer (batch 1) with a full history, at several candidate counts, in latency,
candidates per second and achieved TFLOP/s against a matmul peak measured in the same run
(`export.benchmarks.peak`).

All forms are timed in the same run, alternating call by call (and reversing the order every round),
so drift in the machine's speed lands on all equally. Before timing, each case checks that the
reference and the chunked form give the same probabilities as the one-pass form and refuses to time
code that disagrees. Every preset works, `x-nano` (X's `home_direct_packed_nano`) included.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from tqdm import tqdm

from export.benchmarks.peak import matmul_peak_tflops
from export.models.inputs import CandidateInputs, RankerInputs
from export.models.precision import cast_for_inference
from export.models.ranker import DWELL_CAP_S, PhoenixRanker, RankerOutput
from export.models.sample import random_ranker_inputs
from phoenix.config import PREFIX_LEN, ModelConfig, get_config
from phoenix.errors import ConfigError
from phoenix.markdown import markdown_table

#: The issue's table: two CPU-sized configs at three candidate counts.
DEFAULT_CONFIGS = ("tiny", "mini")
DEFAULT_CANDIDATES = (64, 256, 1024)
#: Candidates per forward in the chunked form: X's serving contract.
DEFAULT_CHUNK = 64

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
    max_abs_diff: float  # max |p_one_pass - p_reference| over `probabilities`
    chunk: int = DEFAULT_CHUNK
    chunked: FormTiming | None = None
    chunked_max_abs_diff: float = 0.0  # max |p_one_pass - p_chunked|
    one_pass_flops: int = 0
    reference_flops: int = 0
    chunked_flops: int = 0
    peak_tflops: float | None = None  # square-matmul TFLOP/s on the same device and dtype

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

    @property
    def chunked_cand_per_s(self) -> float | None:
        return None if self.chunked is None else self.chunked.candidates_per_s(self.candidates)

    @property
    def speedup_vs_chunked(self) -> float | None:
        """One-pass throughput over chunked throughput: the issue's >= 5x target."""
        chunked = self.chunked_cand_per_s
        return None if chunked is None else self.one_pass_cand_per_s / chunked

    def tflops(self, form: str) -> float | None:
        """Achieved TFLOP/s of `form` (one_pass, reference, chunked): FLOPs / median time."""
        timing: FormTiming | None = getattr(self, form)
        flops: int = getattr(self, f"{form}_flops")
        if timing is None or not flops:
            return None
        return flops / (timing.median_ms / 1e3) / 1e12

    def percent_of_peak(self, form: str) -> float | None:
        achieved = self.tflops(form)
        if achieved is None or not self.peak_tflops:
            return None
        return 100 * achieved / self.peak_tflops

    def to_dict(self) -> dict[str, Any]:
        derived: dict[str, Any] = {
            "one_pass_cand_per_s": self.one_pass_cand_per_s,
            "reference_cand_per_s": self.reference_cand_per_s,
            "chunked_cand_per_s": self.chunked_cand_per_s,
            "speedup": self.speedup,
            "speedup_vs_chunked": self.speedup_vs_chunked,
        }
        for form in FORMS:
            derived[f"{form}_tflops"] = self.tflops(form)
            derived[f"{form}_percent_of_peak"] = self.percent_of_peak(form)
        return {**asdict(self), **derived}


#: The timed forms, in table order.
FORMS = ("one_pass", "reference", "chunked")


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
    chunk: int = DEFAULT_CHUNK,
    peak_size: int | None = None,
) -> list[RankerBenchRow]:
    """Time the three forms for every (config, candidate count), batch 1 with a full history.

    Returns one row per case, configs outer, candidate counts inner, each carrying the matmul peak
    measured once at the start (`peak_size`: its square side, default by device). `threads` sets
    torch's CPU thread count for the run and is restored afterwards; `progress` shows a tqdm bar
    on stderr; `chunk` is the chunked form's candidates per forward.
    """
    plan = TimingPlan(warmup, min_time_s, repeats)
    dev = torch.device(device)
    resolved = [c if isinstance(c, ModelConfig) else get_config(c) for c in configs]
    _check_args(resolved, candidate_counts, dev, dtype, threads)
    if chunk < 1:
        raise ConfigError(f"chunk: need at least 1 candidate per chunk, got {chunk}")
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        peak = matmul_peak_tflops(dev, dtype, size=peak_size)
        return _bench_all(resolved, candidate_counts, dev, dtype, plan, progress, chunk, peak)
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
    chunk: int,
    peak: float,
) -> list[RankerBenchRow]:
    rows = []
    total = len(configs) * len(candidate_counts)
    bar = tqdm(total=total, desc="bench ranker", unit="case", disable=not progress, leave=False)
    with bar, torch.inference_mode():
        for config in configs:
            model = make_model(config, device, dtype)
            for n in candidate_counts:
                bar.set_postfix_str(f"{config.name} C={n} S={config.history_len}")
                rows.append(_bench_case(model, n, plan, chunk, peak))
                bar.update()
    return rows


def make_model(config: ModelConfig, device: torch.device, dtype: torch.dtype) -> PhoenixRanker:
    """A seeded ranker in eval mode, on `device`, cast to `dtype` as it is served."""
    torch.manual_seed(0)
    return cast_for_inference(PhoenixRanker(config).to(device), dtype).eval()  # type: ignore[return-value]


def full_history_inputs(config: ModelConfig, candidates: int, device: torch.device) -> RankerInputs:
    """One viewer with every one of `config.history_len` slots valid; ints stay int64."""
    generator = torch.Generator().manual_seed(candidates)
    return random_ranker_inputs(config, 1, candidates, generator=generator).to(device)


def _bench_case(
    model: PhoenixRanker, candidates: int, plan: TimingPlan, chunk: int, peak: float
) -> RankerBenchRow:
    config = model.config
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    inputs = full_history_inputs(config, candidates, device)
    tolerance = AGREEMENT_TOLERANCE[dtype]
    chunked = chunked_forward(model, chunk)
    diff = check_agreement(model, inputs, tolerance)
    chunked_diff = check_agreement(model, inputs, tolerance, chunked, "chunked")
    forms = {"one_pass": model.forward, "reference": model.forward_reference, "chunked": chunked}
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
        chunk=chunk,
        chunked=FormTiming.from_seconds(samples["chunked"]),
        chunked_max_abs_diff=chunked_diff,
        one_pass_flops=forward_flops(config, config.history_len, candidates, "one_pass"),
        reference_flops=forward_flops(config, config.history_len, candidates, "reference"),
        chunked_flops=forward_flops(config, config.history_len, candidates, "chunked", chunk),
        peak_tflops=peak,
    )


def chunked_forward(model: PhoenixRanker, chunk: int) -> Forward:
    """X's serving contract: `chunk` candidates per one-pass forward, the history recomputed for
    each chunk; the chunks' outputs are concatenated back in candidate order."""

    def forward(inputs: RankerInputs) -> RankerOutput:
        total = inputs.candidates.candidate_post_hash.shape[1]
        outs = [
            model.forward(_candidate_slice(inputs, i, i + chunk)) for i in range(0, total, chunk)
        ]
        return RankerOutput(
            torch.cat([o.logits for o in outs], dim=1),
            torch.cat([o.continuous for o in outs], dim=1),
        )

    return forward


def _candidate_slice(inputs: RankerInputs, start: int, stop: int) -> RankerInputs:
    c = inputs.candidates
    sliced = {f.name: getattr(c, f.name)[:, start:stop] for f in dataclasses.fields(c)}
    return RankerInputs(inputs.user, inputs.history, CandidateInputs(**sliced))


def forward_flops(
    config: ModelConfig, history_len: int, candidates: int, form: str, chunk: int = DEFAULT_CHUNK
) -> int:
    """Multiply-add FLOPs (2 per multiply-accumulate) of one viewer's ranker forward, by form.

    Counts the matrix products `PhoenixRanker` computes per token, with L = P + S context tokens
    (P = 2 prefix tokens, S history), C candidates, T = L + C tokens, D = emb_dim, W = hash_width,
    A = num_action_columns (64), K = num_continuous (8), F = ffn_dim, Hq/Hkv query/key-value
    heads of size dk, N layers:

    - embeddings, per history token and candidate: the post and the author projections,
      2*(2W)*D each; the semantic-id projection 2*W_sid*D when the semantic-id table's width
      W_sid differs from D (x-nano: 1024 -> 512, the largest embedding term); the count MLP
      2*(n_counts+1)*M + 2*M*D (M = count_mlp_dim); per history token also the actions,
      2*A*D. Table, context and semantic-id lookups are gathers: 0;
    - per layer, projections: 2*T*D*dk*(2*Hq + 2*Hkv) (q and o with Hq heads, k and v with Hkv:
      grouped-query attention shares k/v but every query head still does its own scores);
    - per layer, attention scores plus weighted values, 4*Hq*dk per (query, key) pair:
      one-pass L*L + C*(L + 1) pairs (context to context; each candidate to the context and to
      itself), reference T*T pairs (the full masked square);
    - per layer, FFN: 2*T*D*F for up and down each, plus gate when gated;
    - heads: action logits and continuous outputs, 2*C*D*(A + K), on the candidates only.

    Left out, because they do not matter: the two prefix tokens' own projections (user and IP
    rows, location and apps: a constant under 1 MFLOP per viewer, below 0.1% of any case here)
    and everything elementwise (norms, qk-norm, rotary, softmax, GELU, the output scale).
    Chunked is the one-pass count for each chunk of `chunk` candidates (the last one shorter),
    summed, so the context is paid once per chunk.
    """
    if form == "chunked":
        if chunk < 1:
            raise ConfigError(f"chunk: need at least 1 candidate per chunk, got {chunk}")
        sizes = [min(chunk, candidates - i) for i in range(0, candidates, chunk)]
        return sum(forward_flops(config, history_len, n, "one_pass") for n in sizes)
    if form not in ("one_pass", "reference"):
        raise ConfigError(f"form: expected one of {FORMS}, got {form!r}")
    d, w, f = config.emb_dim, config.hash_width, config.ffn_dim
    a, k = config.num_action_columns, config.num_continuous
    hq, hkv, dk = config.num_q_heads, config.num_kv_heads, config.key_size
    ctx, c = PREFIX_LEN + history_len, candidates
    t = ctx + c
    per_post = 2 * (2 * 2 * w * d)
    if config.sid_width != d:
        per_post += 2 * config.sid_width * d
    per_post += 2 * (config.num_counts + 1) * config.count_mlp_dim + 2 * config.count_mlp_dim * d
    embed = (history_len + c) * per_post + history_len * 2 * a * d
    projections = 2 * t * d * dk * (2 * hq + 2 * hkv)
    pairs = ctx * ctx + c * (ctx + 1) if form == "one_pass" else t * t
    attention = 4 * hq * dk * pairs
    ffn = (3 if config.gated_ffn else 2) * 2 * t * d * f
    heads = 2 * c * d * (a + k)
    return embed + config.num_layers * (projections + attention + ffn) + heads


def probabilities(out: RankerOutput) -> torch.Tensor:
    """[B, C, A+1] fp32: every action probability, then the dwell time as a fraction of its 30 s
    cap (the dwell sigmoid; up to 10 on the gallery surface, whose cap is 300 s)."""
    return torch.cat([out.probs, (out.dwell_time / DWELL_CAP_S)[..., None]], -1)


def check_agreement(
    model: PhoenixRanker,
    inputs: RankerInputs,
    tolerance: float,
    other: Forward | None = None,
    name: str = "reference",
) -> float:
    """Max |Δp| between one-pass and `other` (default: the reference); a gap above `tolerance`
    means a bug, so it raises."""
    fast = probabilities(model.forward(inputs))
    ref = probabilities((other or model.forward_reference)(inputs))
    diff = (fast - ref).abs().max().item()
    if not diff <= tolerance:  # also catches NaN
        raise RuntimeError(
            f"one-pass and {name} forms disagree for {model.config.name} with "
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
    "chunked ms (median / p90)",
    "one-pass cand/s",
    "reference cand/s",
    "chunked cand/s",
    "speed-up",
    "vs chunked",
    r"max \|Δp\|",  # '|' escaped: it would end the Markdown cell
)

_FLOPS_HEADER = (
    "config",
    "candidates",
    "chunk",
    "one-pass GFLOP",
    "reference GFLOP",
    "chunked GFLOP",
    "one-pass TFLOP/s (% peak)",
    "reference TFLOP/s (% peak)",
    "chunked TFLOP/s (% peak)",
)


def format_table(rows: Sequence[RankerBenchRow]) -> str:
    """A Markdown table, one line per row. Speed-up is one-pass over reference throughput, vs
    chunked one-pass over chunked throughput; max |Δp| is the larger of the two agreement gaps."""
    return markdown_table(_HEADER, (_cells(row) for row in rows))


def _cells(row: RankerBenchRow) -> list[str]:
    chunked = row.chunked
    speedup_vs_chunked = row.speedup_vs_chunked
    chunked_cand_per_s = row.chunked_cand_per_s
    return [
        row.config,
        str(row.candidates),
        str(row.history_len),
        f"{row.one_pass.median_ms:.2f} / {row.one_pass.p90_ms:.2f}",
        f"{row.reference.median_ms:.2f} / {row.reference.p90_ms:.2f}",
        "-" if chunked is None else f"{chunked.median_ms:.2f} / {chunked.p90_ms:.2f}",
        f"{row.one_pass_cand_per_s:,.0f}",
        f"{row.reference_cand_per_s:,.0f}",
        "-" if chunked_cand_per_s is None else f"{chunked_cand_per_s:,.0f}",
        f"{row.speedup:.2f}×",
        "-" if speedup_vs_chunked is None else f"{speedup_vs_chunked:.2f}×",
        f"{max(row.max_abs_diff, row.chunked_max_abs_diff):.1e}",
    ]


def format_flops_table(rows: Sequence[RankerBenchRow]) -> str:
    """A second Markdown table: each form's FLOPs per viewer and achieved TFLOP/s (FLOPs over the
    median time), with its percentage of the matmul peak measured in the same run."""
    return markdown_table(_FLOPS_HEADER, (_flops_cells(row) for row in rows))


def _flops_cells(row: RankerBenchRow) -> list[str]:
    cells = [row.config, str(row.candidates), str(row.chunk)]
    cells += [f"{getattr(row, f'{form}_flops') / 1e9:,.2f}" for form in FORMS]
    for form in FORMS:
        achieved, percent = row.tflops(form), row.percent_of_peak(form)
        if achieved is None:
            cells.append("-")
        elif percent is None:
            cells.append(f"{achieved:.3f}")
        else:
            cells.append(f"{achieved:.3f} ({percent:.1f}%)")
    return cells


def format_peak(rows: Sequence[RankerBenchRow]) -> str:
    """One line naming the matmul peak the percentages refer to."""
    peak = rows[0].peak_tflops if rows else None
    if peak is None:
        return "matmul peak: not measured"
    return f"matmul peak: {peak:.3f} TFLOP/s (square matmul, same device and dtype, this run)"


def to_json(rows: Sequence[RankerBenchRow], machine: dict[str, Any] | None = None) -> str:
    """`{"machine": {...}, "peak_tflops": x, "rows": [...]}`, each row with its derived throughputs,
    speed-ups, TFLOP/s and percentages of the peak."""
    peak = rows[0].peak_tflops if rows else None
    data = {"machine": machine or {}, "peak_tflops": peak, "rows": [r.to_dict() for r in rows]}
    return json.dumps(data, indent=2)
