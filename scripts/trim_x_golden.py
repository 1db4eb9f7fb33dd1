"""Make the repository's X reference test data from the full reference set.

The full set (golden files made by running X's own code, and a checkpoint written by X's own
writer) is too large to ship. This keeps what the tests need:

- `orbax_ckpt/`: the checkpoint directory tree, copied as it is;
- `{ranker,two_tower}_golden_{full,padded}.npz`: every `input/...` (less the serving gather
  `input/merged_*`), `meta/...` and `ids/...`; for the ranker, the candidates' outputs of every
  variant and two parameters as a cross-check of the checkpoint (the rest come from it); for the
  two-tower model, every parameter, the embedding table and the embeddings and scores.

Usage: python scripts/trim_x_golden.py SOURCE_DIR [--out tests/data/x_reference]
Run by hand when the reference set changes; nothing imports this file.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

RANKER_OUTPUTS = ("logits_cand", "continuous_cand", "serving_log_probs_cand")
RANKER_PARAMS = (
    "param/recsys_aggregated_model/final_layer_norm/scale",
    "param/~/hist_dwell_time_vec",
)
TWO_TOWER_OUTPUTS = (
    "user_embedding",
    "candidate_embedding",
    "candidate_tower_from_lookups",
    "scores_f32",
)


def _common(key: str) -> bool:
    if key.startswith("input/merged_"):
        return False
    return key.startswith(("input/", "meta/", "ids/"))


def keep_ranker(key: str) -> bool:
    parts = key.split("/")
    if parts[0] == "output":
        return len(parts) == 3 and parts[2] in RANKER_OUTPUTS
    return _common(key) or key in RANKER_PARAMS


def keep_two_tower(key: str) -> bool:
    parts = key.split("/")
    if parts[0] == "output":
        return len(parts) == 3 and parts[2] in TWO_TOWER_OUTPUTS
    return _common(key) or key == "emb_table" or parts[0] == "param"


#: source file stem -> (kept file stem, which keys to keep)
FILES: dict[str, tuple[str, Callable[[str], bool]]] = {
    "ranker_golden_seed0_full": ("ranker_golden_full", keep_ranker),
    "ranker_golden_seed0_padded": ("ranker_golden_padded", keep_ranker),
    "two_tower_golden_seed0_full": ("two_tower_golden_full", keep_two_tower),
    "two_tower_golden_seed0_padded": ("two_tower_golden_padded", keep_two_tower),
}


def trim(source: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for stem, (kept_stem, keep) in FILES.items():
        with np.load(source / f"{stem}.npz", allow_pickle=False) as golden:
            kept = {k: golden[k] for k in golden.files if keep(k)}
        target = out / f"{kept_stem}.npz"
        np.savez_compressed(target, **kept)
        print(f"{target}: {len(kept)} arrays, {target.stat().st_size / 1e6:.2f} MB")
    ckpt = out / "orbax_ckpt"
    if ckpt.exists():
        shutil.rmtree(ckpt)
    shutil.copytree(source / "orbax_ckpt", ckpt, copy_function=shutil.copyfile)
    for d in (ckpt, *ckpt.rglob("*")):
        if d.is_dir():  # copytree copies the source's (read-only) directory modes
            d.chmod(0o755)
    size = sum(f.stat().st_size for f in ckpt.rglob("*") if f.is_file())
    print(f"{ckpt}: {size / 1e6:.2f} MB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="directory of the full X reference set")
    parser.add_argument(
        "--out", type=Path, default=Path("tests/data/x_reference"), help="where to write"
    )
    args = parser.parse_args(argv)
    trim(args.source, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
