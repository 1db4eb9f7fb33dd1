"""Fill the in-memory stores from a `Dataset`: the one path every start takes, whether the
tables come from the durable store (`SqliteStore.load`) or straight from a synthetic world
(`world_dataset`, for tests and benchmarks that need no data directory).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from tqdm import tqdm

from orchestrator.state.dataset import TABLES, Dataset
from orchestrator.state.posts import NUM_COUNTS, QUOTES, REPLIES, REPOSTS, InMemoryPostStore, Post
from orchestrator.state.viewers import DEFAULT_MAX_HISTORY, Engagement, InMemoryViewerStore
from phoenix.actions import ACTIONS
from phoenix.counts import COUNTED_ACTIONS
from phoenix.features import PROFILE_FIELDS, UserProfile
from phoenix.world.io import World

I64 = npt.NDArray[np.int64]

#: Columns of the posts table in the order of `Post`'s fields.
_POST_FIELDS = (
    "post_id",
    "author_id",
    "kind",
    "parent_id",
    "reposted_id",
    "conversation_id",
    "is_video",
    "video_duration_s",
    "text",
)


@dataclass
class WorldState:
    """The in-memory stores, and the clock's reading they were loaded at."""

    viewers: InMemoryViewerStore
    posts: InMemoryPostStore
    now_ms: int


@dataclass(frozen=True)
class StoredExtras:
    """What the durable store knows beyond a dataset, from writes made through the service."""

    #: Deleted post id -> its author (0 when unknown): the id stays deleted, and histories
    #: that engaged with it keep naming its author.
    deleted: Mapping[int, int] = field(default_factory=dict)
    #: Posts whose counts created replies, reposts and quotes raised, and by how much
    #: ([m, 3]: replies, reposts, quotes).
    link_ids: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    link_counts: I64 = field(default_factory=lambda: np.zeros((0, 3), np.int64))


def world_dataset(world: World) -> Dataset:
    """A synthetic world as a dataset: its tables without what only a synthetic world knows or
    what the store derives (taste, topics, follower counts, creation times), nothing quoted."""
    tables = {}
    for name, schema in TABLES.items():
        table = world.table(name)
        if name == "posts":
            table = table.append_column("quoted_id", pa.array(np.zeros(table.num_rows, np.int64)))
        tables[name] = table.select(schema.names).cast(schema)
    return Dataset(tables, now_ms=world.now_ms)


def load_world_state(world: World, max_history: int = DEFAULT_MAX_HISTORY) -> WorldState:
    """The stores of a synthetic world (no durable store involved)."""
    return load_state(world_dataset(world), max_history=max_history)


def load_state(
    dataset: Dataset,
    extras: StoredExtras | None = None,
    *,
    max_history: int = DEFAULT_MAX_HISTORY,
    progress: bool = False,
) -> WorldState:
    """Users and their profiles, the social graph in its order, muted keywords, engagement
    histories, live posts and their engagement counts; deleted ids stay deleted."""
    extras = extras or StoredExtras()
    steps = (
        "users", "follows", "blocks", "mutes", "muted keywords", "histories", "counts", "posts",
    )  # fmt: skip
    bar = tqdm(total=len(steps), desc="rebuilding state", unit="step", disable=not progress)
    step = _Steps(bar)
    viewers = InMemoryViewerStore(max_history=max_history)
    with step("users"):
        for user_id in dataset.table("users").column("user_id").to_pylist():
            viewers.add_user(user_id)
        viewers.set_profiles(*profiles_of(dataset))
    with step("follows"):
        t = dataset.table("follows")
        viewers.follow_many(
            zip(
                t.column("follower_id").to_pylist(),
                t.column("followee_id").to_pylist(),
                strict=True,
            )
        )
    for label, table, a, b, add in (
        ("blocks", "blocks", "user_id", "blocked_id", viewers.block),
        ("mutes", "mutes", "user_id", "muted_id", viewers.mute),
        ("muted keywords", "muted_keywords", "user_id", "keyword", viewers.add_muted_keyword),
    ):
        with step(label):
            t = dataset.table(table)
            for x, y in zip(t.column(a).to_pylist(), t.column(b).to_pylist(), strict=True):
                add(x, y)
    author_of = {**extras.deleted, **_authors(dataset)}
    with step("histories"):
        viewers.load_histories(_histories(dataset, author_of))
    with step("counts"):
        counts = counts_of(dataset)
        if len(extras.link_ids):
            links = np.zeros((len(extras.link_ids), NUM_COUNTS), np.int64)
            links[:, [REPLIES, REPOSTS, QUOTES]] = extras.link_counts
            counts = _summed(counts, (extras.link_ids, links))
    with step("posts"):
        posts = InMemoryPostStore(posts_of(dataset, author_of), counts)
        for post_id in extras.deleted:
            posts.delete(post_id)
    bar.close()
    now_ms = dataset.now_ms if dataset.now_ms is not None else time.time_ns() // 1_000_000
    return WorldState(viewers=viewers, posts=posts, now_ms=now_ms)


