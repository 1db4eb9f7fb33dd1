"""Publishing versions into a Triton repository: numbering, atomicity, retention, config.pbtxt."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from export.repository import writer
from export.repository.writer import VersionFiles, publish_version, versions

MODEL = "phoenix_ranker"
CONFIG = 'name: "phoenix_ranker"\nmax_batch_size: 16\n'


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """The repository, alone in its parent so that stray staging directories are visible."""
    return tmp_path / "parent" / "models"


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x01graph-bytes")
    return path


def files(source: Path, tag: str = "a") -> VersionFiles:
    return VersionFiles(
        copies={"model.onnx": source},
        texts={"note.txt": f"note {tag}\n"},
        jsons={"io.json": {"tag": tag, "inputs": []}},
    )


def snapshot(directory: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every file under `directory`: (content, inode, mtime in ns)."""
    out = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            st = path.stat()
            out[str(path.relative_to(directory))] = (path.read_bytes(), st.st_ino, st.st_mtime_ns)
    return out


def leftovers(repo: Path) -> list[str]:
    """Anything next to the repository (staging, trash) that is not the repository itself."""
    return sorted(p.name for p in repo.parent.iterdir() if p != repo)


def test_versions_of_a_missing_model_is_empty(tmp_path: Path) -> None:
    assert versions(tmp_path / "nothing") == []


def test_versions_lists_numeric_directories_ascending(tmp_path: Path) -> None:
    model = tmp_path / "m"
    for name in ["10", "2", "1", "tmp", ".3", "٣"]:  # "٣" is an Arabic-Indic digit
        (model / name).mkdir(parents=True)
    (model / "7").write_text("a file, not a version")
    assert versions(model) == [1, 2, 10]


def test_first_publish_creates_model_with_config_and_version_1(repo: Path, source: Path) -> None:
    assert publish_version(repo, MODEL, CONFIG, files(source)) == 1
    model = repo / MODEL
    assert sorted(p.name for p in model.iterdir()) == ["1", "config.pbtxt"]
    assert (model / "config.pbtxt").read_text() == CONFIG
    assert sorted(p.name for p in (model / "1").iterdir()) == ["io.json", "model.onnx", "note.txt"]
    assert (model / "1" / "model.onnx").read_bytes() == source.read_bytes()
    assert (model / "1" / "note.txt").read_text() == "note a\n"
    assert json.loads((model / "1" / "io.json").read_text()) == {"tag": "a", "inputs": []}
    assert leftovers(repo) == []


