"""Markdown tables, as every benchmark prints them (and the README and docs quote them)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A header line, a `---` separator per column, then one line per row of cells."""
    lines = [_line(header), _line(["---"] * len(header))]
    lines += [_line(cells) for cells in rows]
    return "\n".join(lines)


def _line(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"
