"""`phoenix eval`: held-out metrics of a checkpoint beside an untrained model's."""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict
from pathlib import Path

from phoenix.cli.train import add_source_options, source_of
from phoenix.errors import ConfigError

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="per-action AUC and retrieval recall@K on held-out impressions",
        description="Rebuild the checkpoint's train/test split of the data (saved in its "
        "config.json: a world, a data directory's store or dataset files, as 'phoenix train' "
        "reads them; on the source it was trained on, at the same 'now'), then print the "
        "ranker's AUC for every action and the retrieval towers' "
        "recall@K of held-out favorites over the whole post corpus, for the trained model and "
        "for an untrained one with the same architecture (the baseline: AUC near 0.5).",
    )
    add_source_options(p)
    p.add_argument("--checkpoint", required=True, type=Path, help="checkpoint directory")
    p.add_argument("--k", type=int, nargs="+", default=[10, 100], help="K values for recall@K")
    p.add_argument("--json", type=Path, default=None, help="also write the reports as JSON")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from export.checkpoint import Checkpoint, load_checkpoint
    from export.training.data import SplitSpec, build_training_data
    from export.training.evaluate import evaluate, format_comparison
    from export.training.sources import open_source

    if any(k < 1 for k in args.k):
        raise ConfigError("--k: every K must be at least 1")
    trained = load_checkpoint(args.checkpoint)
    split = SplitSpec.model_validate(trained.metadata.get("split", {}))
    seed = trained.metadata.get("train", {}).get("seed", 0)
    untrained = Checkpoint.initialise(trained.config, seed=seed)
    untrained.ranker.eval()
    untrained.retrieval.eval()

    kind, paths = source_of(args)
    world, _ = open_source(kind, paths, now_ms=_now_ms(args, kind, paths, trained.metadata))
    data = build_training_data(world, trained.config, split)
    ks = tuple(sorted(set(args.k)))
    reports = {"trained": evaluate(trained, data, ks), "untrained": evaluate(untrained, data, ks)}
    print(format_comparison(reports["trained"], reports["untrained"]))
    if args.json:
        args.json.write_text(json.dumps({k: asdict(v) for k, v in reports.items()}, indent=2))
        log.info("wrote %s", args.json)
    return 0


def _now_ms(args: argparse.Namespace, kind: str, paths: list[Path], metadata: dict) -> int | None:
    """--now-ms, else the checkpoint's "now" when this is the source it was trained on (a store
    or files without a fixed "now" would otherwise move the held-out window), else the source's."""
    if args.now_ms is not None:
        return args.now_ms
    trained_on = metadata.get("source", {})
    same = trained_on.get("kind") == kind and trained_on.get("paths") == [
        str(p.resolve()) for p in paths
    ]
    return trained_on.get("now_ms") if same else None
