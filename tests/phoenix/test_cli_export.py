"""`phoenix export`: a checkpoint into versioned Triton models, and the errors it gives."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from export.checkpoint import Checkpoint, save_checkpoint
from export.repository.model_config import parse_pbtxt
from phoenix.actions import ACTIONS
from phoenix.cli import main
from phoenix.config import get_config

MODELS = ("phoenix_ranker", "phoenix_user_tower", "phoenix_candidate_tower")
SMALL = get_config("tiny").with_overrides(history_len=8, num_post_rows=300, num_author_rows=50)


def _tree(root: Path) -> dict[str, str]:
    """Every file under `root` with the sha256 of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(
        Checkpoint.initialise(SMALL, seed=1), tmp_path_factory.mktemp("ckpt") / "small"
    )


@pytest.fixture(scope="module")
def exported(
    checkpoint_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, str]]:
    """A repository after one export, and what `phoenix export` printed."""
    repo = tmp_path_factory.mktemp("exported") / "model_repository"
    args = ["export", "--checkpoint", str(checkpoint_dir), "--out", str(repo)]
    assert main([*args, "--max-candidates", "64"]) == 0
    return repo, _tree(repo)


def test_export_writes_three_versioned_models(exported: tuple[Path, dict[str, str]]) -> None:
    repo, _ = exported
    assert sorted(p.name for p in repo.iterdir()) == sorted(MODELS)
    for name in MODELS:
        model = repo / name
        config = parse_pbtxt((model / "config.pbtxt").read_text())
        assert config.name == name and config.backend == "python"
        assert config.max_batch_size > 0 and config.HasField("dynamic_batching")
        # The cpu target does not hold a lone request for company (it would only add latency).
        assert config.dynamic_batching.max_queue_delay_microseconds == 0
        assert sorted(p.name for p in (model / "1").iterdir()) == [
            "__pycache__",  # model.py compiled before publishing (see writer.py)
            "io.json",
            "model.onnx",
            "model.py",
            "provenance.json",
        ]
    io = json.loads((repo / "phoenix_ranker" / "1" / "io.json").read_text())
    assert io["max_candidates"] == 64


def test_provenance_names_checkpoint_config_and_taxonomy(
    exported: tuple[Path, dict[str, str]], checkpoint_dir: Path
) -> None:
    repo, _ = exported
    provenance = json.loads((repo / "phoenix_ranker" / "1" / "provenance.json").read_text())
    text = json.dumps(provenance)
    weights_sha = hashlib.sha256((checkpoint_dir / "model.safetensors").read_bytes()).hexdigest()
    assert weights_sha in text
    assert str(checkpoint_dir.resolve()) in text
    assert provenance["target"] == "cpu" and provenance["precision"] == "fp32"
    assert sorted(provenance["action_columns"]) == sorted(ACTIONS)
    assert provenance["model_config"] == json.loads(SMALL.model_dump_json())


def test_second_export_adds_a_version_and_leaves_the_first_alone(
    exported: tuple[Path, dict[str, str]],
    checkpoint_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source, _ = exported
    repo = tmp_path / "model_repository"
    # Work on a copy, so the module's repository stays at one version for the other tests.
    shutil.copytree(source, repo)
    before = _tree(repo)
    capsys.readouterr()
    args = ["export", "--checkpoint", str(checkpoint_dir), "--out", str(repo)]
    assert main([*args, "--max-candidates", "64", "--no-verify"]) == 0
    printed = capsys.readouterr().out
    after = _tree(repo)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing rewritten
    for name in MODELS:
        assert (repo / name / "2" / "model.onnx").is_file()
        assert f"{repo / name / '2'}" in printed
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--max-candidates", "0"], "--max-candidates"),
        (["--max-candidates", "100000"], "--max-candidates"),
        (["--precision", "fp16"], "--precision fp16 needs --target tensorrt"),
        (["--keep-versions", "0"], "--keep-versions"),
        (["--max-batch-size", "-3"], "--max-batch-size"),
        (["--target", "tensorrt"], "TensorRT"),
    ],
)
def test_bad_options_are_refused_naming_the_option(
    extra: list[str],
    message: str,
    checkpoint_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    repo = tmp_path / "repo"
    args = ["export", "--checkpoint", str(checkpoint_dir), "--out", str(repo), *extra]
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not repo.exists() or not any(repo.iterdir())


def test_a_broken_checkpoint_loses_nothing_already_exported(
    exported: tuple[Path, dict[str, str]],
    checkpoint_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source, tree = exported
    repo = tmp_path / "model_repository"
    shutil.copytree(source, repo)
    broken = tmp_path / "broken"
    shutil.copytree(checkpoint_dir, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    assert main(["export", "--checkpoint", str(broken), "--out", str(repo)]) == 2
    assert "model.safetensors" in capsys.readouterr().err
    assert _tree(repo) == tree

    missing = tmp_path / "missing"
    assert main(["export", "--checkpoint", str(missing), "--out", str(repo)]) == 2
    assert str(missing) in capsys.readouterr().err
