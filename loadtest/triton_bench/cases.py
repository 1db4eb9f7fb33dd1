"""The cases of a run (path, concurrency, batching) and benching one: the client it opens, its
timing, and, through Triton, the average batch from Triton's statistics."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

from loadtest.triton_bench.admin import ServedCounts
from loadtest.triton_bench.clients import (
    Client,
    GrpcClient,
    HttpClient,
    InProcess,
    InProcessClient,
)
from loadtest.triton_bench.results import CaseResult, average_batch, percentile_ms
from loadtest.triton_bench.settings import (
    BATCHED,
    GRPC,
    HTTP,
    IN_PROCESS,
    UNBATCHED,
    BenchSettings,
    Case,
    Request,
)
from loadtest.triton_bench.timing import run_case
from phoenix.triton.server import TritonEndpoints


def plan_cases(concurrency: Sequence[int]) -> list[Case]:
    """Per concurrency: in-process, then HTTP and gRPC each with batching on and off."""
    per_level = ((IN_PROCESS, None), (HTTP, True), (HTTP, False), (GRPC, True), (GRPC, False))
    return [(path, c, batching) for c in concurrency for path, batching in per_level]


def bench_case(
    case: Case,
    in_process: InProcess,
    endpoints: TritonEndpoints,
    stats: ServedCounts,
    pool: Sequence[Request],
    settings: BenchSettings,
) -> CaseResult:
    """Time one case; through Triton, also the average batch from Triton's statistics."""
    path, concurrency, batching = case
    open_client: Callable[[], Client]
    if path == IN_PROCESS:
        model = None
        open_client = partial(InProcessClient, in_process)
    else:
        model = BATCHED if batching else UNBATCHED
        client_class = HttpClient if path == HTTP else GrpcClient
        open_client = partial(
            client_class, endpoints.http if path == HTTP else endpoints.grpc, model
        )
    before: list[tuple[int, int]] = []

    def on_ready() -> None:
        if model is not None:
            stats.sent(model, settings.warmup * concurrency)
            before.append(stats.read(model))

    timing = run_case(open_client, pool, concurrency, settings, on_ready)
    avg = None
    if model is not None:
        stats.sent(model, len(timing.latencies_s))
        avg = average_batch(before[0], stats.read(model))
    return CaseResult(
        path=path,
        concurrency=concurrency,
        batching=batching,
        candidates=settings.candidates,
        requests=len(timing.latencies_s),
        wall_s=timing.wall_s,
        p50_ms=percentile_ms(timing.latencies_s, 50),
        p99_ms=percentile_ms(timing.latencies_s, 99),
        avg_batch=avg,
    )
