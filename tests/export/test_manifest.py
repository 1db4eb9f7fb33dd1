"""io.json and provenance.json: value checks per input, and where a version came from."""

from __future__ import annotations

import ast
import hashlib
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from export.checkpoint import Checkpoint, save_checkpoint
from export.onnx.wrappers import CANDIDATE_TOWER, MODEL_NAMES, RANKER, USER_TOWER, model_io
from export.repository import manifest
from export.repository.manifest import io_manifest, provenance, sha256_file
from phoenix import __version__
from phoenix.actions import ACTIONS, X_COLUMNS
from phoenix.config import ModelConfig, get_config
from phoenix.hashing import IdHasher

#: Uneven block sizes, so that swapped offsets or sizes give different numbers.
CONFIG = get_config("tiny").with_overrides(
    history_len=6,
    num_user_rows=50,
    num_post_rows=400,
    num_author_rows=60,
    num_ip_rows=30,
    num_surfaces=9,
)
PYTHON_MODEL = Path(manifest.__file__).with_name("python_model.py")


def entries(name: str, config: ModelConfig = CONFIG, max_candidates: int = 32) -> dict[str, Any]:
    inputs, outputs = model_io(name, config)
    doc = io_manifest(config, inputs, outputs, max_candidates)
    return {e["name"]: e for e in [*doc["inputs"], *doc["outputs"]]}


def block(config: ModelConfig, entity: str) -> list[int]:
    """[first, last] row of an entity's block, straight from the config's layout."""
    offset, size = {
        "user": (config.user_offset, config.num_user_rows),
        "post": (config.post_offset, config.num_post_rows),
        "author": (config.author_offset, config.num_author_rows),
        "ip": (config.ip_offset, config.num_ip_rows),
    }[entity]
    return [offset + 1, offset + size - 1]


def test_blocks_follow_xs_layout() -> None:
    # X: rows 0..65 reserved, then blocks of N at offsets 65, 65+U, 65+U+I, 65+U+I+A; each uses
    # rows offset+1 .. offset+N-1; the table is rounded up to a multiple of 512 rows.
    assert block(CONFIG, "user") == [66, 65 + 50 - 1]
    assert block(CONFIG, "post") == [65 + 50 + 1, 65 + 50 + 400 - 1]
    assert block(CONFIG, "author") == [65 + 450 + 1, 65 + 450 + 60 - 1]
    assert block(CONFIG, "ip") == [65 + 510 + 1, 65 + 510 + 30 - 1]
    assert CONFIG.table_rows == 1024


@pytest.mark.parametrize(
    ("model", "field", "entity"),
    [
        (RANKER, "user_hash", "user"),
        (RANKER, "user_ip_hash", "ip"),
        (RANKER, "history_post_hash", "post"),
        (RANKER, "history_author_hash", "author"),
        (RANKER, "candidate_post_hash", "post"),
        (RANKER, "candidate_author_hash", "author"),
        (USER_TOWER, "history_post_hash", "post"),
        (USER_TOWER, "history_author_hash", "author"),
        (CANDIDATE_TOWER, "post_hash", "post"),
        (CANDIDATE_TOWER, "author_hash", "author"),
    ],
)
def test_row_ranges_are_the_entity_blocks(model: str, field: str, entity: str) -> None:
    assert entries(model)[field]["rows"] == block(CONFIG, entity)


@pytest.mark.parametrize("entity", ["user", "post", "author", "ip"])
def test_every_hashed_row_is_inside_its_range(entity: str) -> None:
    """The orchestrator's hashing and the served model's checks agree on every row."""
    hasher = IdHasher(CONFIG)
    hash_fn = {
        "user": hasher.users,
        "post": hasher.posts,
        "author": hasher.authors,
        "ip": hasher.ips,
    }[entity]
    ids = np.random.default_rng(0).integers(1, 2**63 - 1, size=20_000, dtype=np.int64)
    rows = hash_fn(ids)
    first, last = block(CONFIG, entity)
    assert rows.min() == first  # both ends are reached: the range is not too wide either
    assert rows.max() == last


BINARY = {"history_actions", "history_follow", "candidate_follow", "candidate_stale", "user_apps"}
NONNEGATIVE = {
    "user_categorical",
    *(f"{p}_{f}" for p in ("history", "candidate") for f in ("time", "context", "counts")),
}


def test_value_checks_and_candidate_axis_are_where_they_belong() -> None:
    for model in MODEL_NAMES:
        for name, entry in entries(model).items():
            if name.endswith("_surface"):
                assert entry.get("below") == CONFIG.num_surfaces
            elif name.endswith("sids"):
                assert entry.get("below") == CONFIG.sid_codes + 1
            else:
                assert entry.get("below") is None, name
            assert entry.get("binary") == (True if name in BINARY else None), name
            assert entry.get("nonnegative") == (True if name in NONNEGATIVE else None), name
            is_input = name in {spec.name for spec in model_io(model, CONFIG)[0]}
            finite = is_input and entry["dtype"] == "float32"
            assert entry.get("finite") == (True if finite else None), name
            candidate_input = model == RANKER and name.startswith("candidate_")
            assert entry.get("candidates_axis") == (0 if candidate_input else None), name


