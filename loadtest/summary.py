"""What a load test measured: Locust's statistics read back into one summary (requests per second,
p50/p95/p99, failures, per request type), and per-step numbers from the request log."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from pydantic import BaseModel

AGGREGATED = "Aggregated"


class RequestStats(BaseModel):
    requests: int
    failures: int
    requests_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float


class Summary(BaseModel):
    """The run's totals, and the same per request name."""

    target: str
    host: str
    duration_s: float
    total: RequestStats
    by_name: dict[str, RequestStats]
    failure_rate: float
    settings: dict[str, object] = {}


class StepStats(BaseModel):
    """One step of a step load: the users offered, what was served, and the latencies."""

    users: int
    start_s: float
    end_s: float
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    failures: int


def read_locust_stats(path: Path) -> dict[str, RequestStats]:
    """Rows of Locust's `*_stats.csv` by name (the `Aggregated` row included)."""
    rows: dict[str, RequestStats] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            rows[row["Name"]] = RequestStats(
                requests=int(row["Request Count"]),
                failures=int(row["Failure Count"]),
                requests_per_s=float(row["Requests/s"]),
                p50_ms=_number(row["50%"]),
                p95_ms=_number(row["95%"]),
                p99_ms=_number(row["99%"]),
            )
    if AGGREGATED not in rows:
        raise ValueError(f"{path}: no {AGGREGATED!r} row; did Locust send any request?")
    return rows


def summarise(
    stats_csv: Path, *, target: str, host: str, duration_s: float, settings: dict[str, object]
) -> Summary:
    rows = read_locust_stats(stats_csv)
    total = rows.pop(AGGREGATED)
    return Summary(
        target=target,
        host=host,
        duration_s=duration_s,
        total=total,
        by_name=rows,
        failure_rate=total.failures / total.requests if total.requests else 0.0,
        settings=settings,
    )


def read_request_log(path: Path) -> np.ndarray:
    """[N, 3] float array of (seconds into the run, latency ms, failed) from the request log."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        return np.zeros((0, 3))
    return np.array([(t, ms, float(failed)) for t, _, ms, failed in rows], np.float64)


def step_stats(
    log: np.ndarray, steps: Iterable[tuple[int, float, float]], settle_s: float = 3.0
) -> list[StepStats]:
    """Per step (users, start, end): requests finished between start + settle_s and end.

    The first seconds of a step are left out: users are still being spawned and the queue of the
    previous step is draining."""
    out = []
    for users, start, end in steps:
        lo = start + min(settle_s, (end - start) / 2)
        window = log[(log[:, 0] >= lo) & (log[:, 0] < end)]
        latencies = window[:, 1]
        out.append(
            StepStats(
                users=users,
                start_s=start,
                end_s=end,
                requests_per_s=len(window) / (end - lo) if end > lo else 0.0,
                p50_ms=float(np.percentile(latencies, 50)) if len(window) else float("nan"),
                p99_ms=float(np.percentile(latencies, 99)) if len(window) else float("nan"),
                failures=int(window[:, 2].sum()),
            )
        )
    return out


def knee(steps: list[StepStats], p99_limit_ms: float) -> StepStats | None:
    """The step with the highest request rate whose p99 stays under the limit with no failure."""
    good = [s for s in steps if s.failures == 0 and s.p99_ms < p99_limit_ms]
    return max(good, key=lambda s: s.requests_per_s, default=None)


def format_summary(summary: Summary) -> str:
    lines = [
        "| request | requests | failures | req/s | p50 ms | p95 ms | p99 ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, s in [*summary.by_name.items(), ("all", summary.total)]:
        lines.append(
            f"| {name} | {s.requests:,} | {s.failures:,} | {s.requests_per_s:.1f} | "
            f"{s.p50_ms:.0f} | {s.p95_ms:.0f} | {s.p99_ms:.0f} |"
        )
    return "\n".join(lines)


def format_steps(steps: list[StepStats], p99_limit_ms: float) -> str:
    best = knee(steps, p99_limit_ms)
    lines = [
        "| users | seconds | req/s | p50 ms | p99 ms | failures | |",
        "| ---: | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for s in steps:
        mark = "knee" if s is best else ""
        lines.append(
            f"| {s.users} | {s.start_s:.0f}-{s.end_s:.0f} | {s.requests_per_s:.1f} | "
            f"{s.p50_ms:.0f} | {s.p99_ms:.0f} | {s.failures} | {mark} |"
        )
    return "\n".join(lines)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:  # Locust writes "N/A" for names without requests
        return float("nan")