def test_first_publish_is_a_single_rename_of_the_whole_model(
    repo: Path, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    renames: list[tuple[Path, Path, list[str]]] = []
    real_rename = os.rename

    def spy(src: os.PathLike[str], dst: os.PathLike[str]) -> None:
        # What the staged directory holds at the moment it becomes visible.
        renames.append((Path(src), Path(dst), sorted(p.name for p in Path(src).iterdir())))
        real_rename(src, dst)

    monkeypatch.setattr(writer.os, "rename", spy)
    publish_version(repo, MODEL, CONFIG, files(source))
    assert len(renames) == 1
    src, dst, content = renames[0]
    assert dst == repo / MODEL
    assert src.parent == repo.parent  # staged outside the repository a server scans
    assert content == ["1", "config.pbtxt"]


def test_versions_count_up(repo: Path, source: Path) -> None:
    numbers = [publish_version(repo, MODEL, CONFIG, files(source, str(i))) for i in range(4)]
    assert numbers == [1, 2, 3, 4]
    assert versions(repo / MODEL) == [1, 2, 3, 4]
    for number in numbers:
        doc = json.loads((repo / MODEL / str(number) / "io.json").read_text())
        assert doc["tag"] == str(number - 1)
    assert leftovers(repo) == []


def test_numbering_continues_after_the_highest_version(repo: Path, source: Path) -> None:
    publish_version(repo, MODEL, CONFIG, files(source))
    (repo / MODEL / "7").mkdir()
    assert publish_version(repo, MODEL, CONFIG, files(source)) == 8


def test_publishing_leaves_existing_versions_untouched(repo: Path, source: Path) -> None:
    publish_version(repo, MODEL, CONFIG, files(source, "old"))
    before = snapshot(repo / MODEL / "1")
    source.write_bytes(b"new graph")
    publish_version(repo, MODEL, CONFIG.replace("16", "32"), files(source, "new"))
    assert snapshot(repo / MODEL / "1") == before
    assert (repo / MODEL / "2" / "model.onnx").read_bytes() == b"new graph"


def test_models_are_independent(repo: Path, source: Path) -> None:
    assert publish_version(repo, "a", CONFIG, files(source)) == 1
    assert publish_version(repo, "a", CONFIG, files(source)) == 2
    assert publish_version(repo, "b", CONFIG, files(source)) == 1
    assert versions(repo / "b") == [1]


def test_identical_config_is_not_rewritten(repo: Path, source: Path) -> None:
    publish_version(repo, MODEL, CONFIG, files(source))
    config = repo / MODEL / "config.pbtxt"
    os.utime(config, ns=(1_000_000_000, 1_000_000_000))  # an mtime a rewrite could not keep
    before = config.stat()
    publish_version(repo, MODEL, CONFIG, files(source))
    after = config.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert sorted(p.name for p in (repo / MODEL).iterdir()) == ["1", "2", "config.pbtxt"]


def test_changed_config_is_replaced_atomically(
    repo: Path, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish_version(repo, MODEL, CONFIG, files(source))
    config = repo / MODEL / "config.pbtxt"
    replaced: list[tuple[Path, Path]] = []
    real_replace = os.replace

    def spy(src: os.PathLike[str], dst: os.PathLike[str]) -> None:
        replaced.append((Path(src), Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(writer.os, "replace", spy)
    new = CONFIG.replace("16", "64")
    publish_version(repo, MODEL, new, files(source))
    assert config.read_text() == new
    assert [dst for _, dst in replaced] == [config]  # written aside, then renamed over
    assert sorted(p.name for p in (repo / MODEL).iterdir()) == ["1", "2", "config.pbtxt"]


def test_keep_versions_removes_only_the_oldest(repo: Path, source: Path) -> None:
    for i in range(3):
        publish_version(repo, MODEL, CONFIG, files(source, str(i)), keep_versions=2)
    assert versions(repo / MODEL) == [2, 3]
    kept = snapshot(repo / MODEL / "3")
    publish_version(repo, MODEL, CONFIG, files(source, "3"), keep_versions=2)
    assert versions(repo / MODEL) == [3, 4]
    assert snapshot(repo / MODEL / "3") == kept
    assert (repo / MODEL / "config.pbtxt").read_text() == CONFIG
    assert leftovers(repo) == []  # removed versions were not parked next to the repository


def test_old_versions_leave_the_repository_in_one_rename(
    repo: Path, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A polling server must never see a half-deleted version (it would reload the model)."""
    publish_version(repo, MODEL, CONFIG, files(source))
    renames: list[tuple[Path, Path, bool]] = []
    real_rename = os.rename

    def spy(src: os.PathLike[str], dst: os.PathLike[str]) -> None:
        # Whether the source is still complete when it leaves.
        renames.append((Path(src), Path(dst), (Path(src) / "model.onnx").is_file()))
        real_rename(src, dst)

    monkeypatch.setattr(writer.os, "rename", spy)
    publish_version(repo, MODEL, CONFIG, files(source), keep_versions=1)
    assert versions(repo / MODEL) == [2]
    removal = [(dst, whole) for src, dst, whole in renames if src == repo / MODEL / "1"]
    assert len(removal) == 1
    dst, whole = removal[0]
    assert whole
    assert repo not in dst.parents
    assert leftovers(repo) == []


def test_keep_versions_none_keeps_everything(repo: Path, source: Path) -> None:
    for _ in range(4):
        publish_version(repo, MODEL, CONFIG, files(source), keep_versions=None)
    assert versions(repo / MODEL) == [1, 2, 3, 4]


def test_keep_versions_must_be_positive(repo: Path, source: Path) -> None:
    with pytest.raises(ValueError, match="keep_versions"):
        publish_version(repo, MODEL, CONFIG, files(source), keep_versions=0)
    assert not repo.exists()


@pytest.mark.parametrize("existing", [False, True], ids=["new-model", "next-version"])
def test_failed_copy_leaves_nothing_behind(repo: Path, source: Path, existing: bool) -> None:
    if existing:
        publish_version(repo, MODEL, CONFIG, files(source))
    before = snapshot(repo) if existing else {}
    broken = VersionFiles(
        copies={"model.onnx": source, "weights.bin": source.with_name("missing.bin")},
        texts={"note.txt": "x"},
    )
    with pytest.raises(FileNotFoundError, match=r"missing\.bin"):
        publish_version(repo, MODEL, CONFIG.replace("16", "8"), broken)
    assert snapshot(repo) == before
    assert versions(repo / MODEL) == ([1] if existing else [])
    assert not (repo / MODEL).exists() or existing
    assert leftovers(repo) == []


def _create_during_staging(monkeypatch: pytest.MonkeyPatch, target: Path, *, fill: bool) -> None:
    """Make `target` appear while the version is being staged (another exporter winning)."""
    real_copy = writer.shutil.copyfile

    def copy(src: Path, dst: Path) -> None:
        real_copy(src, dst)
        if not target.exists():
            target.mkdir(parents=True)
            if fill:
                (target / "model.onnx").write_bytes(b"the other exporter's graph")

    monkeypatch.setattr(writer.shutil, "copyfile", copy)


@pytest.mark.parametrize("fill", [False, True], ids=["empty", "populated"])
def test_concurrent_version_fails_instead_of_overwriting(
    repo: Path, source: Path, monkeypatch: pytest.MonkeyPatch, fill: bool
) -> None:
    publish_version(repo, MODEL, CONFIG, files(source))
    target = repo / MODEL / "2"
    _create_during_staging(monkeypatch, target, fill=fill)
    with pytest.raises(FileExistsError):
        publish_version(repo, MODEL, CONFIG, files(source))
    # The winner's directory is what it was; ours never landed.
    assert sorted(p.name for p in target.iterdir()) == (["model.onnx"] if fill else [])
    if fill:
        assert (target / "model.onnx").read_bytes() == b"the other exporter's graph"
    assert leftovers(repo) == []


@pytest.mark.parametrize("fill", [False, True], ids=["empty", "populated"])
def test_concurrent_new_model_fails_instead_of_overwriting(
    repo: Path, source: Path, monkeypatch: pytest.MonkeyPatch, fill: bool
) -> None:
    target = repo / MODEL
    _create_during_staging(monkeypatch, target, fill=fill)
    with pytest.raises(FileExistsError):
        publish_version(repo, MODEL, CONFIG, files(source))
    assert sorted(p.name for p in target.iterdir()) == (["model.onnx"] if fill else [])
    assert leftovers(repo) == []


def test_published_directories_are_readable_by_others(repo: Path, source: Path) -> None:
    """mkdtemp makes a private directory; a server in another container must still read it."""
    old_umask = os.umask(0o022)
    try:
        publish_version(repo, MODEL, CONFIG, files(source))  # the staged model directory
        publish_version(repo, MODEL, CONFIG, files(source))  # a staged version directory
    finally:
        os.umask(old_umask)
    for directory in (repo / MODEL, repo / MODEL / "1", repo / MODEL / "2"):
        assert directory.stat().st_mode & 0o777 == 0o755, directory


def test_python_sources_are_compiled_before_the_version_appears(repo: Path, source: Path) -> None:
    """Triton's stub would otherwise write __pycache__ into the served version on first load,
    and a polling server would load that version a second time."""
    model_py = {"model.py": "VALUE = 1\n"}
    publish_version(repo, MODEL, CONFIG, VersionFiles(texts=model_py))
    publish_version(repo, MODEL, CONFIG, VersionFiles(texts=model_py))
    for version in ("1", "2"):
        cached = list((repo / MODEL / version / "__pycache__").glob("model.*.pyc"))
        assert len(cached) == 1, version
