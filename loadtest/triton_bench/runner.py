"""The whole benchmark: stage the repository (exporting first if asked), open the in-process
runtime, start one server, check that the three paths agree, then time every case and read
Triton's average batch for each."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tritonclient.http as triton_http
from tqdm import tqdm

from loadtest.triton_bench.admin import ServedCounts, wait_until_ready
from loadtest.triton_bench.cases import bench_case, plan_cases
from loadtest.triton_bench.clients import (
    GrpcClient,
    HttpClient,
    InProcess,
    InProcessClient,
    make_request_pool,
    open_in_process,
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
    agreement_tolerance,
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
    """Stage the ranker of `repository` (or of a fresh `settings.target` export of `checkpoint`,
    or of a randomly initialised `config` model) with and without batching, start one server,
    check that the three paths agree, then run every case of `plan_cases`.

    A repository is served as its own target and precision (whatever `settings` says); the
    report's settings record what was served."""
    if sum(x is not None for x in (repository, checkpoint, config)) != 1:
        raise ConfigError("repository, checkpoint, config: give exactly one of them")
    with tempfile.TemporaryDirectory(prefix="phoenix-bench-triton-") as tmp:
        work = Path(tmp)
        if repository is not None:
            exported = repository
        else:
            source = checkpoint if checkpoint is not None else config
            assert source is not None
            exported = export_ranker(
                source, settings.candidates, work, settings.target, settings.precision
            )
        served = stage_repository(exported, work / "bench", settings.max_queue_delay_us)
        settings = settings.model_copy(
            update={"target": served.target, "precision": served.precision}
        )
        check_candidates(settings.candidates, served.max_candidates, "the exported model's")
        pool = make_request_pool(
            served.config, settings.candidates, settings.pool_size, settings.seed
        )
        return _serve_and_bench(served, pool, settings, progress)


def _serve_and_bench(
    served: ServedRanker, pool: list[Request], settings: BenchSettings, progress: bool
) -> TritonBenchReport:
    in_process = open_in_process(served, settings.ort_threads)
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
            tolerance = agreement_tolerance(served.precision)
            diff = check_agreement(in_process, endpoints.http, endpoints.grpc, pool[0], tolerance)
            stats = ServedCounts(admin)
            for model in (BATCHED, UNBATCHED):
                stats.sent(model, 2)  # the agreement check: one request over HTTP, one over gRPC
            rows = []
            cases = plan_cases(settings.concurrency)
            bar = tqdm(cases, desc="bench triton", unit="case", disable=not progress, leave=False)
            for case in bar:
                path, concurrency, batching = case
                bar.set_postfix_str(f"{path} c={concurrency} batching {on_off(batching)}")
                rows.append(bench_case(case, in_process, endpoints, stats, pool, settings))
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
        target=served.target,
        precision=served.precision,
        runtime=in_process.description,
        device=in_process.device,
        agreement_max_abs_diff=diff,
        agreement_tolerance=tolerance,
        rows=with_ratios(rows),
    )


def check_agreement(
    in_process: InProcess,
    http_url: str,
    grpc_url: str,
    request: Request,
    tolerance: float = AGREEMENT_TOLERANCE,
) -> float:
    """Max |Δ action_probs| of HTTP and gRPC, both served models, against in-process; refuses
    (ServingError) a difference over `tolerance` (see `agreement_tolerance`)."""
    want = InProcessClient(in_process).infer(request)
    worst = 0.0
    for make, url in ((HttpClient, http_url), (GrpcClient, grpc_url)):
        for model in (BATCHED, UNBATCHED):
            client = make(url, model)
            try:
                got = client.infer(request)
            finally:
                client.close()
            diff = float(np.max(np.abs(got - want))) if got.shape == want.shape else float("inf")
            if not diff <= tolerance:  # also catches NaN
                raise ServingError(
                    f"{make.__name__} {model} disagrees with in-process {in_process.description}: "
                    f"max |Δp| = {diff:.3g} > {tolerance:g}; refusing to time different results"
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
