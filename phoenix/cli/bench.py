"""`phoenix bench ...`: measure, print a Markdown table, optionally save JSON.

One small `_add_<name>` function per benchmark registers its options; one `run_<name>` handler
runs it. Handlers import torch and the benchmark module themselves, so `phoenix --help` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from orchestrator.benchmarks.ann import add_parser as add_ann
from orchestrator.benchmarks.pipeline import add_parser as add_pipeline
from orchestrator.benchmarks.state import add_parser as add_state
from orchestrator.benchmarks.thunder import add_parser as add_thunder
from phoenix.cli.options import option_errors
from phoenix.errors import ConfigError

_RANKER_DESCRIPTION = """\
Time the Phoenix ranker's three forward forms for one viewer (batch 1) with a FULL history
(all history_len slots valid), at each candidate count:

  one-pass   the serving form: the history is computed once, then each candidate's query
             attends to the history keys plus its own key; O(S^2 + C*S) attention
  reference  one full-mask pass over [user | history | candidates]; O((S+C)^2) attention
  chunked    X's serving contract: --chunk candidates (default 64) per one-pass forward, the
             history recomputed for every chunk; O(ceil(C/chunk) * S^2 + C*S) attention

All forms run in the same process, call by call in alternation (the order reversed every
round), so any drift in the machine's speed hits all equally. Before timing, each case checks
that the reference and chunked forms give the same probabilities as one-pass (the max |dp|
column) and stops if they do not, so the benchmark never compares code that computes different
things. First, a large square matmul on the same device and dtype is timed the same way: its
TFLOP/s is the peak the forms are measured against.

Reported per form: median and p90 latency per viewer (ms), candidates per second at the median,
the speed-ups (one-pass cand/s over reference, and over chunked), and, in a second table, the
matmul FLOPs per viewer, achieved TFLOP/s (FLOPs / median time) and its % of the peak. Weights
are random: speed does not depend on their values. The GPU run the issue asks for:

  phoenix bench ranker --device cuda --dtype bf16 --config nano prod --candidates 1000

The output is the machine description, the peak, then the two tables.
"""

_TRITON_DESCRIPTION = """\
Serve the Phoenix ranker with Triton and time it, in one run against one server, for one viewer
(batch 1) with a FULL history and --candidates candidates per request:

  path         in-process (the served model's runtime in this process, shared by the client
               threads), Triton over HTTP, Triton over gRPC (tritonclient, one client per thread)
  concurrency  client threads sending requests back to back (--concurrency)
  batching     Triton's dynamic batcher on (phoenix_ranker) and off (phoenix_ranker_nobatch, the
               same files without dynamic_batching); in-process has no batcher

The model comes from --repository (a cpu or pytorch export; only its phoenix_ranker is used),
from --checkpoint, or is a randomly initialised --config model (default tiny): speed does not
depend on the weights. A checkpoint or config is exported for --target first:

  cpu      the ONNX graph in Triton's Python backend over ONNX Runtime (fp32); in-process: one
           onnxruntime.InferenceSession on the same model.onnx
  pytorch  the PyTorch module in the Python backend, in --precision (default bf16), on the first
           GPU with a CUDA graph per (batch, candidates) bucket, or eagerly on the CPU; in-process:
           a TorchRunner on the same checkpoint with the served config.pbtxt's options (same
           device, precision and CUDA graphs), one call at a time

