"""Reading a checkpoint written by X's own trainer (xai-org/x-algorithm, `phoenix/xrex`).

X's trainer saves under `<config>/elapsed_samples_<n>/<run>/`:

- `checksums.0.json`: for every leaf of the training state its shape, dtype (NumPy's `dtype.str`,
  so bfloat16 is `<V2`), sharding, one Adler-32 per device shard and one over the whole array;
- `orbax-ckpt/`: an Orbax PyTree checkpoint, i.e. one zarr3 array per leaf, named by the leaf's
  keys joined with '.', inside an OCDBT key-value store, plus `_METADATA`, the tree's leaf keys.

Only the model parameters (`params.<haiku module>.<name>`) and the shared embedding table
(`emb_table`) are read; the optimizer state is ignored. TensorStore reads the arrays directly, so
neither JAX nor Orbax is needed. Every leaf read is checked against the checksum file (shape,
dtype, global and per-shard Adler-32, computed over the array's bytes exactly as X's writer does)
before it is returned; any disagreement is a `CheckpointImportError` that names the leaf or file.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from phoenix.errors import CheckpointImportError

#: The tag X's writer gives the Orbax directory inside a run directory.
ORBAX_DIR = "orbax-ckpt"
#: Only process 0 writes the checksum file (X: `train/checkpoint_write.py`).
CHECKSUM_FILE = "checksums.0.json"
METADATA_FILE = "_METADATA"
#: The only checksum file format that records whole-array checksums.
CHECKSUM_VERSION = 3
EMB_TABLE = "emb_table"
_PARAMS = "params"
_STEP_DIR = re.compile(r"elapsed_samples_(\d+)")


@dataclass(frozen=True)
class XCheckpoint:
    """The model parameters of one X checkpoint, verified against X's own checksums.

    `params` is keyed by X's haiku names, '<module>/<name>' (e.g. `~/user_hash_0_proj`,
    `transformer/layer_stack/decoder_layer_0/multi_head_attention/qkv/w`). bfloat16 leaves (the
    embedding table) are widened to float32, which is exact; every other leaf keeps its dtype.
    `checksums` maps each leaf read, by its name in `checksums.0.json`, to its whole-array Adler-32.
    """

    config_name: str
    step: int
    run: str
    path: Path
    params: Mapping[str, np.ndarray]
    emb_table: np.ndarray
    checksums: Mapping[str, int]


# Locating the checkpoint -------------------------------------------------------------------------


def _runs(step_dir: Path) -> list[Path]:
    return sorted(d for d in step_dir.iterdir() if (d / ORBAX_DIR).is_dir())


def _only_run(step_dir: Path) -> Path:
    runs = _runs(step_dir)
    if not runs:
        raise CheckpointImportError(f"{step_dir}: no <run>/{ORBAX_DIR} directory in it")
    if len(runs) > 1:
        names = ", ".join(r.name for r in runs)
        raise CheckpointImportError(
            f"{step_dir}: several runs ({names}); pass the run directory you mean"
        )
    return runs[0]


def _latest_step_dir(config_dir: Path) -> Path:
    steps = [
        (int(m.group(1)), d)
        for d in config_dir.iterdir()
        if d.is_dir() and (m := _STEP_DIR.fullmatch(d.name)) and _runs(d)
    ]
    if not steps:
        raise CheckpointImportError(
            f"{config_dir}: no X checkpoint below it (expected "
            f"elapsed_samples_<n>/<run>/{ORBAX_DIR})"
        )
    return max(steps)[1]


def _has_steps(path: Path) -> bool:
    return any(d.is_dir() and _STEP_DIR.fullmatch(d.name) for d in path.iterdir())


def _orbax_dir(path: Path) -> Path:
    """The `orbax-ckpt` directory meant by `path`, which may be any level of X's layout, down from
    the trainer's output directory (`<out>/<config>/...`, when it holds one config only)."""
    if path.name == ORBAX_DIR or (path / METADATA_FILE).exists():
        return path
    if (path / ORBAX_DIR).is_dir():
        return path / ORBAX_DIR
    if _STEP_DIR.fullmatch(path.name):
        return _only_run(path) / ORBAX_DIR
    if not _has_steps(path):
        configs = sorted(d for d in path.iterdir() if d.is_dir() and _has_steps(d))
        if len(configs) > 1:
            names = ", ".join(c.name for c in configs)
            raise CheckpointImportError(
                f"{path}: checkpoints of several configs ({names}); pass the one you mean"
            )
        if configs:
            path = configs[0]
    return _only_run(_latest_step_dir(path)) / ORBAX_DIR


