"""`phoenix bench triton`: the ranker through Triton (HTTP, gRPC) against its runtime in-process.

One run, one server. The ranker of a `cpu` or `pytorch` export is served twice by one
`tritonserver` (the nvidia-pytriton build, Python backend: over ONNX Runtime for cpu,
`export/repository/python_model.py`; over PyTorch for pytorch, `torch_model.py`, bf16 with CUDA
graphs on a GPU by default):

    phoenix_ranker          the exported model, dynamic batching on
    phoenix_ranker_nobatch  the same files, `dynamic_batching` removed from config.pbtxt

and every case sends the same kind of request, one viewer (batch 1) with a full history and a
fixed number of candidates, drawn from a pool generated before any timing:

    path          in-process        the served model's runtime in this process, shared by all
                                    client threads: an onnxruntime.InferenceSession on the same
                                    model.onnx, or a TorchRunner on the same checkpoint with the
                                    options of the served config.pbtxt (one call at a time);
                                    no batcher, so one row per concurrency
                  HTTP, gRPC        tritonclient, one client per thread
    concurrency   client threads, each sending its next request when the last one answered
    batching      on, off           the two served models above

Latency is what the client sees (building the request, the call, reading the output). Requests per
second is completed requests over the case's wall time. After each case Triton's statistics give
the average batch the model ran (inference_count / execution_count), which shows whether dynamic
batching batched at all. Before timing, one request goes through all three paths and both served
models; the benchmark refuses to run if their action probabilities differ by more than 1e-4
(fp32; in fp16 and bf16 the export's parity bound, `export.parity.TOLERANCE_PER_UNIT`).

The package, in the order a run goes through it:

    settings     the paths, the served models, the limits and `BenchSettings`
    repository   staging the ranker twice (batching on, off), exporting it first if asked
    clients      the request pool, the in-process runtime, and the in-process, HTTP and gRPC
                 clients
    timing       timing one case: client threads against a budget of requests or seconds
    cases        the cases to run, and benching one through its path and served model
    admin        Triton's readiness and statistics (inference and execution counts)
    runner       `bench_triton`: serve, check that the paths agree, bench every case
    results      a row per case, the report, and the statistics behind them
    report       the report as a Markdown table and as JSON

Imported from here: what `phoenix bench triton` and its tests use; the rest from its module.
"""

from __future__ import annotations

from loadtest.triton_bench.cases import plan_cases
from loadtest.triton_bench.report import format_report, format_table, to_json
from loadtest.triton_bench.repository import repository_target, stage_repository
from loadtest.triton_bench.results import CaseResult, average_batch, percentile_ms, with_ratios
from loadtest.triton_bench.runner import bench_triton
from loadtest.triton_bench.settings import (
    BATCHED,
    GRPC,
    HTTP,
    IN_PROCESS,
    TARGETS,
    UNBATCHED,
    BenchSettings,
    agreement_tolerance,
    usable_cpus,
)
from loadtest.triton_bench.timing import run_case

__all__ = [
    "BATCHED",
    "GRPC",
    "HTTP",
    "IN_PROCESS",
    "TARGETS",
    "UNBATCHED",
    "BenchSettings",
    "CaseResult",
    "agreement_tolerance",
    "average_batch",
    "bench_triton",
    "format_report",
    "format_table",
    "percentile_ms",
    "plan_cases",
    "repository_target",
    "run_case",
    "stage_repository",
    "to_json",
    "usable_cpus",
    "with_ratios",
]
