"""The report as text: a Markdown table of the cases with the settings around it, and JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from loadtest.triton_bench.results import CaseResult, TritonBenchReport
from phoenix.markdown import markdown_table

_HEADER = (
    "path",
    "concurrency",
    "dynamic batching",
    "requests",
    "req/s",
    "cand/s",
    "p50 ms",
    "p99 ms",
    "avg batch",
    "vs in-process",
    "batching on/off",
)


def on_off(batching: bool | None) -> str:
    """A case's dynamic batching as the table and the progress bar show it."""
    return "n/a" if batching is None else ("on" if batching else "off")


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def format_table(rows: Sequence[CaseResult]) -> str:
    """A Markdown table, one line per case, in the order run."""
    cells = [
        [
            row.path,
            str(row.concurrency),
            on_off(row.batching),
            str(row.requests),
            f"{row.req_per_s:,.1f}",
            f"{row.cand_per_s:,.0f}",
            f"{row.p50_ms:.2f}",
            f"{row.p99_ms:.2f}",
            "—" if row.avg_batch is None else f"{row.avg_batch:.2f}",
            _ratio(row.vs_in_process),
            _ratio(row.batching_gain),
        ]
        for row in rows
    ]
    return markdown_table(_HEADER, cells)


def format_report(report: TritonBenchReport) -> str:
    """The settings above the table, the table, and what its columns mean below it."""
    s = report.settings
    budget = f"{s.requests} requests" if s.requests is not None else f"{s.min_time_s:g} s"
    threads = ""
    if report.device == "cpu":
        threads = f", {s.ort_threads} intra-op thread{'' if s.ort_threads == 1 else 's'}"
    head = (
        f"ranker {report.config_name}: one viewer (batch 1) per request, full history "
        f"({report.history_len}), {s.candidates} candidates; {budget} per case after {s.warmup} "
        "warm-up requests per client\n"
        f"Triton {report.triton_version} (Python backend, {report.target} target), "
        f"runtime {report.runtime}{threads} in the served model and in-process alike\n"
        f"dynamic batching on: max_batch_size {report.max_batch_size}, max_queue_delay "
        f"{report.max_queue_delay_us} µs; off: the same model without dynamic_batching\n"
        f"agreement: HTTP and gRPC vs in-process max |Δp| {report.agreement_max_abs_diff:.1e} "
        f"(tolerance {report.agreement_tolerance:g}, {report.precision})\n"
    )
    if report.target == "pytorch":
        shared = (
            "one TorchRunner, one call at a time (a lock: its bucket buffers and CUDA graphs are "
            "static; the served model's one instance runs one batch at a time too)"
        )
    else:
        shared = "one onnxruntime.InferenceSession"
    notes = (
        f"\nin-process: all client threads share {shared}; no batcher.\n"
        "Latency is what the client sees. avg batch: Triton's inference_count / execution_count "
        "during the case. vs in-process: req/s over in-process's at the same concurrency. "
        "batching on/off: req/s with dynamic batching over without, same path and concurrency."
    )
    return head + "\n" + format_table(report.rows) + "\n" + notes


def to_json(report: TritonBenchReport, machine: dict[str, Any] | None = None) -> str:
    """`{"machine": {...}, "report": {...settings, rows}}`, rows with their derived rates."""
    return json.dumps({"machine": machine or {}, "report": report.to_dict()}, indent=2)