class _Steps:
    """A context manager per rebuild step that names it on the progress bar, then ticks it."""

    def __init__(self, bar: tqdm) -> None:
        self._bar = bar

    def __call__(self, label: str) -> _Step:
        return _Step(self._bar, label)


class _Step:
    def __init__(self, bar: tqdm, label: str) -> None:
        self._bar, self._label = bar, label

    def __enter__(self) -> None:
        self._bar.set_postfix_str(self._label)

    def __exit__(self, *exc: object) -> None:
        self._bar.update(1)


def _authors(dataset: Dataset) -> dict[int, int]:
    posts = dataset.table("posts")
    return dict(
        zip(posts.column("post_id").to_pylist(), posts.column("author_id").to_pylist(), strict=True)
    )


def posts_of(dataset: Dataset, author_of: Mapping[int, int] | None = None) -> list[Post]:
    """Every post of the dataset as `Post` objects, in table order; a repost names the reposted
    post's author too (Thunder drops a repost of the viewer's own post by it), from `author_of`
    (default: the dataset's posts)."""
    cols = dataset.table("posts").to_pydict()
    if author_of is None:
        author_of = dict(zip(cols["post_id"], cols["author_id"], strict=True))
    reposted_author = [author_of.get(r, 0) if r else 0 for r in cols["reposted_id"]]
    sids = [tuple(s) if any(s) else () for s in cols["semantic_ids"]]
    rows = zip(*(cols[name] for name in _POST_FIELDS), reposted_author, strict=True)
    return [
        Post(*row, quoted_id=quoted, semantic_ids=codes)
        for row, quoted, codes in zip(rows, cols["quoted_id"], sids, strict=True)
    ]


def counts_of(dataset: Dataset) -> tuple[I64, I64]:
    """(post ids, engagement counts [n, 5]) of every post served in the dataset: every served
    row is a view, and each counted action on it adds one (`phoenix.counts`, the definition
    training reads the counts by)."""
    eng = dataset.table("engagements")
    post_ids = eng.column("post_id").to_numpy()
    actions = np.stack(
        [eng.column(a).to_numpy(zero_copy_only=False) for a in COUNTED_ACTIONS], axis=1
    ).reshape(len(post_ids), len(COUNTED_ACTIONS))
    ids, inverse = np.unique(post_ids, return_inverse=True)
    counts = np.zeros((len(ids), NUM_COUNTS), np.int64)
    np.add.at(counts, inverse, np.concatenate([actions, np.ones((len(post_ids), 1), bool)], 1))
    return ids, counts


def _summed(*parts: tuple[I64, I64]) -> tuple[I64, I64]:
    """(ids, counts) pairs added together per id."""
    ids, inverse = np.unique(np.concatenate([p[0] for p in parts]), return_inverse=True)
    counts = np.zeros((len(ids), NUM_COUNTS), np.int64)
    np.add.at(counts, inverse, np.concatenate([p[1] for p in parts]))
    return ids, counts


def profiles_of(dataset: Dataset) -> tuple[I64, UserProfile]:
    """(user ids, their profiles) from the dataset's users table."""
    users = dataset.table("users")
    return users.column("user_id").to_numpy(), UserProfile(
        **{name: users.column(name).to_numpy() for name in PROFILE_FIELDS}
    )


def _histories(
    dataset: Dataset, author_of: Mapping[int, int]
) -> list[tuple[int, list[Engagement]]]:
    """Impressions with at least one action, per viewer, newest first (as training builds them;
    of two served in the same ms, the later row first, as the service recorded them)."""
    eng = dataset.table("engagements")
    n = eng.num_rows
    actions = np.stack(
        [eng.column(a).to_numpy(zero_copy_only=False) for a in ACTIONS], axis=1
    ).reshape(n, len(ACTIONS))
    acted = np.flatnonzero(actions.any(axis=1))
    viewer = eng.column("viewer_id").to_numpy()[acted]
    served = eng.column("served_ms").to_numpy()[acted]
    order = acted[np.lexsort((-acted, -served, viewer))]
    viewer_ids = eng.column("viewer_id").to_numpy()[order]
    post_ids = eng.column("post_id").to_numpy()[order]
    surfaces = eng.column("surface").to_numpy()[order]
    served_ms = eng.column("served_ms").to_numpy()[order]
    dwell_s = eng.column("dwell_time_s").to_numpy()[order]
    histories: dict[int, list[Engagement]] = {}
    columns = (
        viewer_ids.tolist(), post_ids.tolist(), actions[order].tolist(), surfaces.tolist(),
        served_ms.tolist(), dwell_s.tolist(),
    )  # fmt: skip
    for viewer_id, post_id, acts, surface, served, dwell in zip(*columns, strict=True):
        histories.setdefault(viewer_id, []).append(
            Engagement(post_id, author_of.get(post_id, 0), tuple(acts), surface, served, dwell)
        )
    return list(histories.items())
