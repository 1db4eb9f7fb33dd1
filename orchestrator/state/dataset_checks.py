"""The rules every dataset row obeys (docs/DATA.md), checked on whole columns at once: ids, enum
ranges, finite numbers, uniqueness, a row's own consistency (a reply has a parent...) and
references to users and posts of the dataset or of a store that already holds some.

Tables come in with "wide" types (every integer int64, floats float64, semantic ids a list of
int64) so that an out-of-range value is reported rather than wrapped; `narrow` casts a checked
table to its `TABLES` schema.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from orchestrator.state.dataset import TABLES
from orchestrator.state.dataset_problems import Problems, Source
from phoenix import snowflake
from phoenix.features import NUM_TIMEZONES
from phoenix.world.profiles import AGE_BRACKET_STARTS, GENDER_MALE, INFERRED_MALE
from phoenix.world.schema import ORIGINAL, POST_KINDS, REPLY, REPOST, SID_CODES, SID_LEVELS

I64 = npt.NDArray[np.int64]
#: ids -> a bool per id: whether a store already holds it.
IdTest = Callable[[I64], npt.NDArray[np.bool_]]

#: Profile enums: (lowest, highest) code; 0 = unknown in each.
PROFILE_RANGES: dict[str, tuple[float, float]] = {
    "timezone": (0, NUM_TIMEZONES - 1),
    "language": (0, 2**15 - 1),
    "country": (0, 2**15 - 1),
    "gender": (0, GENDER_MALE),
    "age_bracket": (0, len(AGE_BRACKET_STARTS)),
    "age_years": (0, 150),
    "inferred_gender": (0, INFERRED_MALE),
    "inferred_gender_score": (0.0, 1.0),
    "latitude": (-90.0, 90.0),
    "longitude": (-180.0, 180.0),
    "installed_apps": (-(2**63), 2**63 - 1),  # any 64-bit mask
    "ip_id": (0, 2**32 - 1),  # an IPv4 address
}
SURFACES = (0, 15)
MAX_SECONDS = 86_400.0  # video durations and dwell times, as the API accepts them
MAX_KEYWORD_CHARS = 100
#: (table, first id column, second id column, what a row means) of the user-to-user tables.
RELATIONS = (
    ("follows", "follower_id", "followee_id", "follow"),
    ("blocks", "user_id", "blocked_id", "block"),
    ("mutes", "user_id", "muted_id", "mute"),
)


@dataclass(frozen=True)
class KnownIds:
    """The users and posts a store already holds (None: none), the posts deleted from it, and
    the conversation of stored posts (ids -> conversation ids, 0 when unknown). Rows may refer
    to stored users and posts (a reply to a stored post joins its conversation); a dataset may
    not add any of them again, nor a deleted post (a deleted post stays deleted)."""

    users: IdTest | None = None
    posts: IdTest | None = None
    deleted_posts: IdTest | None = None
    conversations: Callable[[I64], I64] | None = None

    @classmethod
    def of(
        cls,
        users: Collection[int] = (),
        posts: Collection[int] = (),
        deleted_posts: Collection[int] = (),
        conversations: Collection[int] | None = None,
    ) -> KnownIds:
        """From collections of ids; `conversations`, when given, is each post's (`posts` order)."""
        u, p, d = (_array(c) for c in (users, posts, deleted_posts))
        conv = _array(conversations) if conversations is not None else p
        row_of = _rows_of(p)

        def conversation(ids: I64) -> I64:
            rows = row_of(ids)
            return np.where(rows >= 0, conv[np.maximum(rows, 0)], 0) if len(p) else 0 * ids

        return cls(
            users=lambda ids: np.isin(ids, u),
            posts=lambda ids: np.isin(ids, p),
            deleted_posts=lambda ids: np.isin(ids, d),
            conversations=conversation if conversations is not None else None,
        )


