"""`phoenix train`: train the ranker and both retrieval towers on a synthetic world."""

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
        help="train the ranker and the retrieval towers on a world",
        description="Train the Phoenix ranker (binary cross-entropy on the X action columns of "
        "the named actions for impressions after the time cutoff, dwell time in seconds as "
        "regression) and the two retrieval towers "
        "(in-batch softmax, favorites as positives), then write a checkpoint directory "
        "(config.json + model.safetensors). Held-out impressions are never trained on.",
    )
    p.add_argument("--world", required=True, type=Path, help="world directory (phoenix world)")
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
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    import torch

    from export.checkpoint import save_checkpoint
    from export.training.data import SplitSpec, build_training_data
    from export.training.trainer import TrainSettings, train
    from phoenix.config import get_config
    from phoenix.world.io import load_world

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
    world = load_world(args.world)
    started = time.perf_counter()
    data = build_training_data(world, config, split)
    log.info(
        "world %s: %d viewers, %d training and %d held-out impressions",
        args.world, len(data.viewer_ids), len(data.train), len(data.test),
    )  # fmt: skip
    checkpoint, results = train(data, settings)
    checkpoint.metadata = {
        "world": str(args.world.resolve()),
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
