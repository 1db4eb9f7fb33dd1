"""The whole benchmark: stage the repository (exporting first if asked), start one server, check
that the three paths agree, then time every case and read Triton's average batch for each."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import tritonclient.http as triton_http
from tqdm import tqdm

from loadtest.triton_bench.admin import ServedCounts, wait_until_ready
from loadtest.triton_bench.cases import bench_case, plan_cases
from loadtest.triton_bench.clients import (
    GrpcClient,
    HttpClient,
    OrtClient,
    make_request_pool,
    ort_session,
)
from loadtest.triton_bench.report import on_off
from loadtest.triton_bench.repository import (
    ServedRanker,
    check_candidates,
    export_ranker,
    stage_repository,
)
from loadtest.triton_bench.results import TritonBenchReport, with_ratios
from loadtest.triton_bench.settings import (
    AGREEMENT_TOLERANCE,
    BATCHED,
    REQUEST_TIMEOUT_S,
    UNBATCHED,
    BenchSettings,
    Request,
)
from phoenix.config import ModelConfig
from phoenix.errors import ConfigError, ServingError
from phoenix.serving import ORT_THREADS_ENV
from phoenix.triton.server import TritonServer


def bench_triton(
    settings: BenchSettings,
    *,
    repository: Path | None = None,
    checkpoint: Path | None = None,
    config: ModelConfig | None = None,
    progress: bool = True,
) -> TritonBenchReport:
    """Stage the ranker of `repository` (or of a fresh export of `checkpoint`, or of a randomly
    initialised `config` model) with and without batching, start one server, check that the three
    paths agree, then run every case of `plan_cases`."""
    if sum(x is not None for x in (repository, checkpoint, config)) != 1:
        raise ConfigError("repository, checkpoint, config: give exactly one of them")
    with tempfile.TemporaryDirectory(prefix="phoenix-bench-triton-") as tmp:
        work = Path(tmp)
        if repository is not None:
            exported = repository
        elif checkpoint is not None:
            exported = export_ranker(checkpoint, settings.candidates, work)
        elif config is not None:
            exported = export_ranker(config, settings.candidates, work)
        served = stage_repository(exported, work / "bench", settings.max_queue_delay_us)
        check_candidates(settings.candidates, served.max_candidates, "the exported model's")
        pool = make_request_pool(
            served.config, settings.candidates, settings.pool_size, settings.seed
        )
        return _serve_and_bench(served, pool, settings, progress)


def _serve_and_bench(
    served: ServedRanker, pool: list[Request], settings: BenchSettings, progress: bool
) -> TritonBenchReport:
    session = ort_session(served.onnx_path, settings.ort_threads)
    server = TritonServer(
        served.repository,
        http_port=0,
        grpc_port=0,
        metrics_port=0,
        log_file=served.repository.parent / "tritonserver.log",
    )
    # The server's model processes read the thread count when they load, at start-up.
    with _env(ORT_THREADS_ENV, str(settings.ort_threads)), server:
        endpoints = server.endpoints
        admin = triton_http.InferenceServerClient(
            endpoints.http, connection_timeout=REQUEST_TIMEOUT_S, network_timeout=REQUEST_TIMEOUT_S
        )
        try:
            wait_until_ready(admin, (BATCHED, UNBATCHED))
            diff = check_agreement(session, endpoints.http, endpoints.grpc, pool[0])
            stats = ServedCounts(admin)
            for model in (BATCHED, UNBATCHED):
                stats.sent(model, 2)  # the agreement check: one request over HTTP, one over gRPC
            rows = []
            cases = plan_cases(settings.concurrency)
            bar = tqdm(cases, desc="bench triton", unit="case", disable=not progress, leave=False)
            for case in bar:
                path, concurrency, batching = case
                bar.set_postfix_str(f"{path} c={concurrency} batching {on_off(batching)}")
                rows.append(bench_case(case, session, endpoints, stats, pool, settings))
            version = str(admin.get_server_metadata().get("version", "?"))
        finally:
            admin.close()
    return TritonBenchReport(
        config_name=served.config.name,
        history_len=served.config.history_len,
        settings=settings,
        max_batch_size=served.max_batch_size,
        max_queue_delay_us=served.max_queue_delay_us,
        triton_version=version,
        onnxruntime_version=ort.__version__,
        agreement_max_abs_diff=diff,
        rows=with_ratios(rows),
    )


def check_agreement(
    session: ort.InferenceSession, http_url: str, grpc_url: str, request: Request
) -> float:
    """Max |Δ action_probs| of HTTP and gRPC, both served models, against in-process ORT."""
    want = OrtClient(session).infer(request)
    worst = 0.0
    for make, url in ((HttpClient, http_url), (GrpcClient, grpc_url)):
        for model in (BATCHED, UNBATCHED):
            client = make(url, model)
            try:
                got = client.infer(request)
            finally:
                client.close()
            diff = float(np.max(np.abs(got - want))) if got.shape == want.shape else float("inf")
            if not diff <= AGREEMENT_TOLERANCE:  # also catches NaN
                raise ServingError(
                    f"{make.__name__} {model} disagrees with in-process ONNX Runtime: max |Δp| = "
                    f"{diff:.3g} > {AGREEMENT_TOLERANCE:g}; refusing to time different results"
                )
            worst = max(worst, diff)
    return worst


@contextlib.contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous
