"""One exported `tiny` model set (seeded random weights, the `cpu` target, 512 candidates) for
the integration tests that need a served model but do not test the export itself.

Exporting the three models takes about a minute on two cores; four test modules used to export
their own. `tiny_export` (a session fixture) exports once per test run, shared by the pytest-xdist
workers through a file lock in their common temporary directory, and `TinyExport.copy_to` gives
each module a repository of its own to serve and publish into. The export is the real one
(`export_repository`, parity check included); `tests/export/` and `tests/phoenix/test_cli_export.py`
test it.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from filelock import FileLock

from export.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from export.repository.build import ExportSettings, export_repository
from phoenix.config import get_config

#: The candidate limit of the shared export.
MAX_CANDIDATES = 512
_SEED = 3


@dataclass(frozen=True)
class TinyExport:
    checkpoint_dir: Path
    repository: Path

    def weights(self) -> Checkpoint:
        """The weights the served models were exported from."""
        return load_checkpoint(self.checkpoint_dir)

    def copy_to(self, work: Path) -> Path:
        """A copy of the repository under `work` (`work/model_repository`), for one module."""
        return Path(shutil.copytree(self.repository, work / "model_repository"))


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory: pytest.TempPathFactory) -> TinyExport:
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # the workers' base directories share a parent
        root = root.parent
    work = root / "tiny-export"
    done = work / "done"
    with FileLock(str(root / "tiny-export.lock")):
        if not done.exists():
            shutil.rmtree(work, ignore_errors=True)
            checkpoint = Checkpoint.initialise(get_config("tiny"), seed=_SEED)
            checkpoint_dir = save_checkpoint(checkpoint, work / "ckpt")
            export_repository(
                checkpoint_dir,
                work / "model_repository",
                ExportSettings(max_candidates=MAX_CANDIDATES),
            )
            done.touch()
    return TinyExport(work / "ckpt", work / "model_repository")
