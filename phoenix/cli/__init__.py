"""The `phoenix` command. Each subcommand lives in its own module with a `register(subparsers)`
function; heavy imports (torch) happen inside the command, so `phoenix --help` stays fast and the
orchestrator's commands never need PyTorch."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from phoenix import __version__
from phoenix.errors import PhoenixError

#: Modules under phoenix.cli that each add one or more subcommands.
_COMMAND_MODULES = (
    "world",
    "train",
    "evaluate",
    "import_x",
    "load",
    "export",
    "triton",
    "serve",
    "demo",
    "bench",
    "loadtest",
)

#: Third-party loggers that log at INFO what only matters when debugging.
_QUIET_LOGGERS = ("httpx", "faiss", "faiss.loader")

log = logging.getLogger("phoenix")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phoenix",
        description="Serve X's For You recommender (Phoenix) on NVIDIA Triton: build a synthetic "
        "world, train and evaluate the ranker and retrieval towers, and benchmark them.",
        epilog="Run 'phoenix COMMAND --help' for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"phoenix-triton {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log debug messages as well as progress"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMAND_MODULES:
        importlib.import_module(f"phoenix.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not args.verbose:  # per-request and library-loading chatter
        for name in _QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
    try:
        return int(args.handler(args) or 0)
    except PhoenixError as exc:
        # Expected failures (bad config, bad checkpoint, bad input): one clear line, no traceback.
        print(f"phoenix {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"phoenix {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
