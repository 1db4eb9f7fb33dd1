"""The durable store: every accepted write on disk, in one SQLite file, before the API answers.

SQLite in WAL mode with `synchronous=FULL`: a transaction is fsync'd when `commit` returns, so an
event `append` took survives a `kill -9` (or a power cut) the moment the call is back. The store
keeps the dataset tables (`orchestrator.state.dataset.TABLES`, the same column names; a post's
semantic ids as six columns) plus what writes add beyond a dataset:

- `deleted_posts(post_id, author_id)`: a deleted id stays deleted (a late create of it loses),
  and its author is kept for the histories that engaged with it;
- `link_counts(post_id, replies, reposts, quotes)`: what created replies, reposts and quotes
  added to the counts of the post they point at (an imported dataset's counts come from its
  engagements alone, as a world's do);
- `meta(key, value)`: the service clock (`clock_offset_ms`, `clock_high_ms`: time keeps
  advancing across restarts and never goes back) and `position`, the id of the last shared-log
  entry applied (for a replica that reads one).

The in-memory state is rebuilt at start from `load()`: a `Dataset` plus `StoredExtras`, the
same path a world takes (`orchestrator.state.world_state.load_state`).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa

from orchestrator.state.dataset import TABLES, Dataset
from orchestrator.state.events import (
    Engaged,
    Event,
    KeywordMuted,
    PostCreated,
    PostDeleted,
    Related,
)
from orchestrator.state.world_state import StoredExtras
from phoenix.actions import ACTIONS
from phoenix.errors import PhoenixError
from phoenix.snowflake import created_ms
from phoenix.world.schema import SID_LEVELS

#: The store file inside a data directory.
STORE_FILE = "state.sqlite"

#: Columns holding a post's semantic ids, coarse to fine.
_SID_COLUMNS = tuple(f"sid{i}" for i in range(SID_LEVELS))

#: The relation tables: (table, viewer column, target column) per `Related.relation`.
_RELATIONS = {
    "follow": ("follows", "follower_id", "followee_id"),
    "block": ("blocks", "user_id", "blocked_id"),
    "mute": ("mutes", "user_id", "muted_id"),
}

_SQL_TYPES = {
    pa.int8(): "INTEGER",
    pa.int16(): "INTEGER",
    pa.int32(): "INTEGER",
    pa.int64(): "INTEGER",
    pa.bool_(): "INTEGER",
    pa.float32(): "REAL",
    pa.string(): "TEXT",
}


def _columns(table: str) -> list[str]:
    """The store's columns of a dataset table (semantic ids spread over six columns)."""
    names = []
    for field in TABLES[table]:
        names.extend(_SID_COLUMNS if field.name == "semantic_ids" else [field.name])
    return names


def _schema_sql() -> list[str]:
    statements = []
    keys = {"users": "user_id", "posts": "post_id"}
    for table, schema in TABLES.items():
        cols = []
        for field in schema:
            if field.name == "semantic_ids":
                cols.extend(f"{c} INTEGER NOT NULL" for c in _SID_COLUMNS)
                continue
            key = " PRIMARY KEY" if keys.get(table) == field.name else ""
            cols.append(f"{field.name} {_SQL_TYPES[field.type]} NOT NULL{key}")
        statements.append(f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(cols)})")
    for table, a, b in _RELATIONS.values():
        statements.append(f"CREATE UNIQUE INDEX IF NOT EXISTS {table}_pair ON {table} ({a}, {b})")
    statements += [
        "CREATE UNIQUE INDEX IF NOT EXISTS muted_keywords_pair"
        " ON muted_keywords (user_id, keyword)",
        "CREATE TABLE IF NOT EXISTS deleted_posts"
        " (post_id INTEGER PRIMARY KEY, author_id INTEGER NOT NULL)",
        "CREATE TABLE IF NOT EXISTS link_counts (post_id INTEGER PRIMARY KEY,"
        " replies INTEGER NOT NULL, reposts INTEGER NOT NULL, quotes INTEGER NOT NULL)",
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ]
    return statements


class StoreError(PhoenixError):
    """The store refused a change (it is left as it was)."""


