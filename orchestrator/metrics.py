"""The service's Prometheus metrics, on a registry of its own so that several apps (tests) can live
in one process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: Latency buckets in seconds: the request path aims at tens of milliseconds.
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """Every metric the orchestrator exports at /metrics."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.http_requests = Counter(
            "phoenix_http_requests", "HTTP requests by route and status", ["route", "status"],
            registry=r,
        )  # fmt: skip
        self.http_latency = Histogram(
            "phoenix_http_request_seconds", "HTTP request latency by route", ["route"],
            buckets=_BUCKETS, registry=r,
        )  # fmt: skip
        self.stage_latency = Histogram(
            "phoenix_stage_seconds", "Feed pipeline latency per stage", ["stage"],
            buckets=_BUCKETS, registry=r,
        )  # fmt: skip
        self.candidates = Histogram(
            "phoenix_candidates", "Candidates per feed request by source", ["source"],
            buckets=(0, 10, 50, 100, 200, 500, 1000, 2000, 5000), registry=r,
        )  # fmt: skip
        self.filtered = Counter(
            "phoenix_filtered_candidates", "Candidates removed per filter", ["filter"], registry=r
        )
        self.triton_latency = Histogram(
            "phoenix_triton_call_seconds", "Triton inference call latency by model", ["model"],
            buckets=_BUCKETS, registry=r,
        )  # fmt: skip
        self.triton_errors = Counter(
            "phoenix_triton_errors", "Failed Triton calls by model", ["model"], registry=r
        )
        self.triton_refused = Counter(
            "phoenix_triton_refused", "Triton calls refused as INVALID_ARGUMENT (our bug) by model",
            ["model"], registry=r,
        )  # fmt: skip
        self.circuit_open = Gauge(
            "phoenix_triton_circuit_open", "1 while Triton calls fail at once (circuit open)",
            registry=r,
        )  # fmt: skip
        self.triton_restarts = Counter(
            "phoenix_triton_restarts", "tritonserver restarts by the supervisor in this process",
            registry=r,
        )  # fmt: skip
        self.degraded = Counter(
            "phoenix_degraded_feeds", "Feeds answered without the ranker", ["reason"], registry=r
        )
        self.index_size = Gauge("phoenix_index_posts", "Posts in the retrieval index", registry=r)
        self.thunder_size = Gauge("phoenix_thunder_posts", "Posts in Thunder", registry=r)
