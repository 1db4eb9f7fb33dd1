"""`phoenix eval`: held-out metrics of a checkpoint beside an untrained model's."""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict
from pathlib import Path

from phoenix.errors import ConfigError

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="per-action AUC and retrieval recall@K on held-out impressions",
        description="Rebuild the checkpoint's train/test split of the world (saved in its "
        "config.json), then print the ranker's AUC for every action and the retrieval towers' "
        "recall@K of held-out favorites over the whole post corpus, for the trained model and "
        "for an untrained one with the same architecture (the baseline: AUC near 0.5).",
    )
    p.add_argument("--world", required=True, type=Path, help="world directory (phoenix world)")
    p.add_argument("--checkpoint", required=True, type=Path, help="checkpoint directory")
    p.add_argument("--k", type=int, nargs="+", default=[10, 100], help="K values for recall@K")
    p.add_argument("--json", type=Path, default=None, help="also write the reports as JSON")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from export.checkpoint import Checkpoint, load_checkpoint
    from export.training.data import SplitSpec, build_training_data
    from export.training.evaluate import evaluate, format_comparison
    from phoenix.world.io import load_world

    if any(k < 1 for k in args.k):
        raise ConfigError("--k: every K must be at least 1")
    trained = load_checkpoint(args.checkpoint)
    split = SplitSpec.model_validate(trained.metadata.get("split", {}))
    seed = trained.metadata.get("train", {}).get("seed", 0)
    untrained = Checkpoint.initialise(trained.config, seed=seed)
    untrained.ranker.eval()
    untrained.retrieval.eval()

    data = build_training_data(load_world(args.world), trained.config, split)
    ks = tuple(sorted(set(args.k)))
    reports = {"trained": evaluate(trained, data, ks), "untrained": evaluate(untrained, data, ks)}
    print(format_comparison(reports["trained"], reports["untrained"]))
    if args.json:
        args.json.write_text(json.dumps({k: asdict(v) for k, v in reports.items()}, indent=2))
        log.info("wrote %s", args.json)
    return 0
