"""`phoenix bench ...`: measure, print a Markdown table, optionally save JSON.

One small `_add_<name>` function per benchmark registers its options; one `run_<name>` handler
runs it. Handlers import torch and the benchmark module themselves, so `phoenix --help` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from phoenix.errors import ConfigError

_RANKER_DESCRIPTION = """\
Time the Phoenix ranker's two forward forms for one viewer (batch 1) with a FULL history
(all history_len slots valid), at each candidate count:

  one-pass   the serving form: the history is computed once, then each candidate's query
             attends to the history keys plus its own key; O(S^2 + C*S) attention
  reference  one full-mask pass over [user | history | candidates]; O((S+C)^2) attention

Both forms run in the same process, call by call in alternation (the order swapped every
round), so any drift in the machine's speed hits both equally. Before timing, each case checks
that the two forms give the same probabilities (the max |dp| column) and stops if they do not,
so the benchmark never compares code that computes different things.

Reported per form: median and p90 latency per viewer (ms), candidates per second at the median,
and the speed-up (one-pass cand/s over reference cand/s). Weights are random: speed does not
depend on their values. The output is the machine description followed by the table.
"""

_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="benchmark the models (and later the served system)",
        description="Benchmarks: each prints the machine it ran on and a Markdown table.",
    )
    benchmarks = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    _add_ranker(benchmarks)


def _add_ranker(benchmarks: argparse._SubParsersAction) -> None:
    p = benchmarks.add_parser(
        "ranker",
        help="one-pass ranker forward against its full-mask reference",
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
    p.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="PATH",
        help="also write the machine and the rows as JSON to PATH",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(handler=run_ranker)


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
    from export.benchmarks.ranker import bench_ranker, format_table, to_json

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
    )
    print(format_machine(machine))
    print(f"dtype {args.dtype}, batch 1 (one viewer), full history\n")
    print(format_table(rows))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(to_json(rows, machine) + "\n")
    return 0
