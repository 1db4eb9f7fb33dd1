"""Thunder: the in-memory store of recent in-network posts (docs/DESIGN.md §6).

Per author Thunder keeps three newest-last lists of post ids: originals; replies and reposts; videos
(a video original or a repost of a video, never a reply). A lookup walks each followed author's
lists newest first and applies X's rules: the scan limit, the per-author caps, the reply rule.

The layout makes one lookup a few dozen NumPy calls instead of a Python loop per author (a lookup
for 1,000 followed accounts touches about 10,000 entries, far too many for Python one by one):

- rows: one per held post in four int64 arrays: the id; author, kind and flags packed in one word
  (so checking a reply's parent is one memory access); the id of the post it points to (a
  reply's parent, a repost's reposted post) and that post's row. The `Post` objects sit in an
  object array beside them. Rebuilds renumber the rows in id order;
- segments: each (author, list) pair is a slice of one shared pool of (post id, row) entries, ids
  ascending; a full slice moves to the pool's end with twice the room (amortised O(1) appends);
- authors: a NumPy open-addressing table maps account ids to author numbers a whole following list
  at a time (a dict costs a cache miss or three per account).

Decisions the spec leaves open:

- time: a post is served when `now_ms - retention <= created_ms <= now_ms`. Ingest refuses a post
  already older than the retention relative to Thunder's clock (the newest creation time ingested,
  or the `now_ms` given to `expire`), since no lookup could serve it any more;
- a delete makes the post unservable at once and remembers the id, so a create arriving later
  loses; as in X, the deleted entry stays in its author's lists until it expires and still counts
  toward the entries scanned per author; `expire` forgets ids too old to come back anyway;
- the scan limit counts every entry walked inside the retention window, excluded and deleted
  ones included;
- a repost of the viewer's own post is dropped by the reposted post's author as the repost names
  it (`Post.reposted_author_id`), held or not, as X's Thunder does with the event's source user;
- "in the store" (a reply's parent, a repost's reposted post) means what `get` returns: held and
  not deleted. The parent need not be inside the retention window itself;
- the reply rule's "an author the viewer follows" means one of the same first `max_followed`;
- thread safety: one lock around every write and every read. A lookup is a few hundred
  microseconds of small NumPy calls that hold the GIL, so readers in parallel would gain little;
  the lock is not fair, though, so a writer may wait behind back-to-back lookups: stream creates
  in small batches through `ingest_many` (one lock acquisition per batch).
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterable, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from orchestrator.state.posts import Post
from phoenix.errors import InputError
from phoenix.snowflake import SEQUENCE_BITS, TWITTER_EPOCH_MS
from phoenix.world.schema import ORIGINAL, REPLY, REPOST

_HOUR_MS = 3_600_000
_MAX_ID = (1 << 63) - 1

# The three lists, numbered inside each author's block of segments (segment = author * 3 + list).
_ORIGINALS, _SECONDARY, _VIDEOS = 0, 1, 2
_LISTS = 3

# A row's meta word: author number << 8 | kind << 4 | flags.
_KIND_SHIFT, _AUTHOR_SHIFT, _LOW_BITS = 4, 8, 0xF
# held; on the video list; replies to its thread's root; deleted but still on its lists
_ALIVE, _VIDEO, _ROOT_REPLY, _DELETED = 1, 2, 4, 8


class ThunderSettings(BaseModel):
    """X's published Thunder limits (August 2026 defaults)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    retention_hours: float = Field(48.0, gt=0, description="how long a post stays servable")
    max_followed: int = Field(10_000, ge=1, description="followed accounts read per lookup")
    max_scanned_per_author: int = Field(
        500, ge=1, description="entries walked per author and list, newest first"
    )
    max_originals_per_author: int = Field(50, ge=0, description="originals kept per author")
    max_replies_per_author: int = Field(30, ge=0, description="replies and reposts kept per author")
    max_videos_per_author: int = Field(
        100, ge=0, description="videos kept per author in a video lookup"
    )
    max_results: int = Field(1_200, ge=0, description="posts returned when a lookup names none")
    max_video_results: int = Field(
        600, ge=0, description="posts returned by a video lookup that names no maximum"
    )

    @property
    def retention_ms(self) -> int:
        return round(self.retention_hours * _HOUR_MS)


