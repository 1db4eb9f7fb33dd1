"""Posts as the orchestrator sees them, and the store that hydrates candidates.

A `Post` is immutable; the store keeps every known post plus the ids of deleted ones, so a delete
wins over a create that arrives late (the same rule as Thunder's, docs/DESIGN.md §6). Beside each
post it keeps what changes: the post's engagement counts (favorites, replies, reposts, quotes and
views, `phoenix.features.COUNT_NAMES`), which the ranker reads.

The request path reads the store by whole arrays of ids (`columns`, `token_lines`): each post is
a row of parallel NumPy arrays and an id is found by a binary search over the ids, so hydrating a
thousand candidates is a few gathers instead of a thousand dictionary look-ups.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from orchestrator.id_arrays import find
from orchestrator.pipeline.text import token_line
from phoenix.actions import ACTIONS
from phoenix.counts import COUNTED_ACTIONS
from phoenix.features import COUNT_NAMES
from phoenix.snowflake import created_ms
from phoenix.world.schema import ORIGINAL, REPLY, REPOST, SID_LEVELS

I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

#: Columns of the engagement counts (`phoenix.features.COUNT_NAMES`).
REPLIES, REPOSTS, QUOTES, VIEWS = (
    COUNT_NAMES.index(name) for name in ("reply", "repost", "quote", "view")
)
NUM_COUNTS = len(COUNT_NAMES)


def semantic_ids(posts: Sequence[Post]) -> I64:
    """[N, SID_LEVELS] semantic ids of `posts`, 0 where a post has none (X's missing row)."""
    out = np.zeros((len(posts), SID_LEVELS), np.int64)
    for i, post in enumerate(posts):
        k = min(len(post.semantic_ids), SID_LEVELS)
        out[i, :k] = post.semantic_ids[:k]
    return out


def engagement_counts(actions: Sequence[bool]) -> I64:
    """What one served impression adds to its post's counts: a view, plus each counted action
    (`phoenix.counts.COUNTED_ACTIONS`) it carries; `actions` holds a bool per `ACTIONS`."""
    delta = np.zeros(NUM_COUNTS, np.int64)
    for name in COUNTED_ACTIONS:
        delta[COUNT_NAMES.index(name)] = bool(actions[ACTIONS.index(name)])
    delta[VIEWS] = 1
    return delta


@dataclass(frozen=True, slots=True)
class Post:
    """One post. `kind` is `phoenix.world.schema.ORIGINAL`, `REPLY` or `REPOST`."""

    post_id: int
    author_id: int
    kind: int = ORIGINAL
    parent_id: int = 0  # replied-to post, 0 unless a reply
    reposted_id: int = 0  # reposted post, 0 unless a repost
    conversation_id: int = 0  # root of the thread; the post's own id for a root
    is_video: bool = False  # a repost of a video counts as a video
    video_duration_s: float = 0.0
    text: str = ""
    reposted_author_id: int = 0  # author of the reposted post, 0 unless a repost
    quoted_id: int = 0  # the post this one quotes, 0 when none
    semantic_ids: tuple[int, ...] = ()  # coarse to fine, 0 = missing; () when it has none

    @property
    def created_ms(self) -> int:
        """Creation time in Unix ms, from the snowflake id."""
        return int(created_ms(self.post_id))

    @property
    def is_original(self) -> bool:
        return self.kind == ORIGINAL

    @property
    def is_reply(self) -> bool:
        return self.kind == REPLY

    @property
    def is_repost(self) -> bool:
        return self.kind == REPOST

    @property
    def thread_id(self) -> int:
        """The conversation this post belongs to (its own id when it starts one)."""
        return self.conversation_id or self.post_id


@dataclass(frozen=True)
class PostColumns:
    """Facts of some posts, one entry per id asked for; an unknown or deleted id reads
    `found=False` and zeros."""

    found: Bools
    author_id: I64
    kind: I64  # ORIGINAL, REPLY or REPOST
    parent_id: I64
    reposted_id: I64
    quoted_id: I64
    thread_id: I64  # `Post.thread_id`
    reposted_author_id: I64
    is_video: Bools
    video_ms: I64  # `Post.video_duration_s` in whole ms (whether or not `is_video`)
    counts: I64  # [n, NUM_COUNTS] engagement counts as of now (`COUNT_NAMES` order)
    sids: I64  # [n, SID_LEVELS] semantic ids, 0 = missing

    @property
    def impressions(self) -> I64:
        """Times each post was served (X's view count)."""
        return self.counts[:, VIEWS]


class PostStore(Protocol):
    """What the request path needs from a post store."""

    def get(self, post_id: int) -> Post | None:
        """The post, or None when it is unknown or deleted."""

    def columns(self, post_ids: I64) -> PostColumns:
        """The facts of many posts at once (the hydrator's read)."""

    def token_lines(self, post_ids: I64) -> npt.NDArray[np.object_]:
        """Each post's text as `orchestrator.pipeline.text.token_line` reads it ("" if unknown)."""

    def add(self, post: Post) -> bool:
        """Store a post; False when its id was deleted before (the delete wins)."""

    def delete(self, post_id: int) -> Post | None:
        """Forget a post for good; the post that was deleted, if it was known."""

    def is_deleted(self, post_id: int) -> bool: ...

    def counts(self, post_id: int) -> I64:
        """The post's engagement counts [NUM_COUNTS] (zeros when nothing is known)."""

    def add_counts(self, post_id: int, delta: npt.ArrayLike) -> None:
        """Add `delta` [NUM_COUNTS] to the post's counts (kept for a post not stored yet)."""


_MIN_ROOM = 64

#: `PostColumns` fields held as one array per field, one row per post ever stored.
_INT_COLUMNS = (
    "author_id",
    "kind",
    "parent_id",
    "reposted_id",
    "quoted_id",
    "thread_id",
    "reposted_author_id",
    "video_ms",
)


class InMemoryPostStore:
    """Every post as a `Post` (for `get`) and as a row of column arrays (for `columns`);
    thread-safe for one writer and many readers.

    Rows are appended and never reused: a deleted post's row stays, marked dead. Row 0 holds no
    post (all zeros, the empty text): an unknown id reads it, so a gather needs no masking. Ids
    are found by `searchsorted` over the ids in row order while posts arrive in id order
    (snowflake ids from a clock do), or over a sorted copy rebuilt lazily after an out-of-order
    arrival.
    """

    def __init__(
        self,
        posts: Iterable[Post] = (),
        counts: tuple[npt.ArrayLike, npt.ArrayLike] | None = None,
    ) -> None:
        """`counts`: (post ids [m], their counts [m, NUM_COUNTS]) to start from."""
        self._posts: dict[int, Post] = {}
        self._row_of: dict[int, int] = {}
        self._deleted: set[int] = set()
        self._pending_counts: dict[int, I64] = {}  # for ids not stored (yet)
        self._lock = threading.Lock()
        self._n = 1  # rows in use, row 0 included; the arrays have room for more
        self._ids = np.zeros(_MIN_ROOM, np.int64)
        self._cols = {name: np.zeros(_MIN_ROOM, np.int64) for name in _INT_COLUMNS}
        self._counts = np.zeros((_MIN_ROOM, NUM_COUNTS), np.int64)
        self._sids = np.zeros((_MIN_ROOM, SID_LEVELS), np.int64)
        self._alive = np.zeros(_MIN_ROOM, np.bool_)
        self._is_video = np.zeros(_MIN_ROOM, np.bool_)
        self._texts = np.zeros(_MIN_ROOM, object)
        self._lines = np.zeros(_MIN_ROOM, object)  # token lines, computed on first read
        self._has_line = np.zeros(_MIN_ROOM, np.bool_)
        self._ids[0] = np.iinfo(np.int64).min  # below every id: row order stays id order
        self._texts[0] = self._lines[0] = ""
        self._has_line[0] = True
        self._in_order = True  # ids ascend with rows: search `_ids` itself
        self._sorted: tuple[I64, I64] | None = None  # (sorted ids, their rows) otherwise
        self._append([p for p in {p.post_id: p for p in posts}.values()])
        if counts is not None:
            self._set_counts(*counts)

    # ---------------------------------------------------------------- single posts

    def get(self, post_id: int) -> Post | None:
        return self._posts.get(post_id)

    def add(self, post: Post) -> bool:
        with self._lock:
            if post.post_id in self._deleted:
                return False
            row = self._row_of.get(post.post_id)
            if row is None:
                self._append([post])
            else:  # the same id again: the newer facts replace the row's
                self._posts[post.post_id] = post
                self._write(row, [post])
            return True

    def delete(self, post_id: int) -> Post | None:
        with self._lock:
            self._deleted.add(post_id)
            row = self._row_of.pop(post_id, None)
            if row is not None:
                self._alive[row] = False
            return self._posts.pop(post_id, None)

    def is_deleted(self, post_id: int) -> bool:
        return post_id in self._deleted

    def counts(self, post_id: int) -> I64:
        with self._lock:
            row = self._row_of.get(post_id)
            if row is None:
                return self._pending_counts.get(post_id, np.zeros(NUM_COUNTS, np.int64)).copy()
            return self._counts[row].copy()

    def add_counts(self, post_id: int, delta: npt.ArrayLike) -> None:
        step = np.asarray(delta, np.int64).reshape(NUM_COUNTS)
        with self._lock:
            row = self._row_of.get(post_id)
            if row is None:
                pending = self._pending_counts.setdefault(post_id, np.zeros(NUM_COUNTS, np.int64))
                pending += step
            else:
                self._counts[row] += step

    def _set_counts(self, post_ids: npt.ArrayLike, counts: npt.ArrayLike) -> None:
        ids = np.asarray(post_ids, np.int64).reshape(-1)
        values = np.asarray(counts, np.int64).reshape(len(ids), NUM_COUNTS)
        with self._lock:
            rows = self._rows(ids)
            stored = rows > 0
            self._counts[rows[stored]] = values[stored]
            for i in np.flatnonzero(~stored).tolist():
                self._pending_counts[int(ids[i])] = values[i].copy()

    def __len__(self) -> int:
        return len(self._posts)

    def __iter__(self) -> Iterator[Post]:
        return iter(list(self._posts.values()))

    # ---------------------------------------------------------------- many posts

    def columns(self, post_ids: I64) -> PostColumns:
        ids = np.asarray(post_ids, np.int64)
        with self._lock:
            rows = self._rows(ids)
            cols = {name: col.take(rows) for name, col in self._cols.items()}
            video = self._is_video.take(rows)
            counts = self._counts.take(rows, 0)
            sids = self._sids.take(rows, 0)
        return PostColumns(found=rows > 0, is_video=video, counts=counts, sids=sids, **cols)

    def token_lines(self, post_ids: I64) -> npt.NDArray[np.object_]:
        ids = np.asarray(post_ids, np.int64)
        with self._lock:
            rows = self._rows(ids)
            missing = np.unique(rows[~self._has_line.take(rows)])
            for row in missing.tolist():
                self._lines[row] = token_line(self._texts[row])
            self._has_line[missing] = True
            return self._lines.take(rows)

    # ---------------------------------------------------------------- internals (lock held)

    def _rows(self, ids: I64) -> I64:
        """The row of each id, 0 where unknown or deleted."""
        n = self._n
        if self._in_order:
            keys, rows = self._ids[:n], None
        else:
            if self._sorted is None:
                order = np.argsort(self._ids[:n], kind="stable")
                self._sorted = (self._ids[order], order)
            keys, rows = self._sorted
        at, hit = find(keys, ids)
        row = at if rows is None else rows[at]
        hit &= self._alive.take(row)
        return row * hit

    def _append(self, posts: list[Post]) -> None:
        """New rows for posts not stored yet (callers check ids against `_row_of`)."""
        if not posts:
            return
        n0, k = self._n, len(posts)
        size = n0 + k
        if size > len(self._ids):
            room = max(size, 2 * len(self._ids))
            self._ids = _grown(self._ids, room)
            self._cols = {name: _grown(col, room) for name, col in self._cols.items()}
            self._counts = _grown(self._counts, room)
            self._sids = _grown(self._sids, room)
            self._alive = _grown(self._alive, room)
            self._is_video = _grown(self._is_video, room)
            self._texts = _grown(self._texts, room)
            self._lines = _grown(self._lines, room)
            self._has_line = _grown(self._has_line, room)
        ids = np.fromiter((p.post_id for p in posts), np.int64, k)
        previous = self._ids[n0 - 1]
        if self._in_order and not (ids[0] > previous and (k == 1 or (np.diff(ids) > 0).all())):
            self._in_order = False
        self._sorted = None
        self._ids[n0:size] = ids
        self._n = size
        for i, post in enumerate(posts):
            self._posts[post.post_id] = post
            self._row_of[post.post_id] = n0 + i
        self._write(n0, posts)
        pending = self._pending_counts
        if pending:
            for i, post in enumerate(posts):
                counts = pending.pop(post.post_id, None)
                if counts is not None:
                    self._counts[n0 + i] = counts

    def _write(self, row: int, posts: list[Post]) -> None:
        """The column values of `posts` into rows `row`, `row + 1`, ..."""
        end = row + len(posts)
        cols = self._cols
        cols["author_id"][row:end] = [p.author_id for p in posts]
        cols["kind"][row:end] = [p.kind for p in posts]
        cols["parent_id"][row:end] = [p.parent_id for p in posts]
        cols["reposted_id"][row:end] = [p.reposted_id for p in posts]
        cols["quoted_id"][row:end] = [p.quoted_id for p in posts]
        cols["thread_id"][row:end] = [p.thread_id for p in posts]
        cols["reposted_author_id"][row:end] = [p.reposted_author_id for p in posts]
        cols["video_ms"][row:end] = [round(p.video_duration_s * 1000) for p in posts]
        self._is_video[row:end] = [p.is_video for p in posts]
        self._sids[row:end] = semantic_ids(posts)
        self._alive[row:end] = True
        self._texts[row:end] = [p.text for p in posts]
        self._has_line[row:end] = False


def _grown(arr: np.ndarray, size: int) -> np.ndarray:
    """`arr` copied into a zeroed array of `size` rows."""
    new = np.zeros((size, *arr.shape[1:]), arr.dtype)
    new[: len(arr)] = arr
    return new
