"""Fill the embedded stores from a synthetic world directory (`phoenix world`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from orchestrator.state.posts import InMemoryPostStore, Post
from orchestrator.state.viewers import DEFAULT_MAX_HISTORY, Engagement, InMemoryViewerStore
from phoenix.actions import ACTIONS
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
    rows = zip(*(cols[name] for name in _POST_FIELDS), reposted_author, strict=True)
    return [Post(*row) for row in rows]


def impressions_of(world: World) -> dict[int, int]:
    """Impressions per post: every served row of the engagement log counts once."""
    ids, counts = np.unique(world.engagements.column("post_id").to_numpy(), return_counts=True)
    return dict(zip(ids.tolist(), counts.tolist(), strict=True))


def load_world_state(world: World, max_history: int = DEFAULT_MAX_HISTORY) -> WorldState:
    """Users, the social graph, muted keywords, engagement histories and posts of `world`."""
    viewers = InMemoryViewerStore(max_history=max_history)
    for user_id in world.users.column("user_id").to_pylist():
        viewers.add_user(user_id)
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
        posts=InMemoryPostStore(posts, impressions_of(world)),
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
            )
        )
    return list(histories.items())