def check_tables(
    tables: dict[str, pa.Table],
    sources: dict[str, Source],
    known: KnownIds,
    now_ms: int | None,
    problems: Problems,
) -> dict[str, pa.Table]:
    """Check wide tables, reporting into `problems`; returns them with each post's conversation
    id filled in where it was left 0."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    c = _Checker(tables, sources, known, problems)
    c.users()
    for table, a, b, what in RELATIONS:
        c.relation(table, a, b, what)
    c.muted_keywords()
    tables = dict(tables)
    if "posts" in tables:
        conversation = c.posts(now)
        tables["posts"] = tables["posts"].set_column(
            TABLES["posts"].get_field_index("conversation_id"),
            "conversation_id",
            pa.array(conversation, pa.int64()),
        )
    c.engagements(now)
    return tables


def narrow(name: str, table: pa.Table) -> pa.Table:
    """A checked wide table cast to its `TABLES` schema."""
    columns = []
    for field in TABLES[name]:
        column = table.column(field.name)
        if pa.types.is_fixed_size_list(field.type):
            codes = pc.list_flatten(column).cast(field.type.value_type)
            column = pa.FixedSizeListArray.from_arrays(codes.combine_chunks(), field.type.list_size)
        columns.append(column.cast(field.type))
    return pa.table(columns, schema=TABLES[name])


def _col(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).to_numpy(zero_copy_only=False)


class _Checker:
    def __init__(
        self,
        tables: dict[str, pa.Table],
        sources: dict[str, Source],
        known: KnownIds,
        problems: Problems,
    ) -> None:
        self.tables, self.sources, self.p = tables, sources, problems
        self.stored_users = known.users or (lambda ids: np.zeros(len(ids), bool))
        self.stored_posts = known.posts or (lambda ids: np.zeros(len(ids), bool))
        self.deleted_posts = known.deleted_posts or (lambda ids: np.zeros(len(ids), bool))
        self.stored_conversations = known.conversations or (lambda ids: np.zeros_like(ids))
        self.user_ids = np.sort(_col(tables["users"], "user_id")) if "users" in tables else None
        self.post_ids = np.sort(_col(tables["posts"], "post_id")) if "posts" in tables else None

    # ------------------------------------------------------------------ helpers

    def ids(self, table: str, column: str, *, optional: bool = False) -> np.ndarray:
        """The column, each value a positive id (or 0 when `optional`)."""
        values = _col(self.tables[table], column)
        bad = values < 0 if optional else values <= 0
        what = "an id must be positive, or 0 for none" if optional else "an id must be positive"
        self.p.rows(self.sources[table], bad, column, lambda i: f"{what}; got {values[i]}")
        return values

    def range(self, table: str, column: str, lo: float, hi: float) -> np.ndarray:
        values = _col(self.tables[table], column)
        src = self.sources[table]
        if values.dtype.kind == "f":
            bad = ~np.isfinite(values)
            self.p.rows(src, bad, column, lambda i: f"must be a finite number, got {values[i]}")
            with np.errstate(invalid="ignore"):
                out = ~bad & ((values < lo) | (values > hi))
        else:
            out = (values < lo) | (values > hi)
        self.p.rows(src, out, column, lambda i: f"must be in {lo}..{hi}, got {values[i]}")
        return values

    def unique(self, table: str, label: str, *keys: np.ndarray) -> None:
        """Each combination of `keys` once; a repeat is reported at its later rows."""
        n = len(keys[0])
        if n < 2:
            return
        order = np.lexsort(keys[::-1])
        same = np.ones(n - 1, bool)
        for k in keys:
            s = k[order]
            same &= s[1:] == s[:-1]
        repeats = order[1:][same]
        firsts = order[:-1][same]  # a repeat's predecessor in sorted order: same key, earlier
        first_of = dict(zip(repeats.tolist(), firsts.tolist(), strict=True))
        src = self.sources[table]

        def message(i: int) -> str:
            j = i
            while j in first_of:
                j = first_of[j]
            return f"duplicate {table} row (first at row {int(src.rows(np.array([j]))[0])})"

        self.p.rows(src, repeats, label, message)

    def known_users(self, table: str, column: str, ids: np.ndarray) -> None:
        self._known(table, column, ids, self.user_ids, self.stored_users, "user", "users")

    def known_posts(self, table: str, column: str, ids: np.ndarray) -> None:
        self._known(table, column, ids, self.post_ids, self.stored_posts, "post", "posts")

    def _known(
        self,
        table: str,
        column: str,
        ids: np.ndarray,
        here: np.ndarray | None,
        stored: IdTest,
        what: str,
        where: str,
    ) -> None:
        ask = np.flatnonzero(ids > 0)
        # Each distinct id once, in order: sorted look-ups stay in cache.
        distinct, where_in = np.unique(ids[ask], return_inverse=True)
        found = np.zeros(len(distinct), bool)
        if here is not None and len(here):
            pos = np.minimum(np.searchsorted(here, distinct), len(here) - 1)
            found = here[pos] == distinct
        if (~found).any():
            found[~found] = stored(distinct[~found])
        self.p.rows(
            self.sources[table],
            ask[~found[where_in]],
            column,
            lambda i: f"no {what} {ids[i]} (neither in {where} nor in the store)",
        )

    def not_stored(self, table: str, column: str, ids: np.ndarray, stored: IdTest) -> None:
        again = stored(ids)
        self.p.rows(
            self.sources[table], again, column, lambda i: f"{ids[i]} is already in the store"
        )

    # ------------------------------------------------------------------ tables

    def users(self) -> None:
        if "users" not in self.tables:
            return
        ids = self.ids("users", "user_id")
        self.unique("users", "user_id", ids)
        self.not_stored("users", "user_id", ids, self.stored_users)
        for column, (lo, hi) in PROFILE_RANGES.items():
            self.range("users", column, lo, hi)

    def relation(self, table: str, a: str, b: str, what: str) -> None:
        if table not in self.tables:
            return
        first, second = self.ids(table, a), self.ids(table, b)
        self.known_users(table, a, first)
        self.known_users(table, b, second)
        self.p.rows(
            self.sources[table], (first == second) & (first > 0), b, f"a user cannot {what} itself"
        )
        self.unique(table, b, first, second)

    def muted_keywords(self) -> None:
        if "muted_keywords" not in self.tables:
            return
        t, src = self.tables["muted_keywords"], self.sources["muted_keywords"]
        users = self.ids("muted_keywords", "user_id")
        self.known_users("muted_keywords", "user_id", users)
        keyword = t.column("keyword")
        words = pc.utf8_length(pc.utf8_trim_whitespace(keyword)).to_numpy(zero_copy_only=False)
        length = pc.utf8_length(keyword).to_numpy(zero_copy_only=False)
        self.p.rows(src, words == 0, "keyword", "must contain a word")
        self.p.rows(
            src,
            length > MAX_KEYWORD_CHARS,
            "keyword",
            f"at most {MAX_KEYWORD_CHARS} characters",
        )
        codes = pc.dictionary_encode(keyword.combine_chunks()).indices.to_numpy()
        self.unique("muted_keywords", "keyword", users, codes.astype(np.int64))

    def posts(self, now_ms: int) -> np.ndarray:
        """Checks the posts; returns their conversation ids, 0s filled in."""
        t, src, p = self.tables["posts"], self.sources["posts"], self.p
        ids = self.ids("posts", "post_id")
        self.unique("posts", "post_id", ids)
        self.not_stored("posts", "post_id", ids, self.stored_posts)
        p.rows(
            src,
            self.deleted_posts(ids),
            "post_id",
            lambda i: f"{ids[i]} was deleted from the store, and a deleted post stays deleted",
        )
        created = snowflake.created_ms(ids)
        p.rows(
            src,
            (ids > 0) & (created > now_ms),
            "post_id",
            lambda i: f"created at {created[i]} ms (from the snowflake id), after now ({now_ms})",
        )
        self.known_users("posts", "author_id", self.ids("posts", "author_id"))
        kind = self.range("posts", "kind", 0, max(POST_KINDS))
        refs = {}
        for column in ("parent_id", "reposted_id", "quoted_id"):
            refs[column] = self.ids("posts", column, optional=True)
            self.known_posts("posts", column, refs[column])
            p.rows(
                src,
                (refs[column] > 0) & (refs[column] >= ids),
                column,
                "must name an older post (a smaller snowflake id)",
            )
        parent, reposted = refs["parent_id"], refs["reposted_id"]
        rules = (
            (kind == ORIGINAL, parent, False, "parent_id", "an original (kind 0) has none"),
            (kind == ORIGINAL, reposted, False, "reposted_id", "an original (kind 0) has none"),
            (kind == REPLY, parent, True, "parent_id", "a reply (kind 1) needs one"),
            (kind == REPLY, reposted, False, "reposted_id", "a reply (kind 1) has none"),
            (kind == REPOST, reposted, True, "reposted_id", "a repost (kind 2) needs one"),
            (kind == REPOST, parent, False, "parent_id", "a repost (kind 2) has none"),
        )
        for rows, ref, needed, column, message in rules:
            p.rows(src, rows & ((ref == 0) if needed else (ref != 0)), column, message)
        row_of = _rows_of(ids)
        target = row_of(reposted)
        p.rows(
            src,
            (target >= 0) & (kind[np.maximum(target, 0)] == REPOST),
            "reposted_id",
            "a repost of a repost; repost the original instead",
        )
        is_video = _col(t, "is_video")
        duration = self.range("posts", "video_duration_s", 0.0, MAX_SECONDS)
        p.rows(src, ~is_video & (duration != 0), "video_duration_s", "must be 0 unless is_video")
        self.semantic_ids()
        return self.conversations(ids, kind, parent, row_of(parent))

    def semantic_ids(self) -> None:
        column, src = self.tables["posts"].column("semantic_ids"), self.sources["posts"]
        lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
        wrong = lengths != SID_LEVELS
        self.p.rows(
            src,
            wrong,
            "semantic_ids",
            lambda i: f"needs {SID_LEVELS} codes (coarse to fine), got {lengths[i]}",
        )
        if wrong.any():
            return
        codes = pc.list_flatten(column).to_numpy(zero_copy_only=False).reshape(-1, SID_LEVELS)
        out = ((codes < 0) | (codes > SID_CODES)).any(axis=1)
        self.p.rows(src, out, "semantic_ids", f"codes must be in 1..{SID_CODES} (0 = none)")
        half = ~out & (codes == 0).any(axis=1) & (codes != 0).any(axis=1)
        self.p.rows(src, half, "semantic_ids", "all codes or none (all 0), not some")

    def conversations(
        self, ids: np.ndarray, kind: np.ndarray, parent: np.ndarray, parent_row: np.ndarray
    ) -> np.ndarray:
        """Each post's conversation: its own id for an original or repost, its parent's for a
        reply (whose parent is stored: the store's, or given when the store does not say)."""
        src, given = self.sources["posts"], _col(self.tables["posts"], "conversation_id")
        self.p.rows(src, given < 0, "conversation_id", "must be a post id, or 0 to derive it")
        reply = kind == REPLY
        # Follow only links to older posts: ids decrease along a chain, so it ends.
        linked = reply & (parent_row >= 0) & (parent < ids)
        top = np.where(linked, parent_row, np.arange(len(ids)))
        while True:
            nxt = top[top]
            if np.array_equal(nxt, top):
                break
            top = nxt
        own = ~reply
        self.p.rows(
            src,
            own & (given != 0) & (given != ids),
            "conversation_id",
            lambda i: f"an original or a repost starts its own: must be {ids[i]} or 0",
        )
        external = reply & ~linked & (parent > 0)
        stored = np.zeros_like(ids)
        stored[external] = self.stored_conversations(parent[external])
        self.p.rows(
            src,
            external & (given == 0) & (stored == 0),
            "conversation_id",
            "required for a reply whose parent is not in these files",
        )
        self.p.rows(
            src,
            external & (given != 0) & (stored != 0) & (given != stored),
            "conversation_id",
            lambda i: f"{given[i]}, but the thread it replies in starts at {stored[i]}",
        )
        base = np.where(own, ids, np.where(given != 0, given, stored))
        expected = base[top]
        self.p.rows(
            src,
            linked & (given != 0) & (expected != 0) & (given != expected),
            "conversation_id",
            lambda i: f"{given[i]}, but the thread it replies in starts at {expected[i]}",
        )
        return np.where(given != 0, given, expected)

    def engagements(self, now_ms: int) -> None:
        if "engagements" not in self.tables:
            return
        src = self.sources["engagements"]
        viewers = self.ids("engagements", "viewer_id")
        self.known_users("engagements", "viewer_id", viewers)
        posts = self.ids("engagements", "post_id")
        self.known_posts("engagements", "post_id", posts)
        served = self.range("engagements", "served_ms", 1, 2**63 - 1)
        created = snowflake.created_ms(posts)
        self.p.rows(
            src,
            (posts > 0) & (served > 0) & (served < created),
            "served_ms",
            lambda i: f"{served[i]} is before the post was created ({created[i]})",
        )
        self.p.rows(
            src, served > now_ms, "served_ms", lambda i: f"{served[i]} is after now ({now_ms})"
        )
        self.range("engagements", "surface", *SURFACES)
        self.range("engagements", "dwell_time_s", 0.0, MAX_SECONDS)


def _array(ids: Collection[int]) -> I64:
    return np.asarray(ids if isinstance(ids, np.ndarray) else list(ids), np.int64)


def _rows_of(ids: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """A function: ids -> their rows in `ids` (-1 when absent or 0)."""
    order = np.argsort(ids, kind="stable")
    ordered = ids[order]

    def rows(wanted: np.ndarray) -> np.ndarray:
        if not len(ids):
            return np.full(len(wanted), -1)
        pos = np.minimum(np.searchsorted(ordered, wanted), len(ordered) - 1)
        hit = (ordered[pos] == wanted) & (wanted != 0)
        return np.where(hit, order[pos], -1)

    return rows
