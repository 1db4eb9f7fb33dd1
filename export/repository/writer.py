"""Publishing model versions into a Triton repository without disturbing what is served.

A new version is written aside (a staging directory next to the repository, on the same file
system), then renamed into `<model>/<N+1>/` in one step, so a server polling the repository never
sees half a model. Existing version directories are never modified; the oldest are removed only
beyond `keep_versions`, each first renamed out of the repository and deleted there, so the
server never sees a half-deleted version either. `config.pbtxt` is replaced atomically (write, then
`os.replace`) and only when its content changes.

Two exporters publishing the same model at once both pick the same next version number; the second
rename then fails with `FileExistsError` (never replacing the first one's directory) and its
staging directory is removed.
"""

from __future__ import annotations

import compileall
import errno
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phoenix.files import write_atomically


@dataclass(frozen=True)
class VersionFiles:
    """What goes into one version directory."""

    copies: dict[str, Path] = field(default_factory=dict)  # file name -> source file
    texts: dict[str, str] = field(default_factory=dict)  # file name -> content
    jsons: dict[str, Any] = field(default_factory=dict)  # file name -> JSON document


def versions(model_dir: Path) -> list[int]:
    """The numeric version directories of a model, ascending."""
    if not model_dir.is_dir():
        return []
    return sorted(
        int(p.name)
        for p in model_dir.iterdir()
        if p.is_dir() and p.name.isascii() and p.name.isdigit()
    )


def publish_version(
    repository: Path,
    model_name: str,
    config_pbtxt: str,
    files: VersionFiles,
    *,
    keep_versions: int | None = None,
    version: int | None = None,
) -> int:
    """Add the next version of `model_name` (or `version`, which must be above every existing
    one); returns its number.

    A model seen for the first time is staged whole (config.pbtxt plus version 1) and renamed into
    the repository in one step, so a polling server never finds a model without its config.
    Raises `FileExistsError` when another writer published the same version (or created the model)
    meanwhile; nothing of this call is left behind then.
    """
    if keep_versions is not None and keep_versions < 1:
        raise ValueError(f"keep_versions must be at least 1, got {keep_versions}")
    model_dir = repository / model_name
    repository.mkdir(parents=True, exist_ok=True)
    is_new = not model_dir.exists()
    latest = (versions(model_dir) or [0])[-1]
    if version is None:
        version = latest + 1
    elif version <= latest:
        raise FileExistsError(
            errno.EEXIST, f"version {version} is not above the latest ({latest})", str(model_dir)
        )
    staging = Path(
        tempfile.mkdtemp(
            prefix=f".{repository.name}.{model_name}.v{version}.", dir=repository.parent
        )
    )
    version_dir = staging / str(version) if is_new else staging
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; a container's server must read it
        version_dir.mkdir(exist_ok=True)
        for name, source in files.copies.items():
            shutil.copyfile(source, version_dir / name)
        for name, text in files.texts.items():
            (version_dir / name).write_text(text)
        for name, doc in files.jsons.items():
            (version_dir / name).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        _precompile(version_dir)
        if is_new:
            (staging / "config.pbtxt").write_text(config_pbtxt)
            _rename_no_replace(staging, model_dir)  # atomic; fails if the model appeared meanwhile
            return version
        _rename_no_replace(staging, model_dir / str(version))  # fails if the version appeared
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _replace_if_changed(model_dir / "config.pbtxt", config_pbtxt)
    if keep_versions is not None:
        for old in versions(model_dir)[:-keep_versions]:
            _remove_version(repository, model_dir / str(old))
    return version


def _rename_no_replace(source: Path, target: Path) -> None:
    """`os.rename` that never replaces `target`.

    POSIX rename silently replaces an empty directory and fails on a non-empty one with ENOTEMPTY
    (or EEXIST); both cases become `FileExistsError` here. What is left is the instant between the
    check and the rename, in which only a directory created empty could be replaced: it holds no
    model, so nothing served is lost.
    """
    if os.path.lexists(target):
        raise FileExistsError(errno.EEXIST, "already exists; not replacing it", str(target))
    try:
        os.rename(source, target)
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
            raise FileExistsError(
                exc.errno, "already exists; not replacing it", str(target)
            ) from exc
        raise


def _remove_version(repository: Path, version_dir: Path) -> None:
    """Rename a version out of the repository in one step, then delete it there."""
    trash = Path(tempfile.mkdtemp(prefix=f".{repository.name}.removed.", dir=repository.parent))
    try:
        os.rename(version_dir, trash / version_dir.name)
    except FileNotFoundError:  # removed meanwhile by someone else
        pass
    finally:
        shutil.rmtree(trash, ignore_errors=True)


def _replace_if_changed(path: Path, text: str) -> None:
    if path.is_file() and path.read_text() == text:
        return
    write_atomically(path, text)


def _precompile(version_dir: Path) -> None:
    """Write the bytecode of the version's Python files (a Python-backend `model.py`) now.

    Triton's Python stub writes `__pycache__` into the version directory on first load, and a
    server polling the repository takes that as a change and loads the version a second time.
    Compiled here, with the interpreter whose site-packages the stub uses, nothing changes after
    the rename. A file that does not compile is left for the server to report.
    """
    compileall.compile_dir(str(version_dir), quiet=2)
