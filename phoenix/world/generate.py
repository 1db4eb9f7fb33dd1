"""Generate a synthetic world (`phoenix world`): users with hidden topic tastes, a follow graph,
posts, blocks and mutes, and impressions whose actions are drawn from the ground truth in
`phoenix.world.spec`.

The stages live in their own modules, in the order they run: `people` (users, follows, blocks,
mutes and muted keywords), `posts` (posts, replies, reposts, videos and text), `impressions`
(serving and actions), then `profiles` (what X's user features read) and the posts' semantic ids.
This module runs them, turns their results into the tables of `phoenix.world.schema` and writes
the world.

Every stage draws from one `numpy.random.default_rng(spec.seed)` in a fixed order and every table
is written in a fixed row order, so a spec always produces the same bytes. The world is written to
a temporary sibling directory and renamed into place at the end: a crash never leaves half a world.

Indices, not ids, are used while generating: users are rows of `Users` (their ids increase with
the index), authors are positions in `Users.authors`, posts are rows of `Posts` in time order.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from phoenix.actions import ACTIONS
from phoenix.errors import WorldError
from phoenix.world import schema
from phoenix.world.impressions import Impressions, Reactions, draw_actions, make_impressions
from phoenix.world.people import Graph, Users, make_avoidance, make_follows, make_users
from phoenix.world.posts import Posts, make_posts, make_semantic_ids
from phoenix.world.profiles import REGIONS, Profiles, make_profiles
from phoenix.world.schema import FORMAT_VERSION, table_path
from phoenix.world.spec import (
    DWELL_TIME_MATCH_GAIN,
    DWELL_TIME_MEDIAN_S,
    DWELL_TIME_SIGMA,
    FILLER_WORDS,
    GROUND_TRUTH,
    OUT_OF_NETWORK_ONLY_ACTIONS,
    TOPIC_WORDS,
    VIDEO_ONLY_ACTIONS,
    WorldSpec,
)

log = logging.getLogger(__name__)

_STAGES = (
    "users",
    "follows",
    "blocks and mutes",
    "posts",
    "impressions",
    "actions",
    "profiles",
    "semantic ids",
    "write",
)


def generate_world(
    spec: WorldSpec, out_dir: str | Path, *, progress: bool = True, overwrite: bool = False
) -> Path:
    """Generate the world described by `spec` into `out_dir` and return that path.

    Refuses a non-empty existing `out_dir` unless `overwrite` is true, in which case the old world
    is replaced only once the new one is complete.
    """
    out_dir = Path(out_dir)
    _check_target(out_dir, overwrite)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = _make_sibling(out_dir, "tmp")
    try:
        with tqdm(
            total=len(_STAGES), desc="phoenix world", unit="stage", disable=not progress
        ) as bar:
            tables = _build_tables(spec, bar)
            with _stage(bar, "write"):
                _write(tmp, spec, tables)
        _move_into_place(tmp, out_dir, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _build_tables(spec: WorldSpec, bar: tqdm) -> dict[str, pa.Table]:
    rng = np.random.default_rng(spec.seed)
    with _stage(bar, "users"):
        users = make_users(rng, spec)
    with _stage(bar, "follows"):
        follows = make_follows(rng, spec, users)
    with _stage(bar, "blocks and mutes"):
        graph = make_avoidance(rng, spec, users, follows)
    with _stage(bar, "posts"):
        posts = make_posts(rng, spec, users)
    with _stage(bar, "impressions"):
        imp = make_impressions(rng, spec, users, graph, posts)
    with _stage(bar, "actions"):
        reactions = draw_actions(rng, users, posts, imp)
    # Drawn last, so that they change nothing the earlier stages draw.
    with _stage(bar, "profiles"):
        profiles = make_profiles(rng, users)
    with _stage(bar, "semantic ids"):
        sids = make_semantic_ids(rng, posts)
    return _to_tables(users, profiles, graph, posts, sids, imp, reactions)


@contextmanager
def _stage(bar: tqdm, name: str) -> Iterator[None]:
    bar.set_postfix_str(name)
    yield
    bar.update()


# Tables and files --------------------------------------------------------------------------------


def _to_tables(
    users: Users,
    profiles: Profiles,
    graph: Graph,
    posts: Posts,
    sids: np.ndarray,
    imp: Impressions,
    reactions: Reactions,
) -> dict[str, pa.Table]:
    ids, n = users.ids, len(users.ids)
    is_author = np.zeros(n, dtype=bool)
    is_author[users.authors] = True
    author_topic = np.full(n, -1, dtype=np.int32)
    author_topic[users.authors] = users.author_topic
    offsets = np.arange(0, users.taste.size + 1, users.taste.shape[1], dtype=np.int32)
    columns: dict[str, dict[str, Any]] = {
        "users": {
            "user_id": ids,
            "taste": pa.ListArray.from_arrays(offsets, users.taste.reshape(-1)),
            "is_author": is_author,
            "author_topic": author_topic,
            "follower_count": np.bincount(graph.follows[:, 1], minlength=n).astype(np.int64),
            "activity": users.activity,
            **vars(profiles),
        },
        "follows": _pair_columns(ids, graph.follows, "follower_id", "followee_id"),
        "blocks": _pair_columns(ids, graph.blocks, "user_id", "blocked_id"),
        "mutes": _pair_columns(ids, graph.mutes, "user_id", "muted_id"),
        "muted_keywords": {
            "user_id": ids[graph.keyword_users],
            "keyword": pa.array(graph.keywords, type=pa.string()),
        },
        "posts": _post_columns(users, posts, sids),
        "engagements": _engagement_columns(users, posts, imp, reactions),
    }
    return {
        name: pa.Table.from_pydict(columns[name], schema=schema.TABLES[name])
        for name in schema.TABLES
    }


def _pair_columns(ids: np.ndarray, pairs: np.ndarray, first: str, second: str) -> dict[str, Any]:
    return {first: ids[pairs[:, 0]], second: ids[pairs[:, 1]]}


def _post_columns(users: Users, posts: Posts, sids: np.ndarray) -> dict[str, Any]:
    def post_id_or_zero(index: np.ndarray) -> np.ndarray:
        return np.where(index >= 0, posts.ids[np.maximum(index, 0)], 0)

    return {
        "post_id": posts.ids,
        "author_id": users.ids[users.authors[posts.author]],
        "created_ms": posts.created,
        "kind": posts.kind,
        "topic": posts.topic.astype(np.int32),
        "parent_id": post_id_or_zero(posts.parent),
        "reposted_id": post_id_or_zero(posts.reposted),
        "conversation_id": posts.ids[posts.root],
        "is_video": posts.is_video,
        "video_duration_s": posts.duration,
        "text": pa.array(posts.text, type=pa.string()),
        "semantic_ids": pa.FixedSizeListArray.from_arrays(
            pa.array(sids.reshape(-1), type=pa.int16()), schema.SID_LEVELS
        ),
    }


def _engagement_columns(
    users: Users, posts: Posts, imp: Impressions, reactions: Reactions
) -> dict[str, Any]:
    return {
        "viewer_id": users.ids[imp.viewer],
        "post_id": posts.ids[imp.post],
        "served_ms": imp.served,
        "surface": reactions.surface,
        **{name: reactions.actions[:, i] for i, name in enumerate(ACTIONS)},
        "dwell_time_s": reactions.dwell_time,
    }


def _write(directory: Path, spec: WorldSpec, tables: dict[str, pa.Table]) -> None:
    for name, table in tables.items():
        pq.write_table(table, table_path(directory, name), compression="zstd")
    meta = _meta(spec, {name: table.num_rows for name, table in tables.items()})
    (directory / schema.META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def _meta(spec: WorldSpec, row_counts: dict[str, int]) -> dict[str, Any]:
    return {
        "schema_version": FORMAT_VERSION,
        "seed": spec.seed,
        "now_ms": spec.now_ms,
        "num_topics": spec.num_topics,
        "topics": list(spec.topics),
        "spec": spec.model_dump(),
        "row_counts": row_counts,
        "regions": [region._asdict() for region in REGIONS],
        "semantic_ids": {"levels": schema.SID_LEVELS, "codes": schema.SID_CODES},
        "topic_words": {name: list(TOPIC_WORDS[name]) for name in spec.topics},
        "filler_words": list(FILLER_WORDS),
        "ground_truth": {
            "formula": "P(action) = sigmoid(bias + sum(coefficient * feature))",
            "features": {
                "topic_match": "viewer taste[post topic] / max(viewer taste), in [0, 1]",
                "author_affinity": "1 if the viewer follows the post's author, else 0",
                "author_quality": "hidden standard-normal trait of the author",
                "viewer_propensity": "hidden standard-normal trait of the viewer",
                "interest": "standard-normal noise shared by the actions of one impression",
                "video": "1 for a video post or a repost of one",
                "reply": "1 for a reply",
                "repost": "1 for a repost",
            },
            "actions": {name: GROUND_TRUTH[name]._asdict() for name in ACTIONS},
            "video_only_actions": sorted(VIDEO_ONLY_ACTIONS),
            "out_of_network_only_actions": sorted(OUT_OF_NETWORK_ONLY_ACTIONS),
            "negative_feedback_cancels_positive_actions": True,
            "dwell_time_s": {
                "distribution": "lognormal, clipped to [0.5, 29.9], 0 unless dwell",
                "median_s": f"{DWELL_TIME_MEDIAN_S} * (1 + {DWELL_TIME_MATCH_GAIN} * topic_match)",
                "sigma": DWELL_TIME_SIGMA,
            },
        },
    }


def _check_target(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise WorldError(f"{out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise WorldError(f"{out_dir} is not empty; pass --overwrite (overwrite=True) to replace it")


def _make_sibling(out_dir: Path, tag: str) -> Path:
    """A new hidden directory beside `out_dir` (same filesystem, so renames are atomic). Unlike
    tempfile.mkdtemp it honours the umask, so the finished world is as readable as any directory."""
    for _ in range(100):
        path = out_dir.with_name(f".{out_dir.name}.{tag}-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise WorldError(f"cannot create a temporary directory beside {out_dir}")  # pragma: no cover


def _move_into_place(tmp: Path, out_dir: Path, overwrite: bool) -> None:
    """Rename the finished world onto `out_dir`, moving an old world aside first."""
    _check_target(out_dir, overwrite)
    if not out_dir.exists():
        os.replace(tmp, out_dir)
        return
    old = _make_sibling(out_dir, "old")
    os.replace(out_dir, old / "world")
    try:
        os.replace(tmp, out_dir)
    except OSError:
        os.replace(old / "world", out_dir)  # put the old world back
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)