class SqliteStore:
    """One SQLite file; safe to call from several threads (one connection behind a lock)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # Transactions are explicit (BEGIN ... COMMIT in `_transaction`).
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=OFF")
        with self._transaction() as db:
            for statement in _schema_sql():
                db.execute(statement)

    @classmethod
    def in_dir(cls, data_dir: str | Path) -> SqliteStore:
        """The store of a data directory (created when missing)."""
        return cls(Path(data_dir) / STORE_FILE)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed (and fsync'd) on exit, rolled back on an error."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # ---------------------------------------------------------------- writes

    def append(self, events: Sequence[Event], position: str | None = None) -> None:
        """Store `events` in one transaction, durable when this returns; `position` (the shared
        log's id of the last of them) is recorded in the same transaction."""
        with self._transaction() as db:
            high = 0
            for event in events:
                high = max(high, _APPLY[type(event)](db, event))
            if high:
                db.execute(
                    "INSERT INTO meta VALUES ('clock_high_ms', ?) ON CONFLICT(key) DO UPDATE"
                    " SET value = max(CAST(value AS INTEGER), excluded.value)",
                    (high,),
                )
            if position is not None:
                _set_meta(db, "position", position)

    def import_dataset(self, dataset: Dataset, position: str | None = None) -> None:
        """Add every row of `dataset` in one transaction: all of it or, on any error, nothing
        (a user or post id already stored is a `StoreError` naming it). `position` (the shared
        log's id of the dataset's last entry) is recorded in the same transaction."""
        with self._transaction() as db:
            if position is not None:
                _set_meta(db, "position", position)
            for table in TABLES:
                rows = dataset.table(table)
                if rows.num_rows == 0:
                    continue
                cols = _columns(table)
                verb = "INSERT" if table in ("users", "posts") else "INSERT OR IGNORE"
                sql = f"{verb} INTO {table} ({', '.join(cols)}) VALUES ({_marks(len(cols))})"
                try:
                    for batch in rows.to_batches(max_chunksize=100_000):
                        db.executemany(sql, _rows(table, batch))
                except sqlite3.IntegrityError as exc:
                    raise StoreError(
                        f"{table}: {exc} (already stored, or twice in the data)"
                    ) from exc
            if dataset.now_ms is not None and _get_meta(db, "clock_offset_ms") is None:
                _set_meta(db, "clock_offset_ms", str(dataset.now_ms - _wall_ms()))

    # ---------------------------------------------------------------- reads

    def position(self) -> str | None:
        """The shared log's id of the last entry applied (None before any)."""
        with self._lock:
            return _get_meta(self._db, "position")

    def is_empty(self) -> bool:
        """No users and no posts (nothing imported or written yet)."""
        with self._lock:
            return all(
                self._db.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone() is None
                for t in ("users", "posts", "deleted_posts")
            )

    def now_ms(self) -> int:
        """The service clock's reading: the wall clock shifted by the offset of the first
        dataset imported (none: the wall clock), and never before the newest time stored."""
        with self._lock:
            offset = int(_get_meta(self._db, "clock_offset_ms") or 0)
            high = int(_get_meta(self._db, "clock_high_ms") or 0)
        return max(_wall_ms() + offset, high + 1)

    def load(self, progress: Callable[[str], None] | None = None) -> tuple[Dataset, StoredExtras]:
        """Everything stored, as a dataset (its `now_ms` the clock's reading) and the extras a
        dataset does not hold; `progress` is told the name of each table as it is read."""
        tables: dict[str, pa.Table] = {}
        with self._lock:
            for table, schema in TABLES.items():
                if progress is not None:
                    progress(table)
                order = "post_id" if table == "posts" else "rowid"
                cursor = self._db.execute(
                    f"SELECT {', '.join(_columns(table))} FROM {table} ORDER BY {order}"
                )
                tables[table] = _arrow(table, schema, cursor.fetchall())
            deleted = self._db.execute("SELECT post_id, author_id FROM deleted_posts").fetchall()
            links = self._db.execute(
                "SELECT post_id, replies, reposts, quotes FROM link_counts"
            ).fetchall()
        link_array = np.array(links, np.int64).reshape(-1, 4)
        extras = StoredExtras(
            deleted=dict(deleted),
            link_ids=link_array[:, 0].copy(),
            link_counts=link_array[:, 1:].copy(),
        )
        return Dataset(tables, now_ms=self.now_ms()), extras


# -------------------------------------------------------------------- one event, in SQL
# Each returns the event's time in ms (0 when it has none), for the clock's high-water mark.


def _post_created(db: sqlite3.Connection, e: PostCreated) -> int:
    if db.execute("SELECT 1 FROM deleted_posts WHERE post_id = ?", (e.post_id,)).fetchone():
        return 0  # a delete wins over a create that comes later
    sids = [*e.semantic_ids[:SID_LEVELS], *[0] * (SID_LEVELS - len(e.semantic_ids))]
    row = [getattr(e, c) if c != "is_video" else int(e.is_video) for c in _POST_SCALARS]
    cols = [*_POST_SCALARS, *_SID_COLUMNS]
    db.execute(
        f"INSERT OR REPLACE INTO posts ({', '.join(cols)}) VALUES ({_marks(len(cols))})",
        (*row, *sids),
    )
    for target, column in (
        (e.parent_id, "replies"),
        (e.reposted_id, "reposts"),
        (e.quoted_id, "quotes"),
    ):
        if target:
            db.execute(
                "INSERT INTO link_counts (post_id, replies, reposts, quotes) VALUES (?, 0, 0, 0)"
                " ON CONFLICT(post_id) DO NOTHING",
                (target,),
            )
            db.execute(
                f"UPDATE link_counts SET {column} = {column} + 1 WHERE post_id = ?", (target,)
            )
    return int(created_ms(e.post_id))


_POST_SCALARS = tuple(c for c in _columns("posts") if c not in _SID_COLUMNS)


def _post_deleted(db: sqlite3.Connection, e: PostDeleted) -> int:
    row = db.execute("SELECT author_id FROM posts WHERE post_id = ?", (e.post_id,)).fetchone()
    db.execute("DELETE FROM posts WHERE post_id = ?", (e.post_id,))
    db.execute(
        "INSERT OR IGNORE INTO deleted_posts VALUES (?, ?)", (e.post_id, row[0] if row else 0)
    )
    return 0


_ENGAGEMENT_COLUMNS = _columns("engagements")


def _engaged(db: sqlite3.Connection, e: Engaged) -> int:
    values = {
        "viewer_id": e.viewer_id,
        "post_id": e.post_id,
        "served_ms": e.served_ms,
        "surface": e.surface,
        "dwell_time_s": e.dwell_s,
        **{a: int(x) for a, x in zip(ACTIONS, e.actions, strict=True)},
    }
    db.execute(
        f"INSERT INTO engagements ({', '.join(_ENGAGEMENT_COLUMNS)})"
        f" VALUES ({_marks(len(_ENGAGEMENT_COLUMNS))})",
        [values[c] for c in _ENGAGEMENT_COLUMNS],
    )
    return e.served_ms


def _related(db: sqlite3.Connection, e: Related) -> int:
    table, a, b = _RELATIONS[e.relation]
    if e.undo:
        db.execute(f"DELETE FROM {table} WHERE {a} = ? AND {b} = ?", (e.viewer_id, e.target_id))
    else:
        db.execute(
            f"INSERT OR IGNORE INTO {table} ({a}, {b}) VALUES (?, ?)", (e.viewer_id, e.target_id)
        )
    return 0


def _keyword_muted(db: sqlite3.Connection, e: KeywordMuted) -> int:
    if e.remove:
        db.execute(
            "DELETE FROM muted_keywords WHERE user_id = ? AND keyword = ?", (e.viewer_id, e.keyword)
        )
    else:
        db.execute("INSERT OR IGNORE INTO muted_keywords VALUES (?, ?)", (e.viewer_id, e.keyword))
    return 0


_APPLY: dict[type, Callable[[sqlite3.Connection, object], int]] = {
    PostCreated: _post_created,  # type: ignore[dict-item]
    PostDeleted: _post_deleted,  # type: ignore[dict-item]
    Engaged: _engaged,  # type: ignore[dict-item]
    Related: _related,  # type: ignore[dict-item]
    KeywordMuted: _keyword_muted,  # type: ignore[dict-item]
}


# -------------------------------------------------------------------- helpers


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def _get_meta(db: sqlite3.Connection, key: str) -> str | None:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def _set_meta(db: sqlite3.Connection, key: str, value: str) -> None:
    db.execute(
        "INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def _rows(table: str, batch: pa.RecordBatch) -> Iterable[tuple]:
    """The rows of an Arrow batch as SQL parameters (booleans as 0/1, semantic ids spread)."""
    cols = []
    for field in TABLES[table]:
        column = batch.column(field.name)
        if field.name == "semantic_ids":
            codes = column.flatten().to_numpy(zero_copy_only=False).reshape(-1, SID_LEVELS)
            cols.extend(codes[:, i].tolist() for i in range(SID_LEVELS))
        elif field.type == pa.bool_():
            cols.append(column.cast(pa.int8()).to_pylist())
        else:
            cols.append(column.to_pylist())
    return zip(*cols, strict=True)


def _arrow(table: str, schema: pa.Schema, rows: list[tuple]) -> pa.Table:
    """SQL rows (the columns of `_columns(table)`) as an Arrow table of `schema`."""
    names = _columns(table)
    by_name = dict(zip(names, zip(*rows, strict=True), strict=True)) if rows else {}
    arrays = []
    for field in schema:
        if field.name == "semantic_ids":
            codes = np.array([by_name.get(c, ()) for c in _SID_COLUMNS], np.int16).T
            flat = pa.array(codes.reshape(-1), pa.int16())
            arrays.append(pa.FixedSizeListArray.from_arrays(flat, SID_LEVELS))
        elif field.type == pa.bool_():
            arrays.append(pa.array(np.array(by_name.get(field.name, ()), np.bool_)))
        else:
            arrays.append(pa.array(list(by_name.get(field.name, ())), field.type))
    return pa.Table.from_arrays(arrays, schema=schema)