# Reading the JSON files --------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointImportError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointImportError(f"{path}: unreadable ({e})") from e


def _model_leaves(metadata: Any, path: Path) -> dict[str, tuple[str, ...]]:
    """Leaf name ('.'-joined keys, as Orbax names the arrays) -> keys, for params and emb_table."""
    try:
        if metadata.get("use_zarr3") is not True:
            raise CheckpointImportError(f"{path}: not a zarr3 checkpoint (X's writer uses zarr3)")
        leaves = {}
        for entry in metadata["tree_metadata"].values():
            keys = tuple(str(k["key"]) for k in entry["key_metadata"])
            if keys == (EMB_TABLE,) or (len(keys) > 1 and keys[0] == _PARAMS):
                leaves[".".join(keys)] = keys
    except (AttributeError, KeyError, TypeError) as e:
        raise CheckpointImportError(f"{path}: malformed tree metadata ({e!r})") from e
    return leaves


def _checksum_table(doc: Any, path: Path) -> dict[str, dict[str, Any]]:
    """Leaf name -> its shape, dtype, sharding and checksums from X's checksum file."""
    if not isinstance(doc, dict) or doc.get("version") != CHECKSUM_VERSION:
        version = doc.get("version") if isinstance(doc, dict) else None
        raise CheckpointImportError(
            f"{path}: checksum file version {version!r}, expected {CHECKSUM_VERSION}"
        )
    fields = ("shapes", "dtypes", "shardings", "shard_checksums", "global_checksums")
    if any(not isinstance(doc.get(f), dict) for f in fields):
        raise CheckpointImportError(f"{path}: needs the fields {', '.join(fields)}")
    return {
        name: {f: doc[f][name] for f in fields if name in doc[f]}
        for name in doc["global_checksums"].keys() | doc["shapes"].keys()
    }


# Checksums ---------------------------------------------------------------------------------------


def adler32(array: np.ndarray) -> int:
    """X's checksum of an array: zlib's Adler-32 of its bytes in C order, in its own dtype."""
    return zlib.adler32(np.ascontiguousarray(array).tobytes())


