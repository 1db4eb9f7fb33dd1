"""`phoenix loadtest`: Locust, headless, against the feed service or Triton's ranker."""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from pydantic import ValidationError

from phoenix.cli.options import option_errors
from phoenix.errors import ConfigError, PhoenixError

log = logging.getLogger(__name__)

_DESCRIPTION = """\
Run Locust headless against the feed service (--target feed: feed requests over a viewer mix
weighted by each viewer's activity in the world, plus post creation and engagement writes at
--writes of all requests) or against Triton's ranker directly (--target triton: ranker requests
through tritonclient's HTTP client, --candidates per request).

Without --host the stack is started here first: for feed, tritonserver on --repository and the
orchestrator over --data with --world imported (as phoenix demo does; run it once first); for
triton, tritonserver alone. The feed users authenticate with that stack's own service token, or with
PHOENIX_LOADTEST_TOKEN (a service token of the orchestrator at --host). Each user sends
--user-rps requests per second, so the offered load is users x user-rps.

--shape steps adds --step-users users every --step-seconds from --start-users up to --users, and
prints each step's request rate, p50, p99 and failures, marking the knee: the highest rate whose
p99 stays under --p99-limit-ms with no failures. --shape ramp goes linearly from --start-users to
--users over --duration.

Written to --out: Locust's CSV statistics (locust_stats.csv, ...), its HTML report (report.html),
every request (requests.jsonl) and summary.json (requests per second, p50/p95/p99, failures, per
request type, and the steps). Exit status 1 when the failure rate exceeds --max-failure-rate."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "loadtest",
        help="Locust load test of the feed service or of Triton, with a summary and a report",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--target", choices=("feed", "triton"), required=True, help="what to load")
    p.add_argument("--users", type=int, default=10, help="users (at the end of a ramp or steps)")
    p.add_argument("--spawn-rate", type=float, default=10.0, help="users started per second")
    p.add_argument(
        "--duration",
        type=_duration,
        default=60.0,
        metavar="TIME",
        help="e.g. 60s, 5m (default 60s)",
    )
    p.add_argument(
        "--host",
        help="feed: the orchestrator's URL (http://HOST:PORT); triton: Triton's HTTP HOST:PORT. "
        "Default: start the stack here",
    )
    p.add_argument("--out", type=Path, help="output directory (default runs/loadtest/TARGET-TIME)")
    p.add_argument("--shape", choices=("constant", "ramp", "steps"), default="constant")
    p.add_argument("--start-users", type=int, default=5, help="ramp/steps: users at the start")
    p.add_argument("--step-users", type=int, default=5, help="steps: users added per step")
    p.add_argument("--step-seconds", type=float, default=30.0, help="steps: seconds per step")
    p.add_argument("--user-rps", type=float, default=1.0, help="requests per second per user")
    p.add_argument("--writes", type=float, default=0.1, help="feed: share of write requests")
    p.add_argument("--candidates", type=int, default=256, help="triton: candidates per request")
    p.add_argument(
        "--max-failure-rate",
        type=float,
        default=0.0,
        help="exit 1 when failures / requests exceed this (default 0: any failure)",
    )
    p.add_argument(
        "--p99-limit-ms", type=float, default=150.0, help="steps: p99 that defines the knee"
    )
    p.add_argument(
        "--retrieval-k", type=int, default=400, help="feed stack started here: posts retrieved"
    )
    p.add_argument(
        "--scoring-budget",
        type=int,
        default=None,
        help="feed stack started here: most candidates sent to the ranker (default: all)",
    )
    p.add_argument(
        "--world",
        type=Path,
        default=Path("runs/world"),
        help="feed stack started here: the world imported into its data directory",
    )
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help="feed stack started here: its data directory (default: a temporary one, removed "
        "afterwards, so the test's writes do not pile up)",
    )
    p.add_argument(
        "--repository",
        type=Path,
        default=Path("model_repository"),
        help="model repository to serve when no --host is given",
    )
    p.set_defaults(handler=_run)


def _duration(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smh]?)", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration like 60s or 5m: {text!r}")
    seconds = float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]
    if seconds <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return seconds


def _run(args: argparse.Namespace) -> int:
    from loadtest.run import LoadTestSettings, run_locust
    from loadtest.summary import format_steps, format_summary

    try:
        settings = LoadTestSettings(
            target=args.target,
            users=args.users,
            spawn_rate=args.spawn_rate,
            duration_s=args.duration,
            user_rps=args.user_rps,
            writes=args.writes,
            candidates=args.candidates,
            shape=args.shape,
            start_users=args.start_users,
            step_users=args.step_users,
            step_s=args.step_seconds,
        )
    except ValidationError as exc:
        raise ConfigError(
            option_errors(exc, {"duration_s": "--duration", "step_s": "--step-seconds"})
        ) from exc
    if not 0 <= args.max_failure_rate <= 1:
        raise ConfigError("--max-failure-rate must be between 0 and 1")
    out = args.out or Path("runs/loadtest") / f"{args.target}-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    mix_file = _viewer_mix(args.world, out) if args.target == "feed" else None
    with _host(args) as (host, token):
        result = run_locust(settings, host, out, mix_file=mix_file, token=token)
    summary = result.summary
    print(format_summary(summary))
    if result.steps:
        print()
        print(format_steps(result.steps, args.p99_limit_ms))
    print(f"\n{summary.total.requests:,} requests, {summary.total.failures:,} failures "
          f"({summary.failure_rate:.2%}); report, CSV and summary.json in {out}")  # fmt: skip
    if summary.failure_rate > args.max_failure_rate:
        print(f"phoenix loadtest: failure rate {summary.failure_rate:.2%} exceeds "
              f"--max-failure-rate {args.max_failure_rate:.2%}")  # fmt: skip
        return 1
    return 0


def _viewer_mix(world_dir: Path, out: Path) -> Path:
    from loadtest.viewer_mix import ViewerMix
    from phoenix.world.io import load_world

    return ViewerMix.of(load_world(world_dir)).write(out / "viewer_mix.json")


@contextlib.contextmanager
def _host(args: argparse.Namespace) -> Iterator[tuple[str, str | None]]:
    """The given --host, or one served here for the duration of the test, and the feed service's
    token (None: PHOENIX_LOADTEST_TOKEN, if set)."""
    if args.host:
        yield args.host, None
        return
    if not (args.repository / "phoenix_ranker").is_dir():
        raise PhoenixError(
            f"no exported models in {args.repository}: run phoenix demo (or phoenix export) "
            "first, or give --host"
        )
    if args.target == "triton":
        from phoenix.triton.server import TritonServer
        from phoenix.triton.supervisor import TritonSupervisor

        server = TritonServer(args.repository, http_port=0, grpc_port=0, metrics_port=0)
        with TritonSupervisor(server):
            yield server.endpoints.http, None
        return
    from orchestrator.local_stack import LocalStack

    with contextlib.ExitStack() as cleanup:
        data = args.data or Path(cleanup.enter_context(tempfile.TemporaryDirectory()))
        stack = LocalStack(
            args.repository,
            data=data,
            world=args.world,
            retrieval_k=args.retrieval_k,
            scoring_budget=args.scoring_budget,
        )
        with stack:
            yield stack.url, stack.service_token
