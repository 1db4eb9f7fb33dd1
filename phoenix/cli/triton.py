"""`phoenix triton`: serve a model repository with the tritonserver of the nvidia-pytriton wheel."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING

from phoenix.errors import ConfigError, ServingError

if TYPE_CHECKING:
    from phoenix.triton.server import TritonServer

log = logging.getLogger(__name__)

#: Seconds between checks that the server is still alive.
_WATCH_INTERVAL_S = 0.5
#: Timeout of each call to the server's HTTP API made here.
_CLIENT_TIMEOUT_S = 10.0


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is out of range (0-65535; 0 picks a free port)")
    return port


def _at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {value}")
        return value

    return parse


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "triton",
        help="serve a model repository with the tritonserver of the nvidia-pytriton wheel",
        description="Start NVIDIA Triton (the real tritonserver binary that the nvidia-pytriton "
        "wheel carries; Python backend only, no Docker, no GPU needed) on a model repository "
        "written by `phoenix export --target cpu`. Waits until every model in it is loaded, "
        "prints the HTTP, gRPC and metrics endpoints and the models served, then serves until "
        "Ctrl-C or SIGTERM and stops the server cleanly. Triton polls the repository: a version "
        "that `phoenix export` publishes while it runs is loaded and replaces the previous one "
        "without a restart. A server that dies is started again on the same ports (after 1, 2, "
        "4, ... 30 s while restarts keep failing), with a log line counting the restarts.",
        epilog="A model that fails to load at start-up stops the command with Triton's error; "
        "a new version that fails to load later leaves the previous one serving (see the log). "
        "Exit status: 0 after Ctrl-C or SIGTERM, 2 when the server cannot start (or, with "
        "--no-restart, dies).",
    )
    p.add_argument(
        "--repository",
        required=True,
        type=Path,
        metavar="DIR",
        help="model repository directory (may be empty: models are loaded as they appear)",
    )
    for name, default, what in (
        ("--http-port", 8000, "HTTP (KServe v2 REST)"),
        ("--grpc-port", 8001, "gRPC"),
        ("--metrics-port", 8002, "Prometheus metrics"),
    ):
        p.add_argument(
            name,
            type=_port,
            default=default,
            metavar="PORT",
            help=f"{what} port (default {default}; 0 picks a free one)",
        )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)",
    )
    p.add_argument(
        "--poll-seconds",
        type=_at_least(1),
        default=2,
        metavar="SECONDS",
        help="how often Triton looks for new model versions (default 2)",
    )
    p.add_argument(
        "--log-verbose",
        type=_at_least(0),
        default=0,
        metavar="LEVEL",
        help="Triton's verbose logging level (default 0: off; 1 and more: more detail)",
    )
    p.add_argument(
        "--log-file",
        type=Path,
        default=None,
        metavar="PATH",
        help="append the server's output to this file (default: a file in a temporary directory)",
    )
    p.add_argument(
        "--startup-timeout",
        type=_positive_seconds,
        default=120.0,
        metavar="SECONDS",
        help="how long to wait for every model to load (default 120)",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="once ready, send one valid request to every model over HTTP and gRPC (built from "
        "the io.json that phoenix export writes), print what each answered, then stop: a "
        "smoke test of an export, exit status 0 when every model answered",
    )
    p.add_argument(
        "--no-restart",
        action="store_true",
        help="exit when the server dies instead of starting it again",
    )
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from phoenix.triton.server import TritonServer

    fixed = [p for p in (args.http_port, args.grpc_port, args.metrics_port) if p]
    if len(fixed) != len(set(fixed)):
        raise ConfigError(f"--http-port, --grpc-port and --metrics-port must differ, not {fixed}")
    server = TritonServer(
        args.repository,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        host=args.host,
        poll_interval_s=args.poll_seconds,
        log_verbose=args.log_verbose,
        log_file=args.log_file,
        startup_timeout_s=args.startup_timeout,
    )
    with _sigterm_as_keyboard_interrupt():
        try:
            endpoints = server.start()
            models = _served_models(endpoints.http)
            if args.check:
                _check(args.repository, models, endpoints.http, endpoints.grpc)
            else:
                _print_ready(server, args, models)
                _serve(server, follow_log=args.verbose, restart=not args.no_restart)
        except KeyboardInterrupt:
            print("phoenix triton: stopping", file=sys.stderr, flush=True)
        finally:
            try:
                code = server.stop()
            except KeyboardInterrupt:  # a second Ctrl-C: do not wait for a clean shutdown
                code = server.stop(timeout_s=0.0)
    if code != 0:
        raise ServingError(f"tritonserver exited with code {code} (log {server.log_path})")
    return 0


@contextmanager
def _sigterm_as_keyboard_interrupt() -> Iterator[None]:
    """SIGTERM (what `kill` and process managers send) takes the same path as Ctrl-C."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _served_models(http_url: str) -> dict[str, list[str]]:
    """Each model in the repository index with its ready versions (none: not ready, and why)."""
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    try:
        client = httpclient.InferenceServerClient(
            http_url, connection_timeout=_CLIENT_TIMEOUT_S, network_timeout=_CLIENT_TIMEOUT_S
        )
        try:
            index = client.get_model_repository_index()
        finally:
            client.close()
    except (InferenceServerException, OSError) as exc:
        raise ServingError(f"tritonserver at {http_url} did not list its models: {exc}") from exc
    models: dict[str, list[str]] = {}
    for entry in index:
        versions = models.setdefault(entry["name"], [])
        if entry.get("state") == "READY":
            versions.append(entry.get("version", "?"))
    return {name: sorted(v, key=lambda s: (len(s), s)) for name, v in sorted(models.items())}


