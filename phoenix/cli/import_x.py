"""`phoenix import`: a checkpoint written by X's trainer -> a project checkpoint."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from phoenix.errors import ConfigError

log = logging.getLogger(__name__)


def _table_sizes(text: str) -> tuple[int, int, int, int]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected U,I,A,IP integers, got {text!r}") from None
    if len(values) != 4 or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected four non-negative integers U,I,A,IP: {text!r}")
    return values  # type: ignore[return-value]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "import",
        help="import X's own ranker checkpoint (and two-tower) into a project checkpoint",
        description="Read a checkpoint written by X's trainer (xai-org/x-algorithm, "
        "<config>/elapsed_samples_*/<run>/orbax-ckpt with checksums.*.json; any level of that "
        "path), verify X's Adler-32 checksums, map X's parameters onto the project's modules "
        "bit-exactly and write a project checkpoint (config.json + model.safetensors) whose "
        "metadata records the source, step and checksums. The geometry comes from the "
        "checkpoint's shapes and the named X preset. With --verify, the imported model runs on "
        "each golden file's inputs (X's field names, at the file's own history length) and the "
        "largest difference per output and variant is printed; beyond tolerance nothing is "
        "written and the exit status is non-zero. See docs/FIDELITY.md.",
    )
    p.add_argument("checkpoint", type=Path, help="X's checkpoint directory (any level)")
    p.add_argument("--out", required=True, type=Path, help="project checkpoint directory to write")
    p.add_argument(
        "--history-len",
        type=int,
        default=None,
        help="history length the model is served with (not stored in X's checkpoint; default: "
        "X's preset for the named config, 1022 for home_direct_packed_nano)",
    )
    p.add_argument(
        "--table-sizes",
        type=_table_sizes,
        default=None,
        metavar="U,I,A,IP",
        help="the table's user, post, author and IP block sizes when the run overrode X's preset "
        "(default: the preset's, or those a --verify golden file records)",
    )
    p.add_argument(
        "--retrieval",
        type=Path,
        default=None,
        help="X's two-tower checkpoint for the retrieval towers (default: fresh towers)",
    )
    p.add_argument(
        "--verify",
        type=Path,
        nargs="+",
        default=[],
        metavar="GOLDEN.npz",
        help="golden files (input/..., output/<variant>/...) to check the imported model against",
    )
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from export.importer.x_import import GoldenMismatch, import_x_checkpoint

    if args.history_len is not None and args.history_len < 1:
        raise ConfigError("--history-len must be at least 1")
    for path in args.verify:
        if not path.is_file():
            raise ConfigError(f"--verify: {path} is not a file")
    start = time.perf_counter()
    try:
        checkpoint, comparisons = import_x_checkpoint(
            args.checkpoint,
            args.out,
            history_len=args.history_len,
            table_sizes=args.table_sizes,
            retrieval=args.retrieval,
            verify=args.verify,
        )
    except GoldenMismatch as exc:
        _print(exc.comparisons)
        raise
    _print(comparisons)
    config = checkpoint.config
    print(
        f"imported {checkpoint.metadata['imported_from']['config']} step "
        f"{checkpoint.metadata['imported_from']['step']}: D={config.emb_dim}, "
        f"{config.num_layers} layers, {config.num_q_heads}/{config.num_kv_heads} heads, "
        f"table {config.table_rows}x{config.hash_width}, history {config.history_len} "
        f"-> {args.out} in {time.perf_counter() - start:.2f} s"
    )
    return 0


def _print(comparisons: list) -> None:  # type: ignore[type-arg]
    for c in comparisons:
        verdict = "ok" if c.ok else "FAIL"
        print(
            f"{c.file:<32} {c.variant:<11} {c.output:<20} max|diff| {c.max_abs_diff:.3g} "
            f"(tolerance {c.tolerance:.3g}) {verdict}"
        )
