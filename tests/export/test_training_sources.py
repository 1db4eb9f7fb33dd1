"""Training from the durable store and from dataset files: the same examples as from the world
they came from, a checkpoint that names its source, bad files refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from export.checkpoint import load_checkpoint
from export.training.data import SplitSpec, TrainingData, build_training_data
from export.training.sources import open_source
from orchestrator.state.events import Engaged, PostCreated, PostDeleted
from orchestrator.state.sqlite_store import SqliteStore
from orchestrator.state.world_state import world_dataset
from phoenix.actions import ACTIONS, Action
from phoenix.cli import main
from phoenix.config import PRESETS
from phoenix.snowflake import created_ms, snowflake_id
from phoenix.world.generate import generate_world
from phoenix.world.io import World, load_world
from phoenix.world.spec import WorldSpec

CONFIG = PRESETS["tiny"]
SPLIT = SplitSpec()
FAST = ["--steps", "2", "--retrieval-steps", "1", "--batch-viewers", "8", "--no-progress"]


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = WorldSpec(seed=5, num_users=150, num_authors=30, impressions_per_user=40.0)
    return generate_world(spec, tmp_path_factory.mktemp("world") / "w", progress=False)


@pytest.fixture(scope="module")
def world(world_dir: Path) -> World:
    return load_world(world_dir)


@pytest.fixture(scope="module")
def data_dir(world_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store `phoenix load` wrote from the world."""
    out = tmp_path_factory.mktemp("data") / "d"
    assert main(["load", "--data", str(out), "--no-progress", str(world_dir)]) == 0
    return out