def test_every_input_is_value_checked() -> None:
    """An input without a value check would reach the graph unchecked."""
    checks = ("rows", "below", "binary", "nonnegative", "finite")
    for model in MODEL_NAMES:
        inputs, _ = model_io(model, CONFIG)
        doc = entries(model)
        for spec in inputs:
            assert any(check in doc[spec.name] for check in checks), spec.name


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_tensors_and_limit_are_recorded(model: str) -> None:
    inputs, outputs = model_io(model, CONFIG)
    doc = io_manifest(CONFIG, inputs, outputs, max_candidates=77)
    assert doc["max_candidates"] == 77
    for specs, described in ((inputs, doc["inputs"]), (outputs, doc["outputs"])):
        assert [(e["name"], e["dtype"], tuple(e["shape"])) for e in described] == [
            (s.name, s.dtype, s.shape) for s in specs
        ]
    assert json.loads(json.dumps(doc)) == doc  # plain JSON, as written into io.json


def test_the_network_is_named_when_given() -> None:
    inputs, outputs = model_io(MODEL_NAMES[0], CONFIG)
    assert "model" not in io_manifest(CONFIG, inputs, outputs, max_candidates=8)
    named = io_manifest(CONFIG, inputs, outputs, max_candidates=8, model=MODEL_NAMES[0])
    assert named["model"] == MODEL_NAMES[0]


def test_outputs_carry_no_value_checks() -> None:
    for model in MODEL_NAMES:
        _, outputs = model_io(model, CONFIG)
        for spec in outputs:
            assert set(entries(model)[spec.name]) == {"name", "dtype", "shape"}


def _keys_read_by_python_model() -> set[str]:
    """String keys python_model.py looks up with `x["key"]` or `x.get("key")` (not os.environ)."""
    keys = set()
    for node in ast.walk(ast.parse(PYTHON_MODEL.read_text())):
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            keys.add(node.slice.value)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and not (
                isinstance(node.func.value, ast.Attribute) and node.func.value.attr == "environ"
            )
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            keys.add(node.args[0].value)
    return {k for k in keys if isinstance(k, str)}


def test_python_model_reads_exactly_what_the_manifest_writes() -> None:
    written: set[str] = set()
    for model in MODEL_NAMES:
        inputs, outputs = model_io(model, CONFIG)
        doc = io_manifest(CONFIG, inputs, outputs, max_candidates=8)
        written |= set(doc)
        for entry in [*doc["inputs"], *doc["outputs"]]:
            written |= set(entry)
    # Triton's `initialize` arguments are the only other lookups.
    read = _keys_read_by_python_model() - {"model_repository", "model_version"}
    assert read == written


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    small = CONFIG.with_overrides(emb_dim=32, num_q_heads=2, num_kv_heads=1, key_size=16)
    return save_checkpoint(Checkpoint.initialise(small), tmp_path_factory.mktemp("ckpt") / "c")


def test_provenance_records_checkpoint_config_taxonomy_and_build(checkpoint_dir: Path) -> None:
    config = ModelConfig.from_dict(
        json.loads((checkpoint_dir / "config.json").read_text())["model"]
    )
    doc = provenance(
        checkpoint_dir,
        config,
        target="tensorrt",
        precision="bf16",
        parity_max_abs_diff=3.5e-6,
        extra={"note": "x"},
    )
    weights = (checkpoint_dir / "model.safetensors").read_bytes()
    assert doc["checkpoint_sha256"] == hashlib.sha256(weights).hexdigest()
    assert doc["checkpoint"] == str(checkpoint_dir.resolve())
    assert ModelConfig.from_dict(doc["model_config"]) == config
    assert doc["action_columns"] == {a.name.lower(): col for a, col in X_COLUMNS.items()}
    assert list(doc["action_columns"]) == list(ACTIONS)
    assert doc["action_columns"]["not_dwelled"] == 12  # CLIENT_TWEET_RECAP_NOT_DWELLED
    assert (doc["target"], doc["precision"], doc["parity_max_abs_diff"]) == (
        "tensorrt",
        "bf16",
        3.5e-6,
    )
    assert doc["phoenix_triton"] == __version__
    assert doc["note"] == "x"
    assert datetime.fromisoformat(doc["exported_at"]).utcoffset() is not None
    assert json.loads(json.dumps(doc)) == doc


def test_provenance_hash_changes_with_the_weights(checkpoint_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "model.safetensors").write_bytes(
        (checkpoint_dir / "model.safetensors").read_bytes() + b"\0"
    )
    a = provenance(checkpoint_dir, CONFIG, target="cpu", precision="fp32", parity_max_abs_diff=None)
    b = provenance(copy, CONFIG, target="cpu", precision="fp32", parity_max_abs_diff=None)
    assert a["checkpoint_sha256"] != b["checkpoint_sha256"]


def test_sha256_file_streams_large_files(tmp_path: Path) -> None:
    data = np.random.default_rng(1).bytes(3 * (1 << 20) + 17)  # spans several 1 MiB blocks
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
