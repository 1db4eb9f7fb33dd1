"""Checkpoint directories: bit-exact round trips and clear refusals of anything malformed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from export.checkpoint import (
    CONFIG_FILE,
    FORMAT_VERSION,
    WEIGHTS_FILE,
    Checkpoint,
    load_checkpoint,
    read_checkpoint_config,
    read_checkpoint_configs,
    save_checkpoint,
)
from export.models.sample import random_history, random_ranker_inputs
from phoenix.actions import ACTIONS, X_COLUMNS, Action
from phoenix.config import PRESETS
from phoenix.errors import CheckpointError
from phoenix.serving import CANDIDATE_TOWER, RANKER, USER_TOWER

CONFIG = PRESETS["tiny"].with_overrides(
    history_len=8, num_user_rows=64, num_post_rows=128, num_author_rows=32, num_ip_rows=16
)
#: The towers' own geometry, different from the ranker's (X trains them as separate models).
TOWERS = CONFIG.retrieval_config().with_overrides(
    name="tiny-towers", emb_dim=64, num_layers=1, num_q_heads=2, num_kv_heads=1, num_ip_rows=0
)


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Checkpoint, Path]:
    ckpt = Checkpoint.initialise(CONFIG, seed=3, retrieval_config=TOWERS)
    ckpt.metadata = {"note": "unit test", "steps": 5}
    return ckpt, save_checkpoint(ckpt, tmp_path / "ckpt")


def test_round_trip_is_bit_exact_for_both_configs(saved: tuple[Checkpoint, Path]) -> None:
    original, path = saved
    loaded = load_checkpoint(path)
    assert loaded.config == CONFIG
    assert loaded.retrieval_config == TOWERS
    assert loaded.metadata == {"note": "unit test", "steps": 5}
    before, after = original.state_dict(), loaded.state_dict()
    assert before.keys() == after.keys()
    assert any(k.startswith("ranker.") for k in before)
    assert any(k.startswith("retrieval.") for k in before)
    for name in before:
        assert before[name].dtype == after[name].dtype, name
        assert torch.equal(before[name], after[name]), name
    inputs = random_ranker_inputs(CONFIG, batch=2, num_candidates=3)
    history = random_history(TOWERS, batch=2, valid_len=5)
    with torch.no_grad():
        a, b = original.ranker(inputs), loaded.ranker(inputs)
        assert torch.equal(a.logits, b.logits) and torch.equal(a.continuous, b.continuous)
        assert torch.equal(
            original.retrieval.embed_users(history), loaded.retrieval.embed_users(history)
        )


def test_default_towers_config_is_the_rankers_geometry_with_xs_two_tower_choices() -> None:
    ckpt = Checkpoint.initialise(CONFIG, seed=1)
    assert ckpt.retrieval_config == CONFIG.retrieval_config()
    assert ckpt.retrieval_config.post_sublayer_norm and not CONFIG.post_sublayer_norm


def test_config_for_each_served_model(saved: tuple[Checkpoint, Path]) -> None:
    loaded = load_checkpoint(saved[1])
    assert loaded.config_for(RANKER) == CONFIG
    assert loaded.config_for(USER_TOWER) == TOWERS
    assert loaded.config_for(CANDIDATE_TOWER) == TOWERS


def test_directory_holds_json_and_safetensors_only(saved: tuple[Checkpoint, Path]) -> None:
    _, path = saved
    assert sorted(p.name for p in path.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]
    doc = json.loads((path / CONFIG_FILE).read_text())
    assert doc["format_version"] == FORMAT_VERSION == 2
    assert doc["model"]["name"] == "tiny"
    assert doc["retrieval"]["name"] == "tiny-towers"
    # The named actions and X's proto column each reads (docs/FIDELITY.md, "Action columns").
    assert doc["action_columns"] == {a: X_COLUMNS[Action[a.upper()]] for a in ACTIONS}
    assert doc["action_columns"]["favorite"] == 1 and doc["action_columns"]["dwell"] == 11
    ranker_cfg, towers_cfg, metadata = read_checkpoint_configs(path)
    assert (ranker_cfg, towers_cfg, metadata["steps"]) == (CONFIG, TOWERS, 5)


def test_save_replaces_an_existing_checkpoint_atomically(saved: tuple[Checkpoint, Path]) -> None:
    _, path = saved
    other = Checkpoint.initialise(CONFIG, seed=4)
    save_checkpoint(other, path)
    reloaded = load_checkpoint(path).state_dict()
    name = "ranker.unembed.weight"
    assert torch.equal(reloaded[name], other.state_dict()[name])
    assert [p.name for p in path.parent.iterdir()] == ["ckpt"]  # no staging leftovers


def test_missing_directory_and_files(tmp_path: Path, saved: tuple[Checkpoint, Path]) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope")
    _, path = saved
    (path / WEIGHTS_FILE).unlink()
    with pytest.raises(CheckpointError, match=r"model\.safetensors is missing"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: "{not json", "not valid JSON"),
        (lambda d: {**d, "format_version": 99}, "format_version 99"),
        (lambda d: {**d, "format_version": 1}, "format_version 1"),  # the pre-X layout
        (lambda d: {**d, "model": {**d["model"], "emb_dim": -4}}, r"model: .*emb_dim"),
        (lambda d: {**d, "model": {**d["model"], "surprise": 1}}, "surprise"),
        (lambda d: {**d, "retrieval": {**d["retrieval"], "num_user_rows": 1}}, "num_user_rows"),
        (lambda d: {k: v for k, v in d.items() if k != "retrieval"}, "retrieval"),
        (lambda d: {**d, "metadata": [1, 2]}, "metadata"),
    ],
)
def test_malformed_config_json_is_refused(saved, mutate, message) -> None:  # type: ignore[no-untyped-def]
    _, path = saved
    doc = json.loads((path / CONFIG_FILE).read_text())
    new = mutate(doc)
    (path / CONFIG_FILE).write_text(new if isinstance(new, str) else json.dumps(new))
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint_config(path)


def test_shape_mismatch_names_the_tensor(saved: tuple[Checkpoint, Path]) -> None:
    _, path = saved
    tensors = load_file(str(path / WEIGHTS_FILE))
    tensors["ranker.unembed.weight"] = torch.zeros(5, CONFIG.emb_dim)
    save_file(tensors, str(path / WEIGHTS_FILE))
    with pytest.raises(
        CheckpointError,
        match=r"ranker\.unembed\.weight: shape \[5, 128\] in file, config needs \[64, 128\]",
    ):
        load_checkpoint(path)


def test_config_that_does_not_fit_the_weights(saved: tuple[Checkpoint, Path]) -> None:
    _, path = saved
    doc = json.loads((path / CONFIG_FILE).read_text())
    doc["model"]["num_layers"] = 3
    (path / CONFIG_FILE).write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match=r"missing tensors: ranker\.trunk\.blocks\.2\."):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("key", "change", "message"),
    [
        # the towers' config swapped for the ranker's geometry: the towers' tensors do not fit
        ("retrieval", {"emb_dim": 128}, r"retrieval\.candidate_mlp\.2\.weight: shape \[64, 128\]"),
        # X creates the IP projection only with an IP block: a config without one refuses it
        ("model", {"num_ip_rows": 0}, r"unexpected tensors: ranker\.embed\.ip_proj\.weight"),
        # a semantic-id table as wide as D has no projection (X creates none); (6 levels + the
        # hash level) x (256 codes + 1) = 1799 rows
        (
            "model",
            {"sid_dim": 128},
            r"ranker\.embed\.sids\.table\.weight: shape \[1799, 64\] in file, "
            r"config needs \[1799, 128\]",
        ),
        # a bigger table: the embedding's rows
        (
            "model",
            {"vocab_rows": 4096},
            r"ranker\.embed\.table\.weight: shape \[512, 64\] in file, config needs \[4096, 64\]",
        ),
    ],
)
def test_a_mismatched_config_is_refused_naming_the_tensor(
    saved: tuple[Checkpoint, Path], key: str, change: dict, message: str
) -> None:
    _, path = saved
    doc = json.loads((path / CONFIG_FILE).read_text())
    doc[key] = {**doc[key], **change}
    (path / CONFIG_FILE).write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_missing_and_unexpected_tensors_are_listed(saved: tuple[Checkpoint, Path]) -> None:
    _, path = saved
    tensors = load_file(str(path / WEIGHTS_FILE))
    del tensors["retrieval.candidate_mlp.0.weight"]
    tensors["ranker.extra"] = torch.zeros(2)
    save_file(tensors, str(path / WEIGHTS_FILE))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert "missing tensors: retrieval.candidate_mlp.0.weight" in str(err.value)
    assert "unexpected tensors: ranker.extra" in str(err.value)


def test_wrong_dtype_is_refused(saved: tuple[Checkpoint, Path]) -> None:
    _, path = saved
    tensors = load_file(str(path / WEIGHTS_FILE))
    name = "ranker.continuous_head.weight"
    tensors[name] = tensors[name].half()
    save_file(tensors, str(path / WEIGHTS_FILE))
    with pytest.raises(CheckpointError, match=r"continuous_head\.weight: dtype F16"):
        load_checkpoint(path)


def test_corrupt_weights_file(saved: tuple[Checkpoint, Path]) -> None:
    _, path = saved
    (path / WEIGHTS_FILE).write_bytes(b"\x00\x01garbage, not safetensors")
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        load_checkpoint(path)