@pytest.fixture(scope="module")
def jsonl_dir(world: World, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The world's tables as JSON Lines files (no now_ms of their own)."""
    out = tmp_path_factory.mktemp("jsonl")
    for name, table in world_dataset(world).tables.items():
        with open(out / f"{name}.jsonl", "w") as f:
            f.writelines(json.dumps(row) + "\n" for row in table.to_pylist())
    return out


def assert_same_examples(a: TrainingData, b: TrainingData, float_rtol: float = 0.0) -> None:
    """Same viewers, histories, corpus, and the same impressions with the same labels."""
    np.testing.assert_array_equal(a.viewer_ids, b.viewer_ids)
    for name in ("user", "history", "corpus"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_allclose(x[key], y[key], rtol=float_rtol, err_msg=f"{name}.{key}")
    np.testing.assert_array_equal(a.corpus_post_ids, b.corpus_post_ids)
    for part in ("train", "test"):
        x, y = getattr(a, part), getattr(b, part)
        np.testing.assert_array_equal(x.viewer_index, y.viewer_index)
        np.testing.assert_array_equal(x.post_ids, y.post_ids)
        np.testing.assert_array_equal(x.labels, y.labels)
        np.testing.assert_allclose(x.dwell_s, y.dwell_s, rtol=float_rtol)
        for key in x.candidates:
            np.testing.assert_array_equal(x.candidates[key], y.candidates[key], err_msg=key)


def test_a_world_loaded_into_a_store_gives_the_same_training_data(
    world: World, data_dir: Path
) -> None:
    expected = build_training_data(world, CONFIG, SPLIT)
    assert len(expected.train) > 100 and len(expected.test) > 10
    stored, source = open_source("data", [data_dir], now_ms=world.now_ms)
    # What only a synthetic world has is neutral there: training does not read it.
    assert set(stored.users.column("activity").to_numpy()) == {0.0}
    assert set(stored.posts.column("topic").to_numpy()) == {-1}
    assert source.now_ms == world.now_ms and source.kind == "data"
    np.testing.assert_array_equal(
        stored.posts.column("created_ms").to_numpy(), world.posts.column("created_ms").to_numpy()
    )
    assert_same_examples(build_training_data(stored, CONFIG, SPLIT), expected)


def test_by_default_the_store_s_clock_is_now(world: World, data_dir: Path) -> None:
    # The store's clock started at the world's now_ms when it was loaded and has run since.
    before = SqliteStore.in_dir(data_dir)
    try:
        low = before.now_ms()
    finally:
        before.close()
    _, source = open_source("data", [data_dir])
    assert world.now_ms <= low <= source.now_ms


def test_files_give_the_same_training_data(world: World, world_dir: Path, jsonl_dir: Path) -> None:
    expected = build_training_data(world, CONFIG, SPLIT)
    from_world_dir, source = open_source("files", [world_dir])
    assert source.now_ms == world.now_ms  # a world directory says its now
    assert_same_examples(build_training_data(from_world_dir, CONFIG, SPLIT), expected)
    # JSON Lines files have no "now": given here; floats went through decimal text.
    from_jsonl, _ = open_source("files", sorted(jsonl_dir.glob("*.jsonl")), now_ms=world.now_ms)
    assert_same_examples(build_training_data(from_jsonl, CONFIG, SPLIT), expected, 1e-6)


def test_writes_made_through_the_service_are_trained_on(
    world: World, world_dir: Path, tmp_path: Path
) -> None:
    store = SqliteStore.in_dir(tmp_path / "d")
    try:
        store.import_dataset(world_dataset(world))
        eng = world.engagements
        viewer, gone = eng.column("viewer_id")[0].as_py(), eng.column("post_id")[-1].as_py()
        author = world.posts.column("author_id")[0].as_py()
        new_id = int(snowflake_id(world.now_ms - 60_000, 7))
        liked = tuple(a == ACTIONS[Action.FAVORITE] for a in ACTIONS)
        store.append(
            [
                PostCreated(post_id=new_id, author_id=author, kind=0, semantic_ids=(1, 2, 3)),
                Engaged(
                    viewer_id=viewer,
                    post_id=new_id,
                    author_id=author,
                    actions=liked,
                    served_ms=world.now_ms - 1_000,
                ),
                PostDeleted(post_id=gone),
            ]
        )
    finally:
        store.close()
    trained_on, _ = open_source("data", [tmp_path / "d"], now_ms=world.now_ms)
    posts = trained_on.posts.column("post_id").to_numpy()
    assert new_id in posts and gone not in posts
    created = trained_on.posts.column("created_ms").to_numpy()[posts == new_id]
    assert created == created_ms(new_id) == world.now_ms - 60_000
    # The deleted post's impressions are gone (nothing is known of it); the new one is there.
    served = trained_on.engagements.column("post_id").to_numpy()
    assert gone not in served
    dropped = int((world.engagements.column("post_id").to_numpy() == gone).sum())
    assert len(served) == world.engagements.num_rows - dropped + 1
    data = build_training_data(trained_on, CONFIG, SPLIT)
    targets = np.concatenate([data.train.post_ids, data.test.post_ids])
    assert new_id in targets and gone not in targets
    impressions = data.train if new_id in data.train.post_ids else data.test
    row = np.flatnonzero(impressions.post_ids == new_id)[0]
    assert impressions.labels[row, Action.FAVORITE] == 1.0
    assert data.viewer_ids[impressions.viewer_index[row]] == viewer


def test_cli_train_from_a_store_then_eval_the_same_split(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    ckpt = tmp_path / "ckpt"
    assert main(["train", "--data", str(data_dir), "--out", str(ckpt), *FAST]) == 0
    source = load_checkpoint(ckpt).metadata["source"]
    assert source["kind"] == "data" and source["paths"] == [str(data_dir.resolve())]
    capsys.readouterr()
    # The store's clock has moved on; eval rebuilds the split at the checkpoint's now.
    assert main(["eval", "--data", str(data_dir), "--checkpoint", str(ckpt), "--k", "5"]) == 0
    held_out = int(capsys.readouterr().out.split("held-out impressions: ")[1].split(",")[0])
    world, _ = open_source("data", [data_dir], now_ms=source["now_ms"])
    assert held_out == len(build_training_data(world, CONFIG, SPLIT).test)


def test_cli_train_from_jsonl_files_names_them(
    world: World, jsonl_dir: Path, tmp_path: Path
) -> None:
    ckpt = tmp_path / "ckpt"
    files = sorted(str(p) for p in jsonl_dir.glob("*.jsonl"))
    now = str(world.now_ms)
    assert main(["train", "--files", *files, "--now-ms", now, "--out", str(ckpt), *FAST]) == 0
    source = load_checkpoint(ckpt).metadata["source"]
    assert source == {"kind": "files", "paths": files, "now_ms": world.now_ms}


def test_cli_train_refuses_a_bad_file_naming_file_row_and_field(
    jsonl_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    for path in jsonl_dir.glob("*.jsonl"):
        lines = path.read_text().splitlines(keepends=True)
        if path.stem == "engagements":
            row = json.loads(lines[2])
            row["surface"] = "home"
            lines[2] = json.dumps(row) + "\n"
        (bad / path.name).write_text("".join(lines))
    out = tmp_path / "ckpt"
    assert main(["train", "--files", str(bad), "--out", str(out), *FAST]) == 2
    err = capsys.readouterr().err
    assert f"{bad / 'engagements.jsonl'}:3: surface: " in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--data", "{missing}"], "no store in"),
        (["--data", "{empty}"], "no engagements to train on"),
        (["--world", "{world}", "--now-ms", "4000000000000"], "no impressions to train on"),
    ],
)
def test_cli_train_errors_are_one_clear_line(
    argv: list[str], message: str, world_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    SqliteStore.in_dir(tmp_path / "empty").close()
    values = {"missing": tmp_path / "missing", "empty": tmp_path / "empty", "world": world_dir}
    args = [a.format(**values) for a in argv]
    assert main(["train", *args, "--out", str(tmp_path / "o"), *FAST]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "missing").exists()


def test_exactly_one_source(world_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    out = ["--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as both:
        main(["train", "--world", str(world_dir), "--data", str(data_dir), *out])
    with pytest.raises(SystemExit) as none:
        main(["train", *out])
    assert both.value.code == none.value.code == 2
