"""`phoenix world --seed 7 --out DIR`: generate a synthetic world (users, follows, posts,
engagements) for training, evaluation and the orchestrator's stores.

Every size of `WorldSpec` is an option named after its field (`num_users` -> `--num-users`), with
the field's description as help and its default."""

from __future__ import annotations

import argparse
import logging
import re
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from phoenix.errors import ConfigError
from phoenix.world.spec import WorldSpec

log = logging.getLogger(__name__)

_REQUIRED_FIELDS = ("seed",)  # added by hand, without a default


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "world",
        help="generate a synthetic world (Parquet tables + world.json)",
        description="Generate a deterministic synthetic world: the same seed and sizes always "
        "give the same bytes.",
    )
    parser.add_argument(
        "--seed", type=int, required=True, help=WorldSpec.model_fields["seed"].description
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output directory")
    for name, field in WorldSpec.model_fields.items():
        if name in _REQUIRED_FIELDS:
            continue
        parser.add_argument(
            _option(name),
            dest=name,
            type=field.annotation if field.annotation in (int, float) else str,
            default=None,
            metavar=name.upper(),
            help=f"{(field.description or name).rstrip('.')} (default: {field.default})",
        )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace DIR if it already holds files"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: numpy, pyarrow and tqdm are not needed for `phoenix --help`.
    from phoenix.world.generate import generate_world
    from phoenix.world.io import load_world

    spec = build_spec(args)
    started = time.perf_counter()
    out = generate_world(spec, args.out, progress=not args.no_progress, overwrite=args.overwrite)
    world = load_world(out)
    for name, rows in world.meta["row_counts"].items():
        log.info("%-15s %9d rows", name, rows)
    log.info(
        "world (seed %d, %d users, %d authors) written to %s in %.1f s",
        spec.seed,
        spec.num_users,
        spec.num_authors,
        out,
        time.perf_counter() - started,
    )
    return 0


def build_spec(args: argparse.Namespace) -> WorldSpec:
    """The `WorldSpec` of the parsed options; invalid values raise `ConfigError` naming them."""
    values = {
        name: getattr(args, name)
        for name in WorldSpec.model_fields
        if getattr(args, name, None) is not None
    }
    try:
        return WorldSpec(**values)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from exc


_FIELD_NAMES = re.compile(r"\b(" + "|".join(WorldSpec.model_fields) + r")\b")


def _option(field: str) -> str:
    return "--" + field.replace("_", "-")


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        where = _option(loc[0]) if loc else "world spec"
        message = re.sub(r"^Value error, ", "", err["msg"])
        message = _FIELD_NAMES.sub(lambda m: _option(m.group(0)), message)
        parts.append(f"{where}: {message}")
    return "invalid world: " + "; ".join(parts)
