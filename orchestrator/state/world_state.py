"""Fill the embedded stores from a synthetic world directory (`phoenix world`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from orchestrator.state.posts import InMemoryPostStore, Post
from orchestrator.state.viewers import DEFAULT_MAX_HISTORY, Engagement, InMemoryViewerStore
from phoenix.actions import ACTIONS
from phoenix.counts import COUNTED_ACTIONS, EngagementCounts
from phoenix.features import PROFILE_FIELDS, UserProfile
from phoenix.world.io import World

#: Columns of `posts.parquet` in the order of `Post`'s fields.
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
_SID_COLUMN = "semantic_ids"  # `Post.semantic_ids`: () for a post without codes


@dataclass
class WorldState:
    """The stores loaded from one world, and the world's clock."""

    viewers: InMemoryViewerStore
    posts: InMemoryPostStore
    now_ms: int


def posts_of(world: World) -> list[Post]:
    """Every post of the world as `Post` objects, in id order; a repost names the reposted
    post's author too (Thunder drops a repost of the viewer's own post by it)."""
    cols = world.posts.to_pydict()
    author_of = dict(zip(cols["post_id"], cols["author_id"], strict=True))
    reposted_author = [author_of.get(r, 0) if r else 0 for r in cols["reposted_id"]]
    sids = [tuple(s) if any(s) else () for s in cols[_SID_COLUMN]]
    rows = zip(*(cols[name] for name in _POST_FIELDS), reposted_author, strict=True)
    return [Post(*row, semantic_ids=codes) for row, codes in zip(rows, sids, strict=True)]


def counts_of(world: World) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(post ids, engagement counts [n, 5]) of every post served in the world, as of its now:
    every served row is a view, and each counted action on it adds one (`phoenix.counts`, the
    definition training reads the counts by)."""
    eng = world.engagements
    post_ids = eng.column("post_id").to_numpy()
    actions = np.stack(
        [eng.column(a).to_numpy(zero_copy_only=False) for a in COUNTED_ACTIONS], axis=1
    )
    counts = EngagementCounts(post_ids, eng.column("served_ms").to_numpy(), actions)
    ids = np.unique(post_ids)
    return ids, counts.at(ids, world.now_ms + 1)


def profiles_of(world: World) -> tuple[npt.NDArray[np.int64], UserProfile]:
    """(user ids, their profiles) from the world's users table."""
    users = world.users
    return users.column("user_id").to_numpy(), UserProfile(
        **{name: users.column(name).to_numpy() for name in PROFILE_FIELDS}
    )


def load_world_state(world: World, max_history: int = DEFAULT_MAX_HISTORY) -> WorldState:
    """Users and their profiles, the social graph, muted keywords, engagement histories, posts
    and their engagement counts of `world`."""
    viewers = InMemoryViewerStore(max_history=max_history)
    for user_id in world.users.column("user_id").to_pylist():
        viewers.add_user(user_id)
    viewers.set_profiles(*profiles_of(world))
    for a, b in _pairs(world, "follows", "follower_id", "followee_id"):
        viewers.follow(a, b)
    for a, b in _pairs(world, "blocks", "user_id", "blocked_id"):
        viewers.block(a, b)
    for a, b in _pairs(world, "mutes", "user_id", "muted_id"):
        viewers.mute(a, b)
    keywords = world.muted_keywords.to_pydict()
    for user_id, keyword in zip(keywords["user_id"], keywords["keyword"], strict=True):
        viewers.add_muted_keyword(user_id, keyword)
    posts = posts_of(world)
    viewers.load_histories(_histories(world, {p.post_id: p.author_id for p in posts}))
    return WorldState(
        viewers=viewers,
        posts=InMemoryPostStore(posts, counts_of(world)),
        now_ms=world.now_ms,
    )


def _pairs(world: World, table: str, a: str, b: str) -> zip:
    t = world.table(table)
    return zip(t.column(a).to_pylist(), t.column(b).to_pylist(), strict=True)


def _histories(world: World, author_of: dict[int, int]) -> list[tuple[int, list[Engagement]]]:
    """Impressions with at least one action, per viewer, newest first (as training builds them)."""
    eng = world.engagements
    actions = np.stack([eng.column(a).to_numpy(zero_copy_only=False) for a in ACTIONS], axis=1)
    acted = np.flatnonzero(actions.any(axis=1))
    viewer = eng.column("viewer_id").to_numpy()[acted]
    served = eng.column("served_ms").to_numpy()[acted]
    order = acted[np.lexsort((-served, viewer))]
    viewer_ids = eng.column("viewer_id").to_numpy()[order]
    post_ids = eng.column("post_id").to_numpy()[order]
    surfaces = eng.column("surface").to_numpy()[order]
    served_ms = eng.column("served_ms").to_numpy()[order]
    dwell_s = eng.column("dwell_time_s").to_numpy()[order]
    rows = actions[order]
    histories: dict[int, list[Engagement]] = {}
    for i in range(len(order)):
        post_id = int(post_ids[i])
        histories.setdefault(int(viewer_ids[i]), []).append(
            Engagement(
                post_id=post_id,
                author_id=author_of.get(post_id, 0),
                actions=tuple(bool(x) for x in rows[i]),
                surface=int(surfaces[i]),
                served_ms=int(served_ms[i]),
                dwell_s=float(dwell_s[i]),
            )
        )
    return list(histories.items())
