"""Training data, the training loop and evaluation, on a small synthetic world."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from export.checkpoint import Checkpoint, load_checkpoint
from export.training.data import SplitSpec, TrainingData, build_training_data, ranker_batches
from export.training.evaluate import evaluate
from export.training.trainer import TrainSettings, train
from phoenix.actions import ACTIONS, Action
from phoenix.cli import main
from phoenix.config import PRESETS
from phoenix.hashing import IdHasher
from phoenix.world.generate import generate_world
from phoenix.world.io import World, load_world
from phoenix.world.spec import WorldSpec

CONFIG = PRESETS["tiny"]
SPLIT = SplitSpec()


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world") / "w"
    return generate_world(WorldSpec(seed=11, num_users=600, num_authors=80), out, progress=False)


@pytest.fixture(scope="module")
def world(world_dir: Path) -> World:
    return load_world(world_dir)


@pytest.fixture(scope="module")
def data(world: World) -> TrainingData:
    return build_training_data(world, CONFIG, SPLIT)


def _engagements(world: World) -> dict[str, np.ndarray]:
    return {n: world.engagements.column(n).to_numpy() for n in world.engagements.schema.names}


def test_histories_hold_the_newest_engagements_before_the_cutoff(
    world: World, data: TrainingData
) -> None:
    eng = _engagements(world)
    cutoff = world.now_ms - int(SPLIT.holdout_hours * 3_600_000)
    engaged = np.stack([eng[a] for a in ACTIONS], 1).any(1) & (eng["served_ms"] < cutoff)
    for row in range(0, len(data.viewer_ids), 37):
        viewer = data.viewer_ids[row]
        mine = engaged & (eng["viewer_id"] == viewer)
        newest_first = eng["post_id"][mine][np.argsort(-eng["served_ms"][mine], kind="stable")]
        want = newest_first[: CONFIG.history_len]
        slots = data.history["history_post_hash"][row]
        assert (slots[:, 0] != 0).sum() == len(want)
        np.testing.assert_array_equal(slots[: len(want)], IdHasher(CONFIG).posts(want))
        # padding only at the end
        assert (slots[len(want) :] == 0).all()


def test_targets_are_after_the_cutoff_and_split_without_overlap(
    world: World, data: TrainingData
) -> None:
    eng = _engagements(world)
    cutoff = world.now_ms - int(SPLIT.holdout_hours * 3_600_000)
    assert len(data.train) + len(data.test) == int((eng["served_ms"] >= cutoff).sum())
    train_pairs = set(
        zip(data.viewer_ids[data.train.viewer_index], data.train.post_ids, strict=True)
    )
    test_pairs = set(zip(data.viewer_ids[data.test.viewer_index], data.test.post_ids, strict=True))
    assert not train_pairs & test_pairs
    share = len(data.test) / (len(data.train) + len(data.test))
    assert abs(share - SPLIT.test_fraction) < 0.03
    again = build_training_data(world, CONFIG, SPLIT)
    np.testing.assert_array_equal(again.test.post_ids, data.test.post_ids)


def test_eval_batches_cover_every_impression_once_with_its_viewer(data: TrainingData) -> None:
    seen = 0
    for batch in ranker_batches(data, data.test, viewers_per_batch=16, max_candidates=7):
        assert batch.inputs.candidates.candidate_post_hash.shape[1] <= 7
        seen += int(batch.mask.sum())
        assert (batch.labels[~batch.mask] == 0).all()
        assert (batch.inputs.candidates.candidate_post_hash[~batch.mask] == 0).all()
    assert seen == len(data.test)


def test_a_short_training_run_beats_an_untrained_model(data: TrainingData) -> None:
    """About 20 s on 2 cores: a fixed number of steps, so the result does not depend on load."""
    trained, results = train(
        data, TrainSettings(ranker_steps=180, retrieval_steps=20), progress=False
    )
    assert results["ranker"].steps == 180
    untrained = Checkpoint.initialise(CONFIG, seed=0)
    untrained.ranker.eval()
    untrained.retrieval.eval()
    after = evaluate(trained, data, ks=(100,))
    before = evaluate(untrained, data, ks=(100,))
    name = ACTIONS[Action.FAVORITE]
    assert after.auc[name] > 0.65
    assert abs(before.auc[name] - 0.5) < 0.1
    assert after.recall[100] > before.recall[100]


def test_cli_train_then_eval(
    world_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    ckpt = tmp_path / "ckpt"
    args = ["train", "--world", str(world_dir), "--out", str(ckpt), "--steps", "3"]
    assert main([*args, "--retrieval-steps", "2", "--test-fraction", "0.3"]) == 0
    loaded = load_checkpoint(ckpt)
    assert loaded.metadata["split"]["test_fraction"] == 0.3
    assert loaded.metadata["results"]["ranker"]["steps"] == 3
    # no terminal here, so progress is logged as lines instead of a live bar
    assert "ranker: step 3/3" in caplog.text

    assert main(["eval", "--world", str(world_dir), "--checkpoint", str(ckpt), "--k", "5"]) == 0
    out = capsys.readouterr().out
    assert "| AUC favorite |" in out
    assert "recall@5 of" in out
    # eval rebuilt the checkpoint's split (30% held out), not the default 20%
    held_out = int(out.split("held-out impressions: ")[1].split(",")[0])
    data = build_training_data(load_world(world_dir), CONFIG, SplitSpec(test_fraction=0.3))
    assert held_out == len(data.test)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--world", "{missing}", "--out", "{out}"], "not found"),
        (["train", "--world", "{world}", "--out", "{out}", "--steps", "-1"], "--steps"),
        (
            ["train", "--world", "{world}", "--out", "{out}", "--test-fraction", "2"],
            "--test-fraction",
        ),
        (["train", "--world", "{world}", "--out", "{out}", "--config", "huge"], "unknown config"),
        (
            ["eval", "--world", "{world}", "--checkpoint", "{missing}"],
            "checkpoint directory not found",
        ),
        (["eval", "--world", "{world}", "--checkpoint", "{out}", "--k", "0"], "--k"),
    ],
)
def test_cli_errors_are_one_clear_line(
    argv: list[str], message: str, world_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    values = {
        "missing": str(tmp_path / "missing"),
        "out": str(tmp_path / "o"),
        "world": str(world_dir),
    }
    assert main([a.format(**values) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert message in err[0]
