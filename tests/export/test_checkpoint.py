"""Checkpoint directories: bit-exact round trips and clear refusals of anything malformed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from export.checkpoint import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    Checkpoint,
    load_checkpoint,
    read_checkpoint_config,
    save_checkpoint,
)
from export.models.sample import random_ranker_inputs
from phoenix.config import PRESETS
from phoenix.errors import CheckpointError

CONFIG = PRESETS["tiny"].with_overrides(
    history_len=8, num_user_rows=64, num_post_rows=128, num_author_rows=32
)


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Checkpoint, Path]:
    ckpt = Checkpoint.initialise(CONFIG, seed=3)
    ckpt.metadata = {"note": "unit test", "steps": 5}
    return ckpt, save_checkpoint(ckpt, tmp_path / "ckpt")


def test_round_trip_is_bit_exact(saved: tuple[Checkpoint, Path]) -> None:
    original, path = saved
    loaded = load_checkpoint(path)
    assert loaded.config == CONFIG
    assert loaded.metadata == {"note": "unit test", "steps": 5}
    before, after = original.state_dict(), loaded.state_dict()
    assert before.keys() == after.keys()
    for name in before:
        assert torch.equal(before[name], after[name]), name
    inputs = random_ranker_inputs(CONFIG, batch=2, num_candidates=3)
    with torch.no_grad():
        assert torch.equal(
            original.ranker(inputs).action_logits, loaded.ranker(inputs).action_logits
        )


def test_directory_holds_json_and_safetensors_only(saved: tuple[Checkpoint, Path]) -> None:
    _, path = saved
    assert sorted(p.name for p in path.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]
    doc = json.loads((path / CONFIG_FILE).read_text())
    assert doc["model"]["name"] == "tiny"
    assert len(doc["actions"]) == CONFIG.num_actions


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
        (lambda d: {**d, "actions": d["actions"][::-1]}, "taxonomy"),
        (lambda d: {**d, "model": {**d["model"], "emb_dim": -4}}, "emb_dim"),
        (lambda d: {**d, "model": {**d["model"], "surprise": 1}}, "surprise"),
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
    with pytest.raises(CheckpointError, match=r"ranker\.unembed\.weight: shape \[5, 128\]"):
        load_checkpoint(path)


def test_config_that_does_not_fit_the_weights(saved: tuple[Checkpoint, Path]) -> None:
    _, path = saved
    doc = json.loads((path / CONFIG_FILE).read_text())
    doc["model"]["num_layers"] = 3
    (path / CONFIG_FILE).write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match=r"missing tensors: .*blocks\.2\."):
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
    tensors["ranker.dwell_head.weight"] = tensors["ranker.dwell_head.weight"].half()
    save_file(tensors, str(path / WEIGHTS_FILE))
    with pytest.raises(CheckpointError, match=r"dwell_head\.weight: dtype F16"):
        load_checkpoint(path)


def test_corrupt_weights_file(saved: tuple[Checkpoint, Path]) -> None:
    _, path = saved
    (path / WEIGHTS_FILE).write_bytes(b"\x00\x01garbage, not safetensors")
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        load_checkpoint(path)
