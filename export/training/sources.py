"""Where training and evaluation read their data: a synthetic world, the durable store of a data
directory (what `phoenix serve --data` / `phoenix load --data` keep), or dataset files.

The store and the files give a `Dataset` (orchestrator/state/dataset.py, docs/DATA.md); one
conversion, `dataset_world`, makes it the `World` that `build_training_data` reads. A dataset
lacks what only a synthetic world knows; those columns take neutral values, and none of them is
read by training (`export/training/data.py` reads the users' profile columns, the follows, each
post's id, author, creation time and semantic ids, the engagements and the world's "now").
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa

from phoenix.errors import PhoenixError
from phoenix.snowflake import created_ms
from phoenix.world import schema as world_schema
from phoenix.world.io import World, load_world

if TYPE_CHECKING:  # the orchestrator's modules are imported when a store or files are read
    from orchestrator.state.dataset import Dataset

Kind = Literal["world", "data", "files"]


class SourceError(PhoenixError):
    """A training source that holds nothing to train on, or is missing."""


@dataclass(frozen=True)
class TrainingSource:
    """Which data a checkpoint was trained on: saved in its metadata so `phoenix eval` can
    rebuild the same split (`now_ms` is where the held-out window ends)."""

    kind: Kind
    paths: tuple[str, ...]
    now_ms: int

    def metadata(self) -> dict[str, Any]:
        return {"kind": self.kind, "paths": list(self.paths), "now_ms": self.now_ms}


def open_source(
    kind: Kind,
    paths: Sequence[Path],
    *,
    now_ms: int | None = None,
    progress: bool = False,
) -> tuple[World, TrainingSource]:
    """The world training reads from a world directory (`kind="world"`, one path), a data
    directory's store ("data", one path) or table files and directories of them ("files",
    checked as `phoenix load` checks them). `now_ms` overrides the source's "now": a world's
    `now_ms`, the store's clock, the files' (a world directory's `now_ms`, else the wall clock)."""
    if kind == "world":
        (path,) = paths
        world = load_world(path)
        if now_ms is not None:
            world = World(**{**vars(world), "meta": {**world.meta, "now_ms": now_ms}})
    else:
        world = dataset_world(_read(kind, paths, now_ms, progress), paths[0])
    source = TrainingSource(kind, tuple(str(Path(p).resolve()) for p in paths), world.now_ms)
    if world.engagements.num_rows == 0:
        raise SourceError(f"{', '.join(source.paths)}: no engagements to train on")
    return world, source


def _read(kind: Kind, paths: Sequence[Path], now_ms: int | None, progress: bool) -> Dataset:
    from orchestrator.state.dataset import Dataset
    from orchestrator.state.dataset_files import read_dataset
    from orchestrator.state.sqlite_store import STORE_FILE, SqliteStore

    if kind == "files":
        dataset = read_dataset(paths, now_ms=now_ms, progress=progress)
    else:
        (path,) = paths
        if not (Path(path) / STORE_FILE).is_file():
            raise SourceError(f"no store in {path} ({STORE_FILE} not found): see 'phoenix load'")
        store = SqliteStore.in_dir(path)
        try:
            dataset, _ = store.load()
        finally:
            store.close()
    if now_ms is not None:
        dataset = Dataset(dataset.tables, now_ms=now_ms)
    elif dataset.now_ms is None:  # files that say no "now": the wall clock's
        dataset = Dataset(dataset.tables, now_ms=time.time_ns() // 1_000_000)
    return dataset


def dataset_world(dataset: Dataset, path: Path) -> World:
    """A dataset as the tables of a world: each post's creation time from its snowflake id; the
    columns only a synthetic world has (tastes, topics, authorship, follower counts, activity)
    neutral, as none of them is read by training. Engagements with a post the dataset lacks (a
    post deleted through the service) are dropped: nothing is known of that post to train on."""
    if dataset.now_ms is None:
        raise ValueError("dataset_world needs the dataset's now_ms")
    posts = dataset.table("posts").sort_by("post_id")
    post_ids = posts.column("post_id").to_numpy()
    engagements = dataset.table("engagements")
    served = np.isin(engagements.column("post_id").to_numpy(), post_ids)
    users = dataset.table("users").num_rows
    neutral = {
        "users": {
            "taste": pa.array([[]] * users, pa.list_(pa.float32())),
            "is_author": pa.array(np.zeros(users, np.bool_)),
            "author_topic": pa.array(np.full(users, -1, np.int32)),
            "follower_count": pa.array(np.zeros(users, np.int64)),
            "activity": pa.array(np.zeros(users, np.float32)),
        },
        "posts": {
            "created_ms": pa.array(created_ms(post_ids)),
            "topic": pa.array(np.full(len(post_ids), -1, np.int32)),
        },
    }
    tables = {name: dataset.table(name) for name in world_schema.TABLES}
    tables.update(posts=posts, engagements=engagements.filter(pa.array(served)))
    world_tables = {}
    for name, schema in world_schema.TABLES.items():
        extra = neutral.get(name, {})
        columns = [
            extra[f.name] if f.name in extra else tables[name].column(f.name).cast(f.type)
            for f in schema
        ]
        world_tables[name] = pa.Table.from_arrays(columns, schema=schema)
    meta = {
        "schema_version": world_schema.FORMAT_VERSION,
        "now_ms": int(dataset.now_ms),
        "topics": [],
    }
    return World(path=Path(path), meta=meta, **world_tables)
