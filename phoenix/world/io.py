"""Reading a synthetic world back: `load_world(path)` checks the directory against the contract in
`phoenix.world.schema` and returns every table as a `pyarrow.Table`.

Only Parquet and JSON are read; nothing is ever unpickled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from phoenix.errors import WorldError
from phoenix.world.schema import FORMAT_VERSION, META_FILE, TABLES, table_path

__all__ = ["FORMAT_VERSION", "World", "load_world", "table_path"]


@dataclass(frozen=True, eq=False)
class World:
    """A loaded world: the parsed world.json and one Arrow table per name in `schema.TABLES`."""

    path: Path
    meta: dict[str, Any]
    users: pa.Table
    follows: pa.Table
    blocks: pa.Table
    mutes: pa.Table
    muted_keywords: pa.Table
    posts: pa.Table
    engagements: pa.Table

    @property
    def now_ms(self) -> int:
        """The world's "now" in Unix milliseconds: every post and impression is before it."""
        return int(self.meta["now_ms"])

    @property
    def topics(self) -> list[str]:
        """Topic names, indexed by the `topic` column of posts and the `taste` vectors of users."""
        return list(self.meta["topics"])

    def table(self, name: str) -> pa.Table:
        """The table called `name` (one of `schema.TABLES`)."""
        if name not in TABLES:
            raise WorldError(f"unknown table {name!r}; tables: {', '.join(TABLES)}")
        return getattr(self, name)


def load_world(path: str | Path) -> World:
    """Load and check a world directory written by `phoenix world`.

    Raises `WorldError` naming the missing directory, file or key, or the column that is missing or
    has the wrong type.
    """
    path = Path(path)
    if not path.is_dir():
        raise WorldError(f"world directory not found: {path}")
    meta = _read_meta(path / META_FILE)
    tables = {name: _read_table(table_path(path, name), schema) for name, schema in TABLES.items()}
    return World(path=path, meta=meta, **tables)


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WorldError(f"{path.name} is missing from the world directory {path.parent}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WorldError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise WorldError(f"{path} must hold a JSON object, got {type(meta).__name__}")
    for key in ("schema_version", "now_ms", "topics"):
        if key not in meta:
            raise WorldError(f"{path} has no {key!r} key")
    if meta["schema_version"] != FORMAT_VERSION:
        raise WorldError(
            f"{path}: schema_version {meta['schema_version']!r} is not supported "
            f"(expected {FORMAT_VERSION}); regenerate the world with 'phoenix world'"
        )
    if not isinstance(meta["now_ms"], int):
        raise WorldError(f"{path}: now_ms must be an integer, got {meta['now_ms']!r}")
    return meta


def _read_table(path: Path, expected: pa.Schema) -> pa.Table:
    if not path.is_file():
        raise WorldError(
            f"table file {path.name} is missing from the world directory {path.parent}"
        )
    try:
        _check_schema(path, pq.read_schema(path), expected)
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise WorldError(f"cannot read {path}: {exc}") from exc
    # Same columns, maybe in another order: present them in the contract's order.
    return table.select(expected.names)


def _check_schema(path: Path, actual: pa.Schema, expected: pa.Schema) -> None:
    for field in expected:
        index = actual.get_field_index(field.name)
        if index < 0:
            raise WorldError(f"{path.name}: column {field.name!r} is missing")
        found = actual.field(index).type
        if found != field.type:
            raise WorldError(
                f"{path.name}: column {field.name!r} has type {found}, expected {field.type}"
            )
    extra = [name for name in actual.names if expected.get_field_index(name) < 0]
    if extra:
        raise WorldError(f"{path.name}: unexpected column(s) {', '.join(map(repr, extra))}")
