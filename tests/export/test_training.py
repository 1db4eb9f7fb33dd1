"""Training data, the training loop and evaluation, on a small synthetic world."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from export.checkpoint import Checkpoint, load_checkpoint
from export.models import inputs as contract
from export.training.data import SplitSpec, TrainingData, build_training_data, ranker_batches
from export.training.evaluate import evaluate, predict_actions
from export.training.trainer import TrainSettings, ranker_loss, train
from phoenix import features
from phoenix.actions import ACTIONS, COLUMN_OF, Action
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


@pytest.mark.parametrize("history_len", [CONFIG.history_len, 16])
def test_histories_hold_the_newest_engagements_before_the_cutoff_oldest_first(
    world: World, data: TrainingData, history_len: int
) -> None:
    config = CONFIG.with_overrides(history_len=history_len)
    if history_len != CONFIG.history_len:
        data = build_training_data(world, config, SPLIT)
    eng = _engagements(world)
    cutoff = world.now_ms - int(SPLIT.holdout_hours * 3_600_000)
    engaged = np.stack([eng[a] for a in ACTIONS], 1).any(1) & (eng["served_ms"] < cutoff)
    truncated = 0
    for row in range(0, len(data.viewer_ids), 7):
        viewer = data.viewer_ids[row]
        mine = np.flatnonzero(engaged & (eng["viewer_id"] == viewer))
        oldest_first = mine[np.argsort(eng["served_ms"][mine], kind="stable")]
        want = oldest_first[-config.history_len :]  # the newest S, oldest first
        truncated += len(mine) > config.history_len
        slots = data.history["history_post_hash"][row]
        assert (slots[:, 0] != 0).sum() == len(want)
        np.testing.assert_array_equal(
            slots[: len(want)], IdHasher(config).posts(eng["post_id"][want])
        )
        np.testing.assert_array_equal(
            data.history["history_time"][row, : len(want), 0], eng["served_ms"][want] // 1000
        )
        np.testing.assert_allclose(
            data.history["history_dwell"][row, : len(want)], eng["dwell_time_s"][want]
        )
        for name, values in data.history.items():  # padding only at the end, all zeros
            assert (values[row, len(want) :] == 0).all(), name
    # With short histories, some viewers have more engagements than slots.
    assert (truncated > 0) == (history_len < CONFIG.history_len)


def _impression_rows(world: World, data: TrainingData) -> np.ndarray:
    """Row of each training target in the engagements table."""
    eng = _engagements(world)
    key = {(v, p): i for i, (v, p) in enumerate(zip(eng["viewer_id"], eng["post_id"], strict=True))}
    viewers = data.viewer_ids[data.train.viewer_index]
    return np.array([key[(v, p)] for v, p in zip(viewers, data.train.post_ids, strict=True)])


def test_candidates_carry_each_impressions_context(world: World, data: TrainingData) -> None:
    eng = _engagements(world)
    rows = _impression_rows(world, data)
    cand = data.train.candidates
    users = {n: world.users.column(n).to_numpy() for n in ("user_id", "timezone")}
    tz_of = dict(zip(users["user_id"].tolist(), users["timezone"].tolist(), strict=True))
    posts = world.posts.to_pydict()
    post_of = {p: i for i, p in enumerate(posts["post_id"])}
    follows = set(
        zip(
            world.follows.column("follower_id").to_pylist(),
            world.follows.column("followee_id").to_pylist(),
            strict=True,
        )
    )
    sample = range(0, len(rows), 97)
    for i in sample:
        r = rows[i]
        viewer, post = int(eng["viewer_id"][r]), int(eng["post_id"][r])
        p = post_of[post]
        author = posts["author_id"][p]
        served_s = int(eng["served_ms"][r]) // 1000
        assert cand["candidate_time"][i].tolist() == [served_s, posts["created_ms"][p] // 1000]
        assert cand["candidate_context"][i].tolist() == (
            features.local_context(tz_of[viewer], served_s).tolist()
        )
        assert cand["candidate_follow"][i].tolist() == [
            (viewer, author) in follows,
            (author, viewer) in follows,
        ]
        assert cand["candidate_sids"][i].tolist() == posts["semantic_ids"][p]
        assert cand["candidate_surface"][i] == eng["surface"][r]
    # Both follow bits occur, and in-network impressions dominate as the world serves them.
    follow = cand["candidate_follow"]
    assert 0.5 < follow[:, 0].mean() < 0.9 and 0 < follow[:, 1].mean() < 0.5


def test_counts_are_causal(world: World, data: TrainingData) -> None:
    """A candidate's counts are the post's engagements served strictly before its impression."""
    eng = _engagements(world)
    rows = _impression_rows(world, data)
    counts = data.train.candidates["candidate_counts"]
    columns = ("favorite", "reply", "repost", "quote")
    for i in range(0, len(rows), 211):
        r = rows[i]
        before = (eng["post_id"] == eng["post_id"][r]) & (eng["served_ms"] < eng["served_ms"][r])
        want = [int(eng[c][before].sum()) for c in columns] + [int(before.sum())]
        assert counts[i].tolist() == want
    # Counts grow with time: impressions later in the window see more views.
    views = counts[:, 4]
    assert (
        views.max() > 0
        and np.corrcoef(
            views,
            data.train.candidates["candidate_time"][:, 0]
            - data.train.candidates["candidate_time"][:, 1],
        )[0, 1]
        > 0.2
    )


def test_user_arrays_come_from_the_viewers_profiles(world: World, data: TrainingData) -> None:
    users = {n: world.users.column(n).to_numpy() for n in world.users.schema.names}
    row = np.searchsorted(users["user_id"], data.viewer_ids)
    hasher = IdHasher(CONFIG)
    np.testing.assert_array_equal(data.user["user_hash"], hasher.users(data.viewer_ids))
    np.testing.assert_array_equal(data.user["user_ip_hash"], hasher.ips(users["ip_id"][row]))
    cat = data.user["user_categorical"]
    np.testing.assert_array_equal(cat[:, contract.USER_COUNTRY], users["country"][row])
    np.testing.assert_array_equal(cat[:, contract.USER_LANGUAGE], users["language"][row])
    flt = data.user["user_float"]
    np.testing.assert_allclose(flt[:, contract.USER_LATITUDE], users["latitude"][row])
    np.testing.assert_allclose(flt[:, contract.USER_AGE_YEARS], users["age_years"][row])
    assert data.user["user_apps"].sum(1).mean() > 3


def test_the_arrays_meet_the_models_input_contract(data: TrainingData) -> None:
    """Names, shapes, dtypes and ranges as export/models/inputs.py checks them."""
    assert (features.USER_LANGUAGE, features.USER_COUNTRY, features.USER_GENDER) == (
        contract.USER_LANGUAGE,
        contract.USER_COUNTRY,
        contract.USER_GENDER,
    )
    assert (features.USER_AGE_BRACKET, features.USER_INFERRED_GENDER) == (
        contract.USER_AGE_BRACKET,
        contract.USER_INFERRED_GENDER,
    )
    assert (features.USER_LONGITUDE, features.USER_LATITUDE) == (
        contract.USER_LONGITUDE,
        contract.USER_LATITUDE,
    )
    assert (features.USER_INFERRED_GENDER_SCORE, features.USER_AGE_YEARS) == (
        contract.USER_INFERRED_GENDER_SCORE,
        contract.USER_AGE_YEARS,
    )
    assert features.NUM_USER_CATEGORICAL == contract.NUM_USER_CATEGORICAL
    assert features.NUM_USER_FLOAT == contract.NUM_USER_FLOAT
    batch = next(ranker_batches(data, data.test, viewers_per_batch=8, max_candidates=16))
    batch.inputs.validate(CONFIG)
    assert set(batch.inputs.tensors()) == set(
        contract.input_names(contract.UserInputs)
        + contract.input_names(contract.HistoryInputs)
        + contract.input_names(contract.CandidateInputs)
    )


def test_only_the_labelled_columns_are_trained(data: TrainingData) -> None:
    model = Checkpoint.initialise(CONFIG, seed=0).ranker
    batch = next(ranker_batches(data, data.train, 8, 16, np.random.default_rng(0)))
    ranker_loss(model, batch, dwell_weight=1.0).backward()
    grad = model.unembed.weight.grad.abs().sum(1)
    labelled = torch.zeros(CONFIG.num_action_columns, dtype=torch.bool)
    labelled[list(COLUMN_OF)] = True
    assert (grad[labelled] > 0).all() and (grad[~labelled] == 0).all()


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
    """About a minute on 2 cores: a fixed number of steps, so the result does not depend on
    load. Small batches keep it short (a two-tower step at the default 128 viewers costs 1.5 s):
    favorite AUC about 0.69 against 0.49, recall@100 0.16 against 0.07."""
    settings = TrainSettings(
        ranker_steps=120, viewers_per_batch=16, retrieval_steps=60, retrieval_batch=32
    )
    trained, results = train(data, settings, progress=False)
    assert results["ranker"].steps == 120
    untrained = Checkpoint.initialise(CONFIG, seed=0)
    untrained.ranker.eval()
    untrained.retrieval.eval()
    after = evaluate(trained, data, ks=(100,))
    before = evaluate(untrained, data, ks=(100,))
    name = ACTIONS[Action.FAVORITE]
    assert after.auc[name] > 0.65
    assert abs(before.auc[name] - 0.5) < 0.1
    assert after.recall[100] > before.recall[100]
    # The named probabilities are the model's own columns for those actions.
    batch = next(ranker_batches(data, data.test, viewers_per_batch=1, max_candidates=4))
    n = int(batch.mask.sum())
    with torch.inference_mode():
        columns = trained.ranker(batch.inputs).probs[0, :n][:, list(COLUMN_OF)].numpy()
    np.testing.assert_allclose(predict_actions(trained, data, data.test)[:n], columns, atol=1e-6)
    # Dwell time is learnt in seconds: longer where the viewer dwelled.
    dwelled = []
    with torch.inference_mode():
        for b in ranker_batches(data, data.test, viewers_per_batch=64, max_candidates=64):
            seconds = trained.ranker(b.inputs).dwell_time[b.mask]
            dwelled.append((seconds.numpy(), b.labels[b.mask][:, Action.DWELL].numpy()))
    seconds, label = (np.concatenate(x) for x in zip(*dwelled, strict=True))
    assert seconds[label > 0].mean() > seconds[label == 0].mean()


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