class Thunder:
    """Recent posts per author, served to followers by the rules of docs/DESIGN.md §6."""

    def __init__(self, settings: ThunderSettings | None = None) -> None:
        self.settings = settings or ThunderSettings()
        self._lock = threading.Lock()
        self._clock_ms = 0  # newest creation time ingested, or now_ms given to expire
        self._newest_id = 0  # newest id ever held: lookups at a later time skip the future check
        self._deleted: set[int] = set()
        self._row_of: dict[int, int] = {}
        self._nrows = 0
        self._ids = np.zeros(0, np.int64)
        self._meta = np.zeros(0, np.int64)
        self._ref_ids = np.zeros(0, np.int64)  # parent of a reply, reposted post of a repost
        self._refs = np.zeros(0, np.int64)  # row of that post, -1 when not held
        self._src_users = np.zeros(0, np.int64)  # a repost's reposted author (account id), else 0
        self._posts = np.zeros(0, object)  # row -> Post, None once deleted
        self._waiting: dict[int, list[int]] = {}  # id not held yet -> rows that refer to it
        self._author_of: dict[int, int] = {}  # account id -> author number, one at a time
        self._author_ids = np.zeros(0, np.int64)  # author number -> account id
        self._authors = _IdTable()  # the same map, a whole following list at a time
        self._seg = np.zeros((0, 3), np.int64)  # per segment: start in the pool, length, room
        self._pool = np.zeros((0, 2), np.int64)  # (post id, row) entries
        self._pool_end = 0

    # ---------------------------------------------------------------- reading

    def __len__(self) -> int:
        """Posts held (not deleted, not yet expired)."""
        return len(self._row_of)

    def get(self, post_id: int) -> Post | None:
        """The held post, or None when unknown, deleted or expired."""
        with self._lock:
            row = self._row_of.get(post_id)
            return None if row is None else self._posts[row]

    def lookup(
        self,
        viewer_id: int,
        following: Sequence[int],
        now_ms: int,
        *,
        exclude: Collection[int] = (),
        max_results: int | None = None,
        video: bool = False,
    ) -> list[Post]:
        """In-network candidates for `viewer_id` at `now_ms`, newest first (docs/DESIGN.md §6). A
        video lookup (`video`) reads the video lists and returns at most `max_video_results` unless
        `max_results` says otherwise."""
        return self._lookup(
            viewer_id, following, now_ms, exclude, max_results, video, "_posts"
        ).tolist()

    def lookup_ids(
        self,
        viewer_id: int,
        following: Sequence[int],
        now_ms: int,
        *,
        exclude: Collection[int] = (),
        max_results: int | None = None,
        video: bool = False,
    ) -> np.ndarray:
        """`lookup`'s posts as an array of their ids (what the feed pipeline takes)."""
        return self._lookup(viewer_id, following, now_ms, exclude, max_results, video, "_ids")

    def _lookup(
        self,
        viewer_id: int,
        following: Sequence[int],
        now_ms: int,
        exclude: Collection[int],
        max_results: int | None,
        video: bool,
        column: str,
    ) -> np.ndarray:
        """`column` (a row array: `_posts` or `_ids`) at the rows a lookup keeps, newest first."""
        s = self.settings
        _check_int("viewer_id", viewer_id, 0)
        _check_int("now_ms", now_ms, 0)
        default = s.max_video_results if video else s.max_results
        limit = default if max_results is None else _check_int("max_results", max_results, 0)
        followed = _as_ids("following", _head(following, s.max_followed))
        excluded = _as_ids("exclude", exclude)
        lo_id = _first_id_at(now_ms - s.retention_ms)
        hi_id = _first_id_at(now_ms + 1) - 1
        with self._lock:  # rows are renumbered by rebuilds: read the column under the same lock
            rows = self._lookup_rows(viewer_id, followed, excluded, lo_id, hi_id, limit, video)
            return np.take(getattr(self, column), rows)

    def _lookup_rows(
        self,
        viewer_id: int,
        followed: np.ndarray,
        excluded: np.ndarray,
        lo_id: int,
        hi_id: int,
        limit: int,
        video: bool,
    ) -> np.ndarray:
        """Rows kept, newest first, at most `limit`. Called with the lock held."""
        s = self.settings
        if limit == 0:
            return np.zeros(0, np.int64)
        authors = np.unique(self._authors.find(followed))
        authors = authors[authors >= 0]
        if video:
            segs = authors * _LISTS + _VIDEOS
            caps = np.full(len(segs), s.max_videos_per_author, np.int64)
        else:
            segs = np.concatenate([authors * _LISTS + _ORIGINALS, authors * _LISTS + _SECONDARY])
            caps = np.repeat([s.max_originals_per_author, s.max_replies_per_author], len(authors))
        table = np.take(self._seg, segs, axis=0)  # np.take: 2-3x faster than [] on rows
        pool = self._pool
        start = table[:, 0]
        end = start + table[:, 1]
        if self._newest_id > hi_id:  # some posts lie in the future of this lookup
            last_ids = pool[:, 0][np.maximum(end - 1, 0)]
            for i in np.flatnonzero((end > start) & (last_ids > hi_id)):
                end[i] = start[i] + np.searchsorted(pool[start[i] : end[i], 0], hi_id, "right")
        scanned = np.minimum(end - start, s.max_scanned_per_author)

        # The entries walked: newest first within each segment, segments one after another.
        total = int(scanned.sum())
        if total == 0:
            return np.zeros(0, np.int64)
        first = np.cumsum(scanned) - scanned
        entries = np.take(pool, np.repeat(end - 1 + first, scanned) - np.arange(total), axis=0)
        entry_ids, entry_rows = entries[:, 0], entries[:, 1]
        keep = (entry_ids >= lo_id) & ((np.take(self._meta, entry_rows) & _ALIVE) != 0)
        if len(excluded):
            keep &= ~np.isin(entry_ids, excluded)

        # Originals pass as they are; replies, reposts and videos are checked.
        offset = int(first[len(authors)]) if not video else 0  # where the secondary lists start
        checked = offset + np.flatnonzero(keep[offset:])
        if len(checked):
            keep[checked[self._refused(entry_rows[checked], viewer_id, authors, video)]] = False

        # Per-author caps, where a segment walked more entries than its cap allows: the rank of a
        # kept entry in its segment is the count of kept entries up to it.
        over = np.flatnonzero(scanned > caps)
        if len(over):
            lengths = scanned[over]
            at = np.repeat(first[over] - (np.cumsum(lengths) - lengths), lengths)
            at += np.arange(len(at))
            sub = keep[at]
            counted = np.cumsum(sub)
            before = np.concatenate([[0], counted])[np.cumsum(lengths) - lengths]
            rank = counted - np.repeat(before, lengths)
            keep[at] = sub & (rank <= np.repeat(caps[over], lengths))
        kept = np.flatnonzero(keep)
        kept_ids = entry_ids[kept]
        if len(kept) > limit:
            newest = np.argpartition(kept_ids, len(kept) - limit)[len(kept) - limit :]
            kept, kept_ids = kept[newest], kept_ids[newest]
        return entry_rows[kept[np.argsort(kept_ids)[::-1]]]

    def _refused(
        self, rows: np.ndarray, viewer_id: int, followed_authors: np.ndarray, video: bool
    ) -> np.ndarray:
        """Which of these replies, reposts and videos the rules drop: a repost of the viewer's own
        post (by the author it names, or the held post's) and, outside video lookups, a reply
        whose parent is neither a held original nor a held direct reply to its thread's root by
        an account the viewer follows."""
        kind = (np.take(self._meta, rows) >> _KIND_SHIFT) & _LOW_BITS
        refs = np.take(self._refs, rows)
        target = np.take(self._meta, np.maximum(refs, 0))
        held = (refs >= 0) & ((target & _ALIVE) != 0)
        author = target >> _AUTHOR_SHIFT
        own = held & (author == self._author_of.get(viewer_id, -1))
        refused = (kind == REPOST) & (own | (np.take(self._src_users, rows) == viewer_id))
        if not video:
            followed = np.zeros(len(self._author_of), bool)
            followed[followed_authors] = True
            answers_root = ((target & _ROOT_REPLY) != 0) & np.take(followed, author)
            original = ((target >> _KIND_SHIFT) & _LOW_BITS) == ORIGINAL
            refused |= (kind == REPLY) & ~(held & (original | answers_root))
        return refused

    # ---------------------------------------------------------------- writing

    def ingest(self, post: Post) -> bool:
        """Add one post. False (and nothing changes) when its id is held already, was deleted
        before (the delete wins), or it is older than the retention relative to the clock."""
        _check_post(post)
        with self._lock:
            return self._add(post)

    def ingest_many(self, posts: Iterable[Post]) -> int:
        """Add many posts, exactly as `ingest` of each in id (time) order; returns how many were
        added. A small batch is added one by one under one lock acquisition; a batch at least a
        quarter of the store's size is appended column by column and the layout rebuilt once
        (about two seconds per million posts on a laptop core)."""
        batch = list(posts)
        for post in batch:
            _check_post(post)
        batch.sort(key=lambda p: p.post_id)
        with self._lock:
            if len(batch) < len(self._row_of) // 4:
                return sum(self._add(post) for post in batch)
            return self._add_bulk(batch)

    def delete(self, post_id: int) -> bool:
        """Forget a post for good; True when it was held. A later create of the id is refused."""
        _check_int("post_id", post_id, 1)
        with self._lock:
            self._deleted.add(post_id)
            self._waiting.pop(post_id, None)
            row = self._row_of.pop(post_id, None)
            if row is None:
                return False
            self._meta[row] = (self._meta[row] & ~_ALIVE) | _DELETED
            self._posts[row] = None
            return True

    def expire(self, now_ms: int) -> int:
        """Drop posts created before `now_ms - retention`; returns how many. Moves the clock to
        `now_ms` and compacts the layout: O(posts held), so call it every few minutes."""
        _check_int("now_ms", now_ms, 0)
        cutoff_ms = now_ms - self.settings.retention_ms
        with self._lock:
            self._clock_ms = max(self._clock_ms, now_ms)
            n = self._nrows
            too_old = self._ids[:n] < _first_id_at(cutoff_ms)
            old = ((self._meta[:n] & _ALIVE) != 0) & too_old
            count = int(old.sum())
            self._deleted = {d for d in self._deleted if _created_ms(d) >= cutoff_ms}
            dropped = ((self._meta[:n] & (_ALIVE | _DELETED)) != 0) & too_old
            if dropped.any() or len(self._row_of) < n:
                self._meta[:n][dropped] &= ~(_ALIVE | _DELETED)
                self._rebuild()
            return count

    # ---------------------------------------------------------------- internals (lock held)

    def _add(self, post: Post) -> bool:
        post_id = post.post_id
        if post_id in self._row_of or post_id in self._deleted:
            return False
        created = _created_ms(post_id)
        if created < self._clock_ms - self.settings.retention_ms:
            return False
        self._clock_ms = max(self._clock_ms, created)
        self._newest_id = max(self._newest_id, post_id)
        row = self._nrows
        self._reserve(row + 1)
        self._nrows = row + 1
        ref_id = _ref_id(post)
        self._ids[row] = post_id
        self._meta[row] = _meta(self._author_number(post.author_id), post)
        self._ref_ids[row] = ref_id
        self._refs[row] = self._row_or_wait(ref_id, row)
        self._src_users[row] = _src_user(post)
        self._posts[row] = post
        for waiting in self._waiting.pop(post_id, ()):
            self._refs[waiting] = row
        self._row_of[post_id] = row
        for seg in self._segments_of(row):
            self._insert(seg, row, post_id)
        return True

    def _add_bulk(self, batch: list[Post]) -> int:
        """Append an id-sorted batch column by column, then rebuild the layout once."""
        floor_ms = self._clock_ms - self.settings.retention_ms
        held, deleted = self._row_of, self._deleted
        fresh, last = [], 0
        for post in batch:  # what `_add` would take, in order: the first of equal ids wins
            pid = post.post_id
            new = pid != last and pid not in held and pid not in deleted
            if new and _created_ms(pid) >= floor_ms:
                fresh.append(post)
            last = pid
        if not fresh:
            return 0
        n0, k = self._nrows, len(fresh)
        self._reserve(n0 + k)
        new = slice(n0, n0 + k)
        self._ids[new] = [p.post_id for p in fresh]
        self._meta[new] = [_meta(self._author_number(p.author_id), p) for p in fresh]
        self._ref_ids[new] = [_ref_id(p) for p in fresh]
        self._src_users[new] = [_src_user(p) for p in fresh]
        self._posts[new] = fresh
        self._nrows = n0 + k
        self._clock_ms = max(self._clock_ms, _created_ms(fresh[-1].post_id))
        self._newest_id = max(self._newest_id, fresh[-1].post_id)
        self._rebuild()
        return k

    def _author_number(self, author_id: int) -> int:
        number = self._author_of.get(author_id)
        if number is None:
            number = self._author_of[author_id] = len(self._author_of)
            self._author_ids = _grown(self._author_ids, number + 1)
            self._author_ids[number] = author_id
            self._authors.add(author_id, number, self._author_ids[: number + 1])
            self._seg = _grown(self._seg, _LISTS * (number + 1))
        return number

    def _reserve(self, size: int) -> None:
        self._ids = _grown(self._ids, size)
        self._meta = _grown(self._meta, size)
        self._ref_ids = _grown(self._ref_ids, size)
        self._refs = _grown(self._refs, size)
        self._src_users = _grown(self._src_users, size)
        self._posts = _grown(self._posts, size)

    def _row_or_wait(self, ref_id: int, row: int) -> int:
        """The row holding `ref_id`, or -1; a post that may still arrive is waited for."""
        if ref_id == 0:
            return -1
        found = self._row_of.get(ref_id)
        if found is not None:
            return found
        too_old = _created_ms(ref_id) < self._clock_ms - self.settings.retention_ms
        if ref_id not in self._deleted and not too_old:
            self._waiting.setdefault(ref_id, []).append(row)
        return -1

    def _segments_of(self, row: int) -> list[int]:
        meta = int(self._meta[row])
        base = (meta >> _AUTHOR_SHIFT) * _LISTS
        kind = (meta >> _KIND_SHIFT) & _LOW_BITS
        segs = [base + (_ORIGINALS if kind == ORIGINAL else _SECONDARY)]
        if meta & _VIDEO:
            segs.append(base + _VIDEOS)
        return segs

    def _insert(self, seg: int, row: int, post_id: int) -> None:
        """Put an entry into its segment, ids ascending; a full segment moves to the pool's end."""
        start, length, room = (int(v) for v in self._seg[seg])
        if length == room:
            room = max(4, 2 * length)
            new_start = self._pool_end
            self._pool = _grown(self._pool, new_start + room)
            self._pool[new_start : new_start + length] = self._pool[start : start + length]
            self._pool_end = new_start + room
            start = new_start
        pool, end = self._pool, start + length
        at = end
        if length and pool[end - 1, 0] > post_id:  # a late arrival: shift newer entries up
            at = start + int(np.searchsorted(pool[start:end, 0], post_id))
            pool[at + 1 : end + 1] = pool[at:end].copy()
        pool[at] = (post_id, row)
        self._seg[seg] = (start, length + 1, room)

    def _rebuild(self) -> None:
        """Drop dead rows (deleted ones stay until they expire), renumber the rest in id order,
        re-link and re-lay every segment."""
        n = self._nrows
        order = np.flatnonzero(self._meta[:n] & (_ALIVE | _DELETED))
        order = order[np.argsort(self._ids[order], kind="stable")]
        self._ids, self._meta = self._ids[order], self._meta[order]
        self._ref_ids, self._posts = self._ref_ids[order], self._posts[order]
        self._src_users = self._src_users[order]
        n = self._nrows = len(order)
        alive = np.flatnonzero(self._meta & _ALIVE)
        self._row_of = dict(zip(self._ids[alive].tolist(), alive.tolist(), strict=True))
        self._refs = self._relink()
        self._lay_out_segments()

    def _relink(self) -> np.ndarray:
        """The row of each row's referenced post (rows are in id order here), -1 where it is not
        held; rows whose post may still arrive wait for it."""
        ids, ref_ids, n = self._ids, self._ref_ids, self._nrows
        self._waiting = {}
        if n == 0:
            return np.full(0, -1, np.int64)
        at = np.minimum(np.searchsorted(ids, ref_ids), n - 1)
        found = (ref_ids != 0) & (ids[at] == ref_ids)
        floor_id = _first_id_at(self._clock_ms - self.settings.retention_ms)
        for row in np.flatnonzero(~found & (ref_ids >= floor_id)).tolist():
            ref = int(ref_ids[row])
            if ref not in self._deleted:
                self._waiting.setdefault(ref, []).append(row)
        return np.where(found, at, -1)

    def _lay_out_segments(self) -> None:
        """Every segment contiguous in a fresh pool, ids ascending, with a quarter spare room."""
        n, meta = self._nrows, self._meta
        author = meta >> _AUTHOR_SHIFT
        original = ((meta >> _KIND_SHIFT) & _LOW_BITS) == ORIGINAL
        videos = np.flatnonzero(meta & _VIDEO)
        lists = np.where(original, _ORIGINALS, _SECONDARY)
        seg = np.concatenate([author * _LISTS + lists, author[videos] * _LISTS + _VIDEOS])
        rows = np.concatenate([np.arange(n), videos])
        order = np.argsort(seg * max(n, 1) + rows)  # rows are in id order
        seg, rows = seg[order], rows[order]
        length = np.bincount(seg, minlength=len(self._seg))
        room = length + np.where(length > 0, np.maximum(length // 4, 2), 0)
        start = np.cumsum(room) - room
        self._pool_end = int(room.sum())
        self._pool = np.zeros((self._pool_end + self._pool_end // 4 + 64, 2), np.int64)
        at = start[seg] + np.arange(len(seg)) - (np.cumsum(length) - length)[seg]
        self._pool[at, 0] = self._ids[rows]
        self._pool[at, 1] = rows
        self._seg = np.stack([start, length, room], axis=1)


class _IdTable:
    """Account id -> author number for a whole array of ids at once: open addressing with linear
    probing in one array of (id, number) pairs, at most half full; a tail after the last home
    slot catches probes so they never wrap around."""

    _TAIL = 1024
    _GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing

    def __init__(self) -> None:
        self._bits = 10
        self._slots = np.zeros(((1 << self._bits) + self._TAIL, 2), np.int64)  # id 0: empty
        self._count = 0

    def _home(self, ids: np.ndarray, bits: int) -> np.ndarray:
        return (ids.view(np.uint64) * self._GOLDEN >> np.uint64(64 - bits)).view(np.int64)

    def find(self, ids: np.ndarray) -> np.ndarray:
        """The number of each id, -1 where unknown (ids <= 0 included)."""
        ids = np.ascontiguousarray(ids, np.int64)
        out = np.full(len(ids), -1, np.int64)
        todo, wanted, at = np.arange(len(ids)), ids, self._home(ids, self._bits)
        while len(todo):
            slot = np.take(self._slots, at, axis=0)
            hit = slot[:, 0] == wanted
            out[todo[hit]] = slot[hit, 1]
            probe_on = ~hit & (slot[:, 0] != 0)
            todo, wanted, at = todo[probe_on], wanted[probe_on], at[probe_on] + 1
        out[ids == 0] = -1  # id 0 matched an empty slot
        return out

    def add(self, author_id: int, number: int, all_ids: np.ndarray) -> None:
        """Add one new id; `all_ids` (every id by number, this one included) rebuilds when full."""
        at = int(self._home(np.array([author_id]), self._bits)[0])
        while at < len(self._slots) and self._slots[at, 0] != 0:
            at += 1
        if 2 * (self._count + 1) > (1 << self._bits) or at == len(self._slots):
            self._build(all_ids, self._bits + 1)
            return
        self._slots[at] = (author_id, number)
        self._count += 1

    def _build(self, ids: np.ndarray, bits: int) -> None:
        """Insert every id at once: sorted by home slot, each lands at max(home, previous + 1)."""
        while True:
            home = self._home(ids, bits)
            order = np.argsort(home, kind="stable")
            i = np.arange(len(ids))
            at = i + np.maximum.accumulate(home[order] - i)
            if at[-1] < (1 << bits) + self._TAIL:
                break
            bits += 1
        self._bits, self._count = bits, len(ids)
        self._slots = np.zeros(((1 << bits) + self._TAIL, 2), np.int64)
        self._slots[at, 0] = ids[order]
        self._slots[at, 1] = order


def _meta(author: int, post: Post) -> int:
    """The meta word of a held post."""
    flags = _ALIVE
    if post.is_video and post.kind != REPLY:
        flags |= _VIDEO
    if post.kind == REPLY and post.parent_id != 0 and post.parent_id == post.conversation_id:
        flags |= _ROOT_REPLY
    return author << _AUTHOR_SHIFT | post.kind << _KIND_SHIFT | flags


def _ref_id(post: Post) -> int:
    """The post this one points to: a reply's parent, a repost's reposted post; else 0."""
    if post.kind == REPLY:
        return post.parent_id
    return post.reposted_id if post.kind == REPOST else 0


def _src_user(post: Post) -> int:
    """The account a repost reposts (0 for other posts or when the repost does not name it)."""
    return post.reposted_author_id if post.kind == REPOST else 0


def _first_id_at(ms: int) -> int:
    """The smallest snowflake id created at or after `ms` (clamped to the id range)."""
    return min(max(0, (ms - TWITTER_EPOCH_MS) << SEQUENCE_BITS), _MAX_ID)


def _created_ms(post_id: int) -> int:
    return (post_id >> SEQUENCE_BITS) + TWITTER_EPOCH_MS


def _grown(arr: np.ndarray, size: int) -> np.ndarray:
    """`arr` with room for `size` rows: the same array, or a zero-padded copy twice as long."""
    if size <= len(arr):
        return arr
    new = np.zeros((max(size, 2 * len(arr), 64), *arr.shape[1:]), arr.dtype)
    new[: len(arr)] = arr
    return new


def _check_post(post: Post) -> None:
    if not isinstance(post, Post):
        raise InputError(f"post: expected an orchestrator.state.posts.Post, got {type(post)!r}")
    if post.post_id <= 0 or post.author_id <= 0:
        raise InputError(
            f"post: post_id and author_id must be positive, got {post.post_id}, {post.author_id}"
        )
    if post.kind not in (ORIGINAL, REPLY, REPOST):
        raise InputError(f"post.kind: expected ORIGINAL, REPLY or REPOST, got {post.kind}")


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{name}: expected an integer, got {value!r}")
    if value < minimum:
        raise InputError(f"{name}: must be >= {minimum}, got {value}")
    return int(value)


def _head(following: Sequence[int], limit: int) -> Sequence[int]:
    if isinstance(following, (str, bytes)) or not hasattr(following, "__getitem__"):
        raise InputError(f"following: expected a sequence of account ids, got {type(following)!r}")
    return following[:limit]


def _as_ids(name: str, ids: Collection[int]) -> np.ndarray:
    if isinstance(ids, (str, bytes)):
        raise InputError(f"{name}: expected integer ids, got a string")
    if isinstance(ids, np.ndarray):
        if ids.ndim != 1 or ids.dtype.kind not in "iu":
            raise InputError(f"{name}: expected a 1-D array of integer ids, got {ids.dtype}")
        return ids.astype(np.int64, copy=False)
    try:
        return np.fromiter(ids, np.int64, len(ids))
    except (TypeError, ValueError, OverflowError) as exc:
        raise InputError(f"{name}: expected integer ids ({exc})") from exc