Before timing, one request goes through every path and must give the same action probabilities
(max |dp| <= 1e-4 in fp32; in bf16 and fp16 the export's parity bound). On a CPU the runtime uses
--ort-threads intra-op threads, in the served model and in-process alike. The GPU run:

  phoenix bench triton --target pytorch --config nano --candidates 1000 --concurrency 1 16

Reported per case: requests and candidates per second, p50 and p99 latency as the client sees
it, Triton's average batch (inferences per execution), req/s relative to in-process at the same
concurrency, and batching on/off. The output is the machine description, the runtime, then the
table.
"""

#: Timed requests per case unless --requests or --min-time says otherwise.
_TRITON_REQUESTS = 500

_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
#: Export targets `phoenix bench triton` serves (loadtest.triton_bench.TARGETS, without importing
#: it here: `phoenix --help` stays fast).
_TRITON_TARGETS = ("cpu", "pytorch")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="benchmark the models, Triton serving, Thunder, the ANN index, the pipeline and the "
        "durable state",
        description="Benchmarks: each prints the machine it ran on and a Markdown table.",
    )
    benchmarks = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    _add_ranker(benchmarks)
    _add_triton(benchmarks)
    add_thunder(benchmarks)
    add_ann(benchmarks)
    add_pipeline(benchmarks)
    add_state(benchmarks)


def _add_ranker(benchmarks: argparse._SubParsersAction) -> None:
    p = benchmarks.add_parser(
        "ranker",
        help="one-pass ranker forward against its full-mask reference and 64-candidate chunks",
        description=_RANKER_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config",
        nargs="+",
        default=["tiny", "mini"],
        metavar="NAME",
        help="presets (tiny, mini, nano, prod) or config .json paths (default: tiny mini)",
    )
    p.add_argument(
        "--candidates",
        nargs="+",
        type=int,
        default=[64, 256, 1024],
        metavar="N",
        help="candidates per viewer; one row per count (default: 64 256 1024)",
    )
    p.add_argument(
        "--chunk",
        type=int,
        default=64,
        metavar="N",
        help="candidates per forward in the chunked form (default: 64, X's serving contract)",
    )
    p.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="where the model runs (default: cpu)",
    )
    p.add_argument(
        "--dtype",
        choices=tuple(_DTYPES),
        default="fp32",
        help="weight and activation dtype; bf16 for GPU runs (default: fp32)",
    )
    p.add_argument(
        "--min-time",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="least time spent timing each case, both forms together (default: 2)",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=10,
        metavar="N",
        help="least timed calls per form per case (default: 10)",
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=3,
        metavar="N",
        help="untimed calls per form before timing (default: 3)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="torch CPU threads (default: torch's choice, usually the core count)",
    )
    _add_output_options(p, "the machine and the rows")
    p.set_defaults(handler=run_ranker)


def _add_output_options(p: argparse.ArgumentParser, saved: str) -> None:
    """--json and --no-progress, the same for every benchmark."""
    p.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="PATH",
        help=f"also write {saved} as JSON to PATH",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _check_ranker_args(args: argparse.Namespace) -> None:
    """Refuse bad values with the option's name, before any model is built."""
    import torch

    from phoenix.config import get_config

    for name in args.config:
        try:
            get_config(name)
        except ConfigError as exc:
            raise ConfigError(f"--config: {exc}") from exc
    if any(n <= 0 for n in args.candidates):
        raise ConfigError(f"--candidates: need positive counts, got {args.candidates}")
    if args.chunk < 1:
        raise ConfigError(f"--chunk: need at least 1 candidate per chunk, got {args.chunk}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device: cuda requested but this torch sees no CUDA device")
    if args.min_time < 0 or args.repeats < 1 or args.warmup < 0:
        raise ConfigError("--min-time, --repeats, --warmup: need >= 0, >= 1 and >= 0")
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads: need at least 1, got {args.threads}")


def run_ranker(args: argparse.Namespace) -> int:
    _check_ranker_args(args)
    import torch

    from export.benchmarks.machine import describe_machine, format_machine
    from export.benchmarks.ranker import (
        bench_ranker,
        format_flops_table,
        format_peak,
        format_table,
        to_json,
    )

    device = torch.device(args.device)
    machine = describe_machine(device, args.threads)
    rows = bench_ranker(
        args.config,
        args.candidates,
        device=device,
        dtype=getattr(torch, _DTYPES[args.dtype]),
        warmup=args.warmup,
        min_time_s=args.min_time,
        repeats=args.repeats,
        threads=args.threads,
        progress=not args.no_progress,
        chunk=args.chunk,
    )
    print(format_machine(machine))
    print(f"dtype {args.dtype}, batch 1 (one viewer), full history, chunk {args.chunk}")
    print(format_peak(rows) + "\n")
    print(format_table(rows))
    print()
    print(format_flops_table(rows))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(to_json(rows, machine) + "\n")
    return 0


def _add_triton(benchmarks: argparse._SubParsersAction) -> None:
    p = benchmarks.add_parser(
        "triton",
        help="the ranker in-process, over Triton HTTP and gRPC, dynamic batching on and off",
        description=_TRITON_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    model = p.add_mutually_exclusive_group()
    model.add_argument(
        "--config",
        default=None,
        metavar="NAME",
        help="preset or config .json path for a randomly initialised model (default: tiny)",
    )
    model.add_argument(
        "--checkpoint", type=Path, default=None, metavar="DIR", help="checkpoint to export"
    )
    model.add_argument(
        "--repository",
        type=Path,
        default=None,
        metavar="DIR",
        help="an exported model repository (cpu or pytorch target) to serve instead of "
        "exporting, in its own target and precision; it is not modified",
    )
    p.add_argument(
        "--target",
        choices=_TRITON_TARGETS,
        default=None,
        help="export target for --config/--checkpoint: cpu (ONNX Runtime, fp32) or pytorch "
        "(PyTorch, CUDA graphs on a GPU) (default: cpu; with --repository, the repository's, "
        "and refused if it differs)",
    )
    p.add_argument(
        "--precision",
        choices=("fp32", "fp16", "bf16"),
        default=None,
        help="compute precision of the export: fp32, fp16 or bf16 for pytorch (default: bf16); "
        "the cpu target is fp32 only; not with --repository, whose models run as exported",
    )
    p.add_argument(
        "--candidates",
        type=int,
        default=256,
        metavar="N",
        help="candidates per request (default: 256)",
    )
    p.add_argument(
        "--concurrency",
        nargs="+",
        type=int,
        default=[1, 16],
        metavar="N",
        help="client threads; one set of cases per value (default: 1 16)",
    )
    budget = p.add_mutually_exclusive_group()
    budget.add_argument(
        "--requests",
        type=int,
        default=None,
        metavar="N",
        help=f"timed requests per case (default: {_TRITON_REQUESTS})",
    )
    budget.add_argument(
        "--min-time",
        type=float,
        default=None,
        metavar="SECONDS",
        help="time each case for this long instead of a number of requests",
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=5,
        metavar="N",
        help="untimed requests per client thread before each case (default: 5)",
    )
    p.add_argument(
        "--ort-threads",
        type=int,
        default=None,
        metavar="N",
        help="intra-op threads of the runtime on a CPU (ONNX Runtime, or PyTorch's "
        "torch.set_num_threads), in the served model (PHOENIX_ORT_THREADS) and in-process alike "
        "(default: the usable CPUs)",
    )
    p.add_argument(
        "--max-queue-delay-us",
        type=int,
        default=None,
        metavar="US",
        help="dynamic batcher delay for the batching-on cases (default: the repository's; "
        "2000 for a fresh export)",
    )
    _add_output_options(p, "the machine, the settings and the rows")
    p.set_defaults(handler=run_triton)


def _check_triton_args(args: argparse.Namespace) -> None:
    """Refuse a bad model source with the option's name; BenchSettings checks the rest."""
    from phoenix.config import get_config

    if args.config is not None:
        try:
            get_config(args.config)
        except ConfigError as exc:
            raise ConfigError(f"--config: {exc}") from exc
    for option, path in (("--checkpoint", args.checkpoint), ("--repository", args.repository)):
        if path is not None and not path.is_dir():
            raise ConfigError(f"{option}: no directory at {path}")
    if args.repository is None:
        return
    if args.precision is not None:
        raise ConfigError(
            "--precision: applies when the benchmark exports (--config, --checkpoint); the models "
            "of --repository run in the precision they were exported with"
        )
    if args.target is not None:
        from loadtest.triton_bench import repository_target

        found = repository_target(args.repository)
        if found != args.target:
            raise ConfigError(
                f"--target: {args.repository} holds a {found} export, not {args.target}; "
                "leave --target out to serve it as it is"
            )


def run_triton(args: argparse.Namespace) -> int:
    _check_triton_args(args)
    import torch
    from pydantic import ValidationError

    from export.benchmarks.machine import describe_machine, format_machine
    from loadtest.triton_bench import (
        BenchSettings,
        bench_triton,
        format_report,
        to_json,
        usable_cpus,
    )
    from phoenix.config import get_config

    requests = args.requests
    if requests is None and args.min_time is None:
        requests = _TRITON_REQUESTS
    try:
        settings = BenchSettings(
            candidates=args.candidates,
            concurrency=tuple(args.concurrency),
            requests=requests,
            min_time_s=args.min_time,
            warmup=args.warmup,
            ort_threads=usable_cpus() if args.ort_threads is None else args.ort_threads,
            max_queue_delay_us=args.max_queue_delay_us,
            target=args.target or "cpu",
            precision=args.precision,
        )
    except ValidationError as exc:
        raise ConfigError(option_errors(exc, {"min_time_s": "--min-time"})) from exc
    use_config = args.repository is None and args.checkpoint is None
    report = bench_triton(
        settings,
        repository=args.repository,
        checkpoint=args.checkpoint,
        config=get_config(args.config or "tiny") if use_config else None,
        progress=not args.no_progress,
    )
    machine = describe_machine(torch.device(report.device), settings.ort_threads)
    print(format_machine(machine))
    print(format_report(report))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(to_json(report, machine) + "\n")
    return 0
