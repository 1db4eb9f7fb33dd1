"""`export.importer.read_x_checkpoint` on a real checkpoint written by X's own writer.

The expected values come from other files than the ones the reader parses where possible: the
parameter names from `checksums.0.json` (the reader names them from `_METADATA`), the parameter
values from X's golden file, the checksums recomputed here with zlib over the stored dtype.
"""

from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from export.importer import XCheckpoint, read_x_checkpoint
from export.importer.x_checkpoint import shard_slices
from phoenix.errors import CheckpointError, CheckpointImportError

DATA = Path(__file__).parents[1] / "data" / "x_reference"
ROOT = DATA / "orbax_ckpt"
CONFIG = "home_direct_packed_nano_offline_kafka_dump"
STEP_DIR = "elapsed_samples_000000000000000000"
RUN = "golden-run-0"
RUN_DIR = ROOT / CONFIG / STEP_DIR / RUN


@pytest.fixture(scope="module")
def ckpt() -> XCheckpoint:
    return read_x_checkpoint(RUN_DIR)


@pytest.fixture(scope="module")
def recorded() -> dict:
    return json.loads((RUN_DIR / "checksums.0.json").read_text())


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A writable copy of the checkpoint tree; returns its run directory."""
    shutil.copytree(ROOT, tmp_path / "out", copy_function=shutil.copyfile)
    return tmp_path / "out" / CONFIG / STEP_DIR / RUN


def _haiku_name(leaf: str) -> str:
    module, name = leaf.removeprefix("params.").rsplit(".", 1)
    return f"{module}/{name}"


def _stored(ckpt: XCheckpoint, leaf: str, recorded: dict) -> np.ndarray:
    """The leaf as X stored it (bfloat16 leaves narrowed back, which is exact)."""
    array = ckpt.emb_table if leaf == "emb_table" else ckpt.params[_haiku_name(leaf)]
    if recorded["dtypes"][leaf] == np.dtype(ml_dtypes.bfloat16).str:
        narrowed = array.astype(ml_dtypes.bfloat16)
        assert np.array_equal(narrowed.astype(np.float32), array)
        return narrowed
    return array


# The real checkpoint --------------------------------------------------------------------------


def test_the_layout_is_parsed(ckpt: XCheckpoint) -> None:
    assert ckpt.config_name == CONFIG
    assert ckpt.step == 0
    assert ckpt.run == RUN
    assert ckpt.path == RUN_DIR.resolve()


def test_every_param_of_the_checksum_file_is_read_under_its_haiku_name(
    ckpt: XCheckpoint, recorded: dict
) -> None:
    leaves = [k for k in recorded["shapes"] if k.startswith("params.")]
    assert sorted(ckpt.params) == sorted(_haiku_name(k) for k in leaves)
    assert "~/user_hash_0_proj" in ckpt.params
    assert "transformer/layer_stack/decoder_layer_0/multi_head_attention/qkv/w" in ckpt.params
    for leaf in leaves:
        array = ckpt.params[_haiku_name(leaf)]
        assert list(array.shape) == recorded["shapes"][leaf], leaf
        assert array.dtype.str == recorded["dtypes"][leaf], leaf
    assert list(ckpt.emb_table.shape) == recorded["shapes"]["emb_table"]


def test_every_checksum_verifies(ckpt: XCheckpoint, recorded: dict) -> None:
    leaves = ["emb_table", *(k for k in recorded["shapes"] if k.startswith("params."))]
    assert dict(ckpt.checksums) == {k: recorded["global_checksums"][k] for k in leaves}
    for leaf in leaves:
        stored = _stored(ckpt, leaf, recorded)
        assert zlib.adler32(stored.tobytes()) == recorded["global_checksums"][leaf], leaf
        assert [zlib.adler32(stored.tobytes())] == recorded["shard_checksums"][leaf], leaf


def test_the_embedding_table_is_bf16_stored_and_widened_exactly(
    ckpt: XCheckpoint, recorded: dict
) -> None:
    assert recorded["dtypes"]["emb_table"] == "<V2"  # X's dtype string for bfloat16
    assert ckpt.emb_table.dtype == np.float32
    assert not np.any(ckpt.emb_table.view(np.uint32) & 0xFFFF)  # bf16 values only
    assert np.all(ckpt.emb_table[0] == 0)  # X's trainer zeroes the padding row
    assert np.count_nonzero(ckpt.emb_table[1:]) > 0.9 * ckpt.emb_table[1:].size


@pytest.mark.parametrize("variant", ["full", "padded"])
def test_params_kept_in_the_golden_file_are_bit_exact(ckpt: XCheckpoint, variant: str) -> None:
    with np.load(DATA / f"ranker_golden_{variant}.npz", allow_pickle=False) as golden:
        kept = {k.removeprefix("param/"): golden[k] for k in golden.files if k.startswith("param/")}
    assert sorted(kept) == [
        "recsys_aggregated_model/final_layer_norm/scale",
        "~/hist_dwell_time_vec",
    ]
    for name, want in kept.items():
        got = ckpt.params[name]
        assert got.dtype == want.dtype and got.shape == want.shape, name
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), name


# Finding the checkpoint ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "where",
    [ROOT, ROOT / CONFIG, ROOT / CONFIG / STEP_DIR, RUN_DIR, RUN_DIR / "orbax-ckpt"],
    ids=["out", "config", "step", "run", "orbax"],
)
def test_every_level_of_the_layout_finds_the_checkpoint(where: Path, ckpt: XCheckpoint) -> None:
    got = read_x_checkpoint(str(where))
    assert (got.config_name, got.step, got.run, got.path) == (
        ckpt.config_name,
        ckpt.step,
        ckpt.run,
        ckpt.path,
    )


def test_the_latest_step_is_taken(copy: Path) -> None:
    config_dir = copy.parents[1]
    later = config_dir / "elapsed_samples_000000000000004096" / "run-b"
    earlier = config_dir / "elapsed_samples_000000000000000512" / "run-c"
    shutil.copytree(copy, later)
    shutil.copytree(copy, earlier)
    (config_dir / "elapsed_samples_000000000000009999").mkdir()  # no run in it: not a checkpoint
    (config_dir / ".elapsed_samples_000000000000099999").mkdir()  # staging, not a step
    got = read_x_checkpoint(config_dir)
    assert (got.step, got.run, got.path) == (4096, "run-b", later.resolve())
    assert read_x_checkpoint(config_dir.parent).step == 4096


def test_several_runs_of_one_step_are_ambiguous(copy: Path) -> None:
    shutil.copytree(copy, copy.parent / "another-run")
    for where in (copy.parents[1], copy.parent):
        with pytest.raises(
            CheckpointImportError, match=r"several runs \(another-run, golden-run-0\)"
        ):
            read_x_checkpoint(where)
    assert read_x_checkpoint(copy).run == RUN  # naming the run resolves it


def test_several_configs_are_ambiguous(copy: Path) -> None:
    out = copy.parents[2]
    shutil.copytree(copy.parents[1], out / "xrecsys_two_tower_nano_offline_kafka_dump")
    with pytest.raises(CheckpointImportError, match="several configs"):
        read_x_checkpoint(out)


@pytest.mark.parametrize("kind", ["missing", "empty", "file"])
def test_a_path_without_a_checkpoint_is_refused(tmp_path: Path, kind: str) -> None:
    where = tmp_path / "nothing"
    if kind == "empty":
        where.mkdir()
    if kind == "file":
        where.write_text("x")
    with pytest.raises(CheckpointImportError, match="nothing"):
        read_x_checkpoint(where)


def test_an_orbax_directory_outside_xs_layout_is_refused(copy: Path, tmp_path: Path) -> None:
    loose = tmp_path / "loose" / "orbax-ckpt"
    shutil.copytree(copy / "orbax-ckpt", loose)
    with pytest.raises(CheckpointImportError, match="not in X's layout"):
        read_x_checkpoint(loose)


def test_the_error_is_a_checkpoint_error() -> None:
    assert issubclass(CheckpointImportError, CheckpointError)


# Corrupted copies ---------------------------------------------------------------------------------


def _edit_json(path: Path, edit) -> None:
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def _flip_a_byte_of(copy: Path, stored: np.ndarray) -> None:
    """Flip one byte in the middle of the leaf's bytes, wherever the store keeps them."""
    needle = stored.tobytes()
    for data_file in (copy / "orbax-ckpt").rglob("d/*"):
        blob = bytearray(data_file.read_bytes())
        at = blob.find(needle)
        if at >= 0:
            assert blob.find(needle, at + 1) < 0
            blob[at + len(needle) // 2] ^= 0x5A
            data_file.write_bytes(bytes(blob))
            return
    raise AssertionError("the leaf's bytes were not found in any data file")


@pytest.mark.parametrize("leaf", ["params.~.hist_dwell_time_vec", "emb_table"])
def test_a_flipped_byte_fails_the_leafs_checksum(
    copy: Path, ckpt: XCheckpoint, recorded: dict, leaf: str
) -> None:
    _flip_a_byte_of(copy, _stored(ckpt, leaf, recorded))
    with pytest.raises(CheckpointImportError, match=rf"leaf '{leaf}'.*Adler-32"):
        read_x_checkpoint(copy)


def test_a_leaf_missing_from_the_tree_metadata_is_named(copy: Path) -> None:
    def drop(doc: dict) -> None:
        del doc["tree_metadata"]["('params', '~', 'user_ip_hash_1_proj')"]

    _edit_json(copy / "orbax-ckpt" / "_METADATA", drop)
    with pytest.raises(CheckpointImportError, match=r"'params\.~\.user_ip_hash_1_proj'.*missing"):
        read_x_checkpoint(copy)


def test_a_leaf_without_a_recorded_checksum_is_named(copy: Path) -> None:
    def drop(doc: dict) -> None:
        for field in ("shapes", "dtypes", "shardings", "shard_checksums", "global_checksums"):
            del doc[field]["params.~.cand_post_age_emb"]

    _edit_json(copy / "checksums.0.json", drop)
    with pytest.raises(
        CheckpointImportError, match=r"no checksum for leaf 'params\.~\.cand_post_age_emb'"
    ):
        read_x_checkpoint(copy)


@pytest.mark.parametrize(
    ("field", "leaf", "value", "message"),
    [
        ("shapes", "params.~.user_hash_0_proj", [128, 255], "shape"),
        ("shapes", "emb_table", [4096], "shape"),
        ("dtypes", "params.recsys_aggregated_model.unembeddings", "<f2", "dtype"),
        ("dtypes", "emb_table", "<f4", "dtype"),
        ("global_checksums", "params.~.hist_action_emb", 12345, "Adler-32"),
        ("shard_checksums", "params.~.hist_action_emb", [12345], "shard of device 0"),
    ],
)
def test_a_changed_record_is_named(
    copy: Path, field: str, leaf: str, value: object, message: str
) -> None:
    def change(doc: dict) -> None:
        assert leaf in doc[field]
        doc[field][leaf] = value

    _edit_json(copy / "checksums.0.json", change)
    with pytest.raises(CheckpointImportError, match=rf"leaf '{leaf}'.*{message}"):
        read_x_checkpoint(copy)


def test_shard_checksums_over_a_recorded_mesh_are_checked(
    copy: Path, ckpt: XCheckpoint, recorded: dict
) -> None:
    leaf = "params.~.hist_post_age_emb"  # [82, 256]: rows split in two over 'data'
    stored = _stored(ckpt, leaf, recorded)
    top, bottom = zlib.adler32(stored[:41].tobytes()), zlib.adler32(stored[41:].tobytes())
    mesh = {"stage": 1, "expert": 1, "replica": 1, "data": 2, "seq": 1, "model": 2}
    # Devices row-major over the mesh: 0, 1 hold data block 0; 2, 3 hold block 1.
    sums = [top, top, bottom, bottom]

    def shard(doc: dict, sums: list[int]) -> None:
        doc["shardings"][leaf] = {"spec": ["data", None], "mesh": mesh}
        doc["shard_checksums"][leaf] = sums

    _edit_json(copy / "checksums.0.json", lambda d: shard(d, sums))
    read_x_checkpoint(copy)
    _edit_json(copy / "checksums.0.json", lambda d: shard(d, [top, bottom, top, bottom]))
    with pytest.raises(CheckpointImportError, match=rf"leaf '{leaf}'.*shard of device 1"):
        read_x_checkpoint(copy)
    _edit_json(copy / "checksums.0.json", lambda d: shard(d, [top, bottom]))
    with pytest.raises(
        CheckpointImportError, match=rf"leaf '{leaf}'.*2 shard checksums.*4 devices"
    ):
        read_x_checkpoint(copy)


@pytest.mark.parametrize(
    ("victim", "message"),
    [
        ("checksums.0.json", r"checksums\.0\.json: missing"),
        ("orbax-ckpt/_METADATA", "_METADATA: missing"),
        ("orbax-ckpt/manifest.ocdbt", "no manifest.ocdbt"),
    ],
)
def test_a_missing_file_is_named(copy: Path, victim: str, message: str) -> None:
    (copy / victim).unlink()
    with pytest.raises(CheckpointImportError, match=message):
        read_x_checkpoint(copy)


@pytest.mark.parametrize("victim", ["checksums.0.json", "orbax-ckpt/_METADATA"])
def test_an_unreadable_json_file_is_named(copy: Path, victim: str) -> None:
    (copy / victim).write_text('{"version": 3, ')
    with pytest.raises(CheckpointImportError, match=rf"{Path(victim).name}: unreadable"):
        read_x_checkpoint(copy)


def test_an_older_checksum_format_is_refused(copy: Path) -> None:
    _edit_json(copy / "checksums.0.json", lambda d: d.update(version=2))
    with pytest.raises(CheckpointImportError, match="version 2, expected 3"):
        read_x_checkpoint(copy)


def test_a_truncated_data_file_names_a_leaf(copy: Path) -> None:
    data = max((copy / "orbax-ckpt").rglob("d/*"), key=lambda f: f.stat().st_size)
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    with pytest.raises(CheckpointImportError, match=r"leaf '(params\.|emb_table)"):
        read_x_checkpoint(copy)


# Shards ------------------------------------------------------------------------------------------


def test_shard_slices_follow_the_mesh_row_major() -> None:
    mesh = {"data": 2, "model": 3}
    assert shard_slices([4, 6], [None, None], mesh) == [(slice(0, 4), slice(0, 6))] * 6
    rows = shard_slices([4, 6], ["data"], mesh)
    assert rows == [(slice(0, 2), slice(0, 6))] * 3 + [(slice(2, 4), slice(0, 6))] * 3
    cols = shard_slices([4, 6], [None, "model"], mesh)
    assert [c[1] for c in cols] == [slice(0, 2), slice(2, 4), slice(4, 6)] * 2
    # Two axes on one dimension: 'data' is the major one, six blocks of one row.
    both = shard_slices([6, 1], [["data", "model"]], mesh)
    assert [b[0] for b in both] == [slice(i, i + 1) for i in range(6)]
    assert shard_slices([], [], {"data": 1}) == [()]


# Another model and geometry --------------------------------------------------------------------


def _write_x_checkpoint(run_dir: Path, leaves: dict[tuple[str, ...], np.ndarray]) -> None:
    """A checkpoint in X's layout, written here with TensorStore (zarr3 over OCDBT) like Orbax."""
    import tensorstore as ts

    orbax = run_dir / "orbax-ckpt"
    orbax.mkdir(parents=True)
    base = {"driver": "file", "path": str(orbax) + "/"}
    context = ts.Context()
    for keys, array in leaves.items():
        name = ".".join(keys)
        spec = {"driver": "zarr3", "kvstore": {"driver": "ocdbt", "base": base, "path": name}}
        store = ts.open(
            spec, context=context, create=True, dtype=ts.dtype(array.dtype.name), shape=array.shape
        ).result()
        store.write(array).result()
    tree = {
        str(keys): {
            "key_metadata": [{"key": k, "key_type": 2} for k in keys],
            "value_metadata": {"value_type": "jax.Array", "skip_deserialize": False},
        }
        for keys in leaves
    }
    (orbax / "_METADATA").write_text(json.dumps({"tree_metadata": tree, "use_zarr3": True}))
    mesh = {"stage": 1, "expert": 1, "replica": 1, "data": 1, "seq": 1, "model": 1}
    names = {".".join(k): a for k, a in leaves.items()}
    doc = {
        "version": 3,
        "format": {"shard_checksums": "adler32", "global_checksums": "global_adler32"},
        "shapes": {n: list(a.shape) for n, a in names.items()},
        "dtypes": {n: a.dtype.str for n, a in names.items()},
        "shardings": {n: {"spec": [None] * a.ndim, "mesh": mesh} for n, a in names.items()},
        "shard_checksums": {n: [zlib.adler32(a.tobytes())] for n, a in names.items()},
        "global_checksums": {n: zlib.adler32(a.tobytes()) for n, a in names.items()},
    }
    (run_dir / "checksums.0.json").write_text(json.dumps(doc))


def test_a_two_tower_checkpoint_of_another_geometry_reads_the_same_way(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    with np.load(DATA / "two_tower_golden_full.npz", allow_pickle=False) as golden:
        names = [k.removeprefix("param/") for k in golden.files if k.startswith("param/")]
        shapes = {n: golden[f"param/{n}"].shape for n in names}
    # Every parameter name of X's two-tower model, at other shapes (every dimension grown by 3).
    params = {
        n: rng.standard_normal([d + 3 for d in s]).astype(np.float32) for n, s in shapes.items()
    }
    table = rng.standard_normal((300, 48)).astype(ml_dtypes.bfloat16)
    table[0] = 0
    leaves: dict[tuple[str, ...], np.ndarray] = {
        ("params", *n.rsplit("/", 1)): a for n, a in params.items()
    }
    leaves[("emb_table",)] = table
    leaves[("opt_state", "count")] = np.array(7, dtype=np.int32)  # not read
    run_dir = (
        tmp_path
        / "xrecsys_two_tower_nano_offline_kafka_dump"
        / "elapsed_samples_000000000000000064"
        / "r1"
    )
    _write_x_checkpoint(run_dir, leaves)

    got = read_x_checkpoint(tmp_path)
    assert (got.config_name, got.step, got.run) == (
        "xrecsys_two_tower_nano_offline_kafka_dump",
        64,
        "r1",
    )
    assert sorted(got.params) == sorted(names)
    assert got.params["~/temperature"].shape == ()  # a scalar leaf
    for name, want in params.items():
        assert np.array_equal(got.params[name], want), name
    assert got.emb_table.dtype == np.float32
    assert np.array_equal(got.emb_table, table.astype(np.float32))
    assert "opt_state.count" not in got.checksums
