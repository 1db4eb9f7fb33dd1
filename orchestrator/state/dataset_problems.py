"""Collecting what is wrong with a dataset, row by row, without building a Python object per bad
row: checks hand over whole index arrays and only the first few become `Problem`s."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from orchestrator.state.dataset import DatasetError, Problem

#: How many problems a `DatasetError` lists (it counts them all).
MAX_LISTED = 20


@dataclass
class Source:
    """The file a table was read from, to name its rows: `lines` holds the 1-based line of each
    row of a JSONL file (blank lines are skipped, so rows and lines can differ); a Parquet row i
    is row i + 1."""

    name: str
    path: Path
    jsonl: bool = False
    lines: npt.NDArray[np.int64] | None = None

    def rows(self, index: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """1-based row labels (JSONL: line numbers) of 0-based row indices."""
        index = np.asarray(index, np.int64)
        if self.jsonl:
            if self.lines is None:
                self.lines = _nonblank_lines(self.path)
            return self.lines[index]
        return index + 1


def _nonblank_lines(path: Path) -> npt.NDArray[np.int64]:
    with open(path, "rb") as f:
        return np.array([n for n, line in enumerate(f, 1) if line.strip()], np.int64)


@dataclass
class Problems:
    """Every problem counted; the first `MAX_LISTED` kept, with their rows named."""

    listed: list[Problem] = field(default_factory=list)
    total: int = 0

    def add(self, source: Source | str, row: int | None, column: str | None, message: str) -> None:
        """One problem; `row` is already a 1-based label (or None for a whole file/column)."""
        self.total += 1
        if len(self.listed) < MAX_LISTED:
            name = source if isinstance(source, str) else source.name
            self.listed.append(Problem(name, row, column, message))

    def rows(
        self,
        source: Source,
        index: npt.ArrayLike,
        column: str,
        message: str | Callable[[int], str],
    ) -> None:
        """The same problem at each 0-based row in `index` (a bool mask or indices); `message`
        may be a function of the row index, called only for the rows listed."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        if not len(index):
            return
        room = max(0, MAX_LISTED - len(self.listed))
        shown = index[:room]
        for i, label in zip(shown.tolist(), source.rows(shown).tolist(), strict=True):
            text = message(i) if callable(message) else message
            self.listed.append(Problem(source.name, label, column, text))
        self.total += len(index)

    def raise_if_any(self) -> None:
        if self.total:
            raise DatasetError(self.listed, self.total)