def shard_slices(
    shape: Sequence[int], spec: Sequence[Any], mesh: Mapping[str, int]
) -> list[tuple[slice, ...]]:
    """The part of an array each device of `mesh` holds under the partition `spec`.

    Devices are numbered row-major over the mesh axes in their recorded order. A dimension whose
    spec entry names axes (one name or a list) is split into as many equal blocks as those axes
    have devices together, the first named axis being the major one.
    """
    axes = list(mesh)
    sizes = [int(mesh[a]) for a in axes]
    entries = list(spec) + [None] * (len(shape) - len(spec))
    out = []
    for device in range(math.prod(sizes)):
        coords = dict(zip(axes, np.unravel_index(device, sizes) if sizes else (), strict=True))
        slices = []
        for dim, entry in zip(shape, entries, strict=True):
            names = [] if entry is None else [entry] if isinstance(entry, str) else list(entry)
            block, count = 0, 1
            for name in names:
                block = block * int(mesh[name]) + int(coords[name])
                count *= int(mesh[name])
            size = -(-dim // count)
            slices.append(slice(min(dim, block * size), min(dim, (block + 1) * size)))
        out.append(tuple(slices))
    return out


def _verify(name: str, array: np.ndarray, record: Mapping[str, Any], source: Path) -> None:
    """Check one leaf against its record in the checksum file, as X's restore does."""
    where = f"leaf {name!r} ({source})"
    if "shapes" not in record or "dtypes" not in record or "global_checksums" not in record:
        raise CheckpointImportError(f"{where}: incomplete record in {CHECKSUM_FILE}")
    if list(array.shape) != list(record["shapes"]):
        raise CheckpointImportError(
            f"{where}: shape {list(array.shape)} but {CHECKSUM_FILE} records {record['shapes']}"
        )
    if array.dtype.str != record["dtypes"]:
        raise CheckpointImportError(
            f"{where}: dtype {array.dtype.str} ({array.dtype}) but {CHECKSUM_FILE} records "
            f"{record['dtypes']}"
        )
    got = adler32(array)
    if got != record["global_checksums"]:
        raise CheckpointImportError(
            f"{where}: Adler-32 0x{got:08x} but {CHECKSUM_FILE} records "
            f"0x{int(record['global_checksums']) & 0xFFFFFFFF:08x}"
        )
    sharding, shard_sums = record.get("shardings"), record.get("shard_checksums")
    if not sharding or not sharding.get("mesh") or shard_sums is None:
        return
    try:
        parts = shard_slices(array.shape, sharding["spec"], sharding["mesh"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointImportError(f"{where}: malformed sharding {sharding} ({e!r})") from e
    if len(parts) != len(shard_sums):
        raise CheckpointImportError(
            f"{where}: {len(shard_sums)} shard checksums for a mesh of {len(parts)} devices"
        )
    for device, (part, want) in enumerate(zip(parts, shard_sums, strict=True)):
        if (got := adler32(array[part])) != want:
            raise CheckpointImportError(
                f"{where}: shard of device {device} has Adler-32 0x{got:08x} but "
                f"{CHECKSUM_FILE} records 0x{int(want) & 0xFFFFFFFF:08x}"
            )


# Reading the arrays ------------------------------------------------------------------------------


def _read_arrays(orbax_dir: Path, names: Sequence[str]) -> dict[str, np.ndarray]:
    import tensorstore as ts  # only the importer needs it

    if not (orbax_dir / "manifest.ocdbt").is_file():
        raise CheckpointImportError(f"{orbax_dir}: no manifest.ocdbt (not an OCDBT checkpoint)")
    context = ts.Context()  # one OCDBT store and cache for every leaf
    base = {"driver": "file", "path": str(orbax_dir.resolve()) + "/"}
    arrays = {}
    for name in names:
        spec = {"driver": "zarr3", "kvstore": {"driver": "ocdbt", "base": base, "path": name}}
        try:
            store = ts.open(spec, context=context, open=True, read=True).result()
            arrays[name] = np.asarray(store.read().result())
        except (ValueError, RuntimeError, OSError) as e:
            raise CheckpointImportError(f"leaf {name!r} ({orbax_dir}): unreadable ({e})") from e
    return arrays


def read_x_checkpoint(path: str | Path) -> XCheckpoint:
    """Read and verify the parameters of an X checkpoint.

    `path` may be X's config directory (the newest `elapsed_samples_<n>` is taken) or the
    directory above it, one `elapsed_samples_<n>` directory, a run directory or its `orbax-ckpt`
    directory. Several configs, or several runs under the chosen step, are ambiguous and refused.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointImportError(f"{path}: no such directory")
    orbax_dir = _orbax_dir(path)
    run_dir = orbax_dir.parent.resolve()
    step = _STEP_DIR.fullmatch(run_dir.parent.name)
    if step is None:
        raise CheckpointImportError(
            f"{orbax_dir}: not in X's layout <config>/elapsed_samples_<n>/<run>/{ORBAX_DIR}"
        )

    checksum_path = run_dir / CHECKSUM_FILE
    records = _checksum_table(_read_json(checksum_path), checksum_path)
    leaves = _model_leaves(_read_json(orbax_dir / METADATA_FILE), orbax_dir / METADATA_FILE)
    recorded = {n for n in records if n == EMB_TABLE or n.startswith(_PARAMS + ".")}
    if missing := sorted(recorded - leaves.keys()):
        raise CheckpointImportError(
            f"{orbax_dir / METADATA_FILE}: leaf {missing[0]!r} (recorded in {CHECKSUM_FILE}) is "
            f"missing" + (f", and {len(missing) - 1} more" if len(missing) > 1 else "")
        )
    if unrecorded := sorted(leaves.keys() - recorded):
        raise CheckpointImportError(
            f"{checksum_path}: no checksum for leaf {unrecorded[0]!r}"
            + (f", and {len(unrecorded) - 1} more" if len(unrecorded) > 1 else "")
        )
    if EMB_TABLE not in leaves:
        raise CheckpointImportError(f"{orbax_dir}: no {EMB_TABLE!r} leaf")

    arrays = _read_arrays(orbax_dir, sorted(leaves))
    for name, array in arrays.items():
        _verify(name, array, records[name], orbax_dir)

    def widened(array: np.ndarray) -> np.ndarray:
        return array.astype(np.float32) if array.dtype.name == "bfloat16" else array

    return XCheckpoint(
        config_name=run_dir.parent.parent.name,
        step=int(step.group(1)),
        run=run_dir.name,
        path=run_dir,
        params={
            "/".join(keys[1:]): widened(arrays[name])
            for name, keys in sorted(leaves.items())
            if keys[0] == _PARAMS
        },
        emb_table=widened(arrays[EMB_TABLE]),
        checksums={name: int(records[name]["global_checksums"]) for name in sorted(leaves)},
    )
