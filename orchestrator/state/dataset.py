"""A dataset the service's state is loaded from: users, the social graph, muted keywords, posts and
engagements as Arrow tables with the columns below (documented for users in docs/DATA.md).

It is the contract between whoever brings data (`phoenix load` from Parquet or JSONL files, a
synthetic world of `phoenix world`) and the durable store that keeps it. The tables are the
world's tables (phoenix/world/schema.py) without what only a synthetic world knows (tastes,
ground-truth topics) or what the store derives (follower counts, creation times, a repost's
author).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa

from phoenix.actions import ACTIONS
from phoenix.errors import PhoenixError
from phoenix.world import schema as world

#: The columns of each table, in order; `users` beyond `user_id` are X's profile fields
#: (`phoenix.features.PROFILE_FIELDS`, 0 = unknown) and a file may leave any of them out.
TABLES: dict[str, pa.Schema] = {
    "users": pa.schema([f for f in world.USERS if f.name not in {
        "taste", "is_author", "author_topic", "follower_count", "activity"}]),
    "follows": world.FOLLOWS,
    "blocks": world.BLOCKS,
    "mutes": world.MUTES,
    "muted_keywords": world.MUTED_KEYWORDS,
    "posts": pa.schema(
        [f for f in world.POSTS if f.name not in {"created_ms", "topic"}]
        + [pa.field("quoted_id", pa.int64())]
    ),
    "engagements": world.ENGAGEMENTS,
}  # fmt: skip

#: Columns a file may leave out, and the value they then take.
DEFAULTS: dict[str, dict[str, object]] = {
    "users": {f.name: 0 for f in TABLES["users"] if f.name != "user_id"},
    "posts": {
        "kind": world.ORIGINAL,
        "parent_id": 0,
        "reposted_id": 0,
        "conversation_id": 0,
        "quoted_id": 0,
        "is_video": False,
        "video_duration_s": 0.0,
        "text": "",
        "semantic_ids": [0] * world.SID_LEVELS,
    },
    "engagements": {
        "surface": 0,
        "dwell_time_s": 0.0,
        **{a: False for a in ACTIONS},
    },
}


@dataclass(frozen=True)
class Dataset:
    """Some of `TABLES` (a missing name means no rows), each with exactly that table's schema,
    and the dataset's "now" in Unix ms (None: the loader's wall clock)."""

    tables: Mapping[str, pa.Table]
    now_ms: int | None = None

    def table(self, name: str) -> pa.Table:
        """The rows of table `name` (an empty table when the dataset has none)."""
        return self.tables.get(name) or TABLES[name].empty_table()


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset: in `file` (its name as given), at `row` (1-based: the
    line of a JSONL file, the row of a Parquet file; None for the whole file or column), in
    `field` (a column, or None)."""

    file: str
    row: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.file if self.row is None else f"{self.file}:{self.row}"
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


class DatasetError(PhoenixError, ValueError):
    """A dataset that cannot be loaded: the first problems found and how many there are in all.
    Nothing of such a dataset is ever stored."""

    def __init__(self, problems: Sequence[Problem], total: int | None = None) -> None:
        self.problems = tuple(problems)
        self.total = len(self.problems) if total is None else total
        lines = [str(p) for p in self.problems]
        if self.total > len(lines):
            lines.append(f"... and {self.total - len(lines)} more")
        noun = "problem" if self.total == 1 else "problems"
        super().__init__(f"the dataset has {self.total} {noun}:\n  " + "\n  ".join(lines))
