"""`phoenix train`: train the ranker and both retrieval towers on a synthetic world, the durable
store of a data directory, or dataset files (export/training/sources.py)."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from pydantic import ValidationError

from phoenix.cli.options import option_errors
from phoenix.errors import ConfigError

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train the ranker and the retrieval towers on a world, a store or dataset files",
        description="Train the Phoenix ranker (binary cross-entropy on the X action columns of "
        "the named actions for impressions after the time cutoff, dwell time in seconds as "
        "regression) and the two retrieval towers "
        "(in-batch softmax, favorites as positives), then write a checkpoint directory "
        "(config.json + model.safetensors). Held-out impressions are never trained on. "
        "The data is one of: a synthetic world (--world), the durable store a 'phoenix serve "
        "--data' or 'phoenix load --data' keeps (--data: everything stored, writes made through "
        "the service included; engagements with deleted posts are left out), or Parquet / JSON "
        "Lines table files checked row by row as 'phoenix load' checks them (--files: a bad row "
        "is refused naming file, row and field, exit status 2; docs/DATA.md). The impressions "
        "of the last --holdout-hours before 'now' are the targets: 'now' is the world's now_ms, "
        "the store's clock, or the files' (a world directory's now_ms, else the current time), "
        "unless --now-ms says otherwise. The checkpoint's metadata names the source and its "
        "'now', so 'phoenix eval' rebuilds the same split.",
        epilog="examples: phoenix train --world runs/world --out runs/checkpoint-tiny\n"
        "          phoenix train --data runs/data --out runs/checkpoint-tiny\n"
        "          phoenix train --files users.jsonl follows.jsonl posts.parquet "
        "engagements.parquet --out runs/checkpoint-tiny",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_source_options(p)
    p.add_argument("--config", default="tiny", help="preset (tiny, mini, nano, prod) or JSON file")
    p.add_argument("--out", required=True, type=Path, help="checkpoint directory to write")
    p.add_argument("--steps", type=int, default=600, help="ranker steps (default 600)")
    p.add_argument("--retrieval-steps", type=int, default=200, help="tower steps (default 200)")
    p.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        help="wall-clock budget for both stages together; training stops early when it is spent",
    )
    p.add_argument("--batch-viewers", type=int, default=32, help="viewers per ranker batch")
    p.add_argument("--candidates", type=int, default=32, help="impressions per viewer per batch")
    p.add_argument("--lr", type=float, default=1e-2, help="peak learning rate (AdamW)")
    p.add_argument("--holdout-hours", type=float, default=24.0, help="target window length")
    p.add_argument("--test-fraction", type=float, default=0.2, help="targets held out for eval")
    p.add_argument("--seed", type=int, default=0, help="initialisation and sampling seed")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="hide the file-reading progress bars")
    p.set_defaults(handler=_run)


def add_source_options(p: argparse.ArgumentParser) -> None:
    """--world / --data / --files (exactly one) and --now-ms: shared with `phoenix eval`."""
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--world", type=Path, metavar="DIR", help="world directory (phoenix world)")
    source.add_argument(
        "--data",
        type=Path,
        metavar="DIR",
        help="data directory of the durable store ('phoenix serve --data', 'phoenix load --data')",
    )
    source.add_argument(
        "--files",
        type=Path,
        nargs="+",
        metavar="FILE_OR_DIR",
        help="table files (users.jsonl, posts.parquet...) or directories of them (docs/DATA.md)",
    )
    p.add_argument(
        "--now-ms",
        type=int,
        default=None,
        metavar="MS",
        help="the 'now' in Unix ms the held-out window ends at (default: the source's)",
    )


def source_of(args: argparse.Namespace) -> tuple[str, list[Path]]:
    """(kind, paths) of the source the options name."""
    if args.world is not None:
        return "world", [args.world]
    if args.data is not None:
        return "data", [args.data]
    return "files", list(args.files)


def _run(args: argparse.Namespace) -> int:
    import torch

    from export.checkpoint import save_checkpoint
    from export.training.data import SplitSpec, build_training_data
    from export.training.sources import open_source
    from export.training.trainer import TrainSettings, train
    from phoenix.config import get_config

    try:
        settings = TrainSettings(
            ranker_steps=args.steps,
            retrieval_steps=args.retrieval_steps,
            max_seconds=args.max_seconds,
            viewers_per_batch=args.batch_viewers,
            candidates_per_viewer=args.candidates,
            learning_rate=args.lr,
            seed=args.seed,
        )
        split = SplitSpec(
            holdout_hours=args.holdout_hours, test_fraction=args.test_fraction, seed=args.seed
        )
    except ValidationError as exc:
        raise ConfigError(option_errors(exc, _OPTION_NAMES)) from exc
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError("--threads must be at least 1")
        torch.set_num_threads(args.threads)

    config = get_config(args.config)
    kind, paths = source_of(args)
    started = time.perf_counter()
    world, source = open_source(kind, paths, now_ms=args.now_ms, progress=not args.no_progress)
    data = build_training_data(world, config, split)
    log.info(
        "%s %s: %d viewers, %d training and %d held-out impressions",
        kind, " ".join(map(str, paths)), len(data.viewer_ids), len(data.train), len(data.test),
    )  # fmt: skip
    if len(data.train) == 0:
        raise ConfigError(
            f"no impressions to train on in the last {args.holdout_hours:g} hours before "
            f"now_ms {source.now_ms}: see --holdout-hours and --now-ms"
        )
    checkpoint, results = train(data, settings)
    checkpoint.metadata = {
        "source": source.metadata(),
        "world_seed": world.meta.get("seed"),
        "split": split.model_dump(),
        "train": settings.model_dump(),
        "results": {name: vars(r) for name, r in results.items()},
        "seconds": round(time.perf_counter() - started, 1),
        "torch": torch.__version__,
    }
    save_checkpoint(checkpoint, args.out)
    log.info("wrote checkpoint %s", args.out)
    return 0


#: Settings fields whose option name differs from `--field-name`.
_OPTION_NAMES = {
    "ranker_steps": "--steps",
    "viewers_per_batch": "--batch-viewers",
    "candidates_per_viewer": "--candidates",
    "learning_rate": "--lr",
}