def _print_ready(
    server: TritonServer, args: argparse.Namespace, models: dict[str, list[str]]
) -> None:
    endpoints = server.endpoints
    print(f"tritonserver ready (pid {server.pid}) on {args.host}, serving {args.repository}")
    print(f"  HTTP     {endpoints.http}")
    print(f"  gRPC     {endpoints.grpc}")
    print(f"  metrics  {endpoints.metrics}")
    if models:
        for name, versions in models.items():
            ready = f"version {', '.join(versions)}" if versions else "no version ready"
            print(f"  model    {name} ({ready})")
    else:
        print("  models   none yet; new ones are picked up as they are exported")
    print(f"  log      {server.log_path}")
    print("Serving until Ctrl-C or SIGTERM.", flush=True)


def _check(repository: Path, models: dict[str, list[str]], http: str, grpc: str) -> None:
    from phoenix.triton.check import check_model

    if not models:
        raise ServingError(f"--check: {repository} holds no models; run phoenix export first")
    print(f"checking {len(models)} models in {repository} over HTTP {http} and gRPC {grpc}")
    for model in models:
        print(check_model(repository, model, http, grpc).describe(), flush=True)


def _serve(server: TritonServer, *, follow_log: bool, restart: bool) -> None:
    """Block while the server runs (copying its log to stderr if `follow_log`). With `restart`, a
    supervisor starts it again whenever it dies and this returns only on Ctrl-C or SIGTERM;
    without, raise ServingError with the log's tail if it dies on its own."""
    from phoenix.triton.supervisor import TritonSupervisor

    supervisor = TritonSupervisor(server) if restart else None
    if supervisor is not None:
        supervisor.watch()
    log_file: IO[bytes] | None = None
    if follow_log:
        log_file = server.log_path.open("rb")
        log_file.seek(0, 2)
    try:
        while supervisor is not None or server.is_running():
            if log_file is not None:
                sys.stderr.write(log_file.read().decode("utf-8", errors="replace"))
                sys.stderr.flush()
            time.sleep(_WATCH_INTERVAL_S)
    finally:
        if log_file is not None:
            log_file.close()
        if supervisor is not None:
            supervisor.stop_watching()
    code = server.stop()
    tail = "\n".join(server.log_tail())
    raise ServingError(f"tritonserver exited on its own with code {code}; its log ends:\n{tail}")
