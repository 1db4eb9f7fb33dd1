"""`phoenix import`: X's checkpoint in, a project checkpoint out; verified or nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from export.checkpoint import load_checkpoint
from export.importer.x_batch import ranker_inputs_from_x
from phoenix.cli import main

DATA = Path(__file__).resolve().parents[1] / "data" / "x_reference"
CKPT = DATA / "orbax_ckpt" / "home_direct_packed_nano_offline_kafka_dump"
GOLDEN = sorted(DATA.glob("ranker_golden_*.npz"))


def test_import_verifies_and_writes_a_checkpoint_that_reproduces_x(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "imported"
    assert main(["import", str(CKPT), "--out", str(out), "--verify", *map(str, GOLDEN)]) == 0
    printed = capsys.readouterr().out
    for variant in ("train_f32", "serve_f32", "train_bf16", "serve_bf16"):
        assert f" {variant} " in printed
    assert "FAIL" not in printed
    checkpoint = load_checkpoint(out)
    source = checkpoint.metadata["imported_from"]
    assert source["config"] == "home_direct_packed_nano_offline_kafka_dump"
    assert source["step"] == 0 and source["run"] == "golden-run-0"
    assert len(source["checksums_adler32"]) > 50
    assert checkpoint.config.history_len == 1022  # X's preset; not stored in the checkpoint
    # The written checkpoint, at a golden file's own history length, gives X's training-kernel
    # logits (the importer's check is not the only one).
    with np.load(GOLDEN[0]) as z:
        golden = {k: z[k] for k in z.files}
    inputs = ranker_inputs_from_x(golden)
    history_len = inputs.history.history_post_hash.shape[1]
    from export.models import PhoenixRanker

    model = PhoenixRanker(checkpoint.config.with_overrides(history_len=history_len)).eval()
    model.load_state_dict(checkpoint.ranker.state_dict())
    with torch.no_grad():
        logits = model(inputs).logits.numpy()
    counts = golden["meta/cand_len"]
    for row, n in enumerate(counts):
        want = golden["output/train_f32/logits_cand"][row, :n]
        assert np.abs(logits[row, :n] - want).max() < 1e-4


def test_history_len_is_the_served_length(tmp_path: Path) -> None:
    out = tmp_path / "imported"
    args = ["import", str(CKPT), "--out", str(out), "--history-len", "254"]
    assert main([*args, "--verify", str(GOLDEN[0])]) == 0
    assert load_checkpoint(out).config.history_len == 254


def test_a_golden_mismatch_writes_nothing(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    with np.load(GOLDEN[0]) as z:
        golden = {k: z[k] for k in z.files}
    golden["output/train_f32/logits_cand"] = golden["output/train_f32/logits_cand"] + 1e-3
    bad = tmp_path / "bad_golden.npz"
    np.savez(bad, **golden)
    out = tmp_path / "imported"
    assert main(["import", str(CKPT), "--out", str(out), "--verify", str(bad)]) == 2
    captured = capsys.readouterr()
    assert "train_f32" in captured.err and "logits" in captured.err
    assert "FAIL" in captured.out
    assert not out.exists()


def test_table_sizes_are_needed_when_the_run_overrode_them(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "imported"
    assert main(["import", str(CKPT), "--out", str(out)]) == 2
    assert "--table-sizes" in capsys.readouterr().err
    assert not out.exists()
    sizes = "1000,2000,500,100"
    assert main(["import", str(CKPT), "--out", str(out), "--table-sizes", sizes]) == 0
    assert load_checkpoint(out).config.num_post_rows == 2000


def test_an_unknown_config_is_refused(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    renamed = tmp_path / "some_other_model_dump"
    shutil.copytree(CKPT, renamed)
    out = tmp_path / "imported"
    assert main(["import", str(renamed), "--out", str(out), "--table-sizes", "1,2,3,4"]) == 2
    assert "unknown config 'some_other_model_dump'" in capsys.readouterr().err
    assert not out.exists()


def test_a_bad_checksum_is_refused_naming_the_leaf(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    copy = tmp_path / CKPT.name
    shutil.copytree(CKPT, copy)
    checksums = next(copy.rglob("checksums.0.json"))
    doc = json.loads(checksums.read_text())
    doc["global_checksums"]["params.~.hist_dwell_time_vec"] += 1
    checksums.write_text(json.dumps(doc))
    out = tmp_path / "imported"
    code = main(["import", str(copy), "--out", str(out), "--table-sizes", "1000,2000,500,100"])
    assert code == 2
    assert "hist_dwell_time_vec" in capsys.readouterr().err
    assert not out.exists()
