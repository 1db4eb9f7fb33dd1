"""Publishing model versions into a Triton repository without disturbing what is served.

A new version is written aside (a staging directory next to the repository, on the same file
system), then renamed into `<model>/<N+1>/` in one step, so a server polling the repository never
sees half a model. Existing version directories are never modified; the oldest are removed only
beyond `keep_versions`. `config.pbtxt` is replaced atomically (write, then `os.replace`) and only
when its content changes.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def publish_version(
    repository: Path,
    model_name: str,
    config_pbtxt: str,
    files: VersionFiles,
    *,
    keep_versions: int | None = None,
) -> int:
    """Add the next version of `model_name`; returns its number.

    A model seen for the first time is staged whole (config.pbtxt plus version 1) and renamed into
    the repository in one step, so a polling server never finds a model without its config.
    """
    model_dir = repository / model_name
    repository.mkdir(parents=True, exist_ok=True)
    is_new = not model_dir.exists()
    version = (versions(model_dir) or [0])[-1] + 1
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
        if is_new:
            (staging / "config.pbtxt").write_text(config_pbtxt)
            os.rename(staging, model_dir)  # atomic; fails if the model appeared meanwhile
            return version
        os.rename(staging, model_dir / str(version))  # atomic; fails if the version appeared
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _replace_if_changed(model_dir / "config.pbtxt", config_pbtxt)
    if keep_versions is not None:
        for old in versions(model_dir)[:-keep_versions]:
            shutil.rmtree(model_dir / str(old), ignore_errors=True)
    return version


def _replace_if_changed(path: Path, text: str) -> None:
    if path.is_file() and path.read_text() == text:
        return
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
