"""The on-disk layout of a synthetic world: one Parquet file per table plus `world.json`.

This module is the contract between the generator (`phoenix world`), training, evaluation and the
orchestrator's stores: table names, column names and Arrow types live here and nowhere else.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from phoenix.actions import ACTIONS

#: Version of the on-disk layout, written to world.json as `schema_version`. Bump it when a table
#: gains, loses or retypes a column, so an old world is refused with a clear message.
FORMAT_VERSION = 2

#: Post kinds, stored as int8 in `posts.kind`.
ORIGINAL, REPLY, REPOST = 0, 1, 2
POST_KINDS = {ORIGINAL: "original", REPLY: "reply", REPOST: "repost"}

#: Semantic ids of a post: SID_LEVELS codes in 1..SID_CODES, all 0 when the post has none.
SID_LEVELS = 6
SID_CODES = 256

USERS = pa.schema(
    [
        ("user_id", pa.int64()),  # snowflake-like positive id, never 0
        ("taste", pa.list_(pa.float32())),  # hidden topic preference, sums to 1 (ground truth)
        ("is_author", pa.bool_()),  # posts originals; every author is also a user
        ("author_topic", pa.int32()),  # main topic of an author, -1 for non-authors
        ("follower_count", pa.int64()),  # from follows.parquet, heavy-tailed for authors
        ("activity", pa.float32()),  # impressions per hour relative to the mean (ground truth)
        # The profile X's user features read (phoenix.world.profiles); 0 = unknown throughout.
        ("timezone", pa.int8()),  # X's Timezone enum (1..30 named zones)
        ("language", pa.int16()),  # X's LanguageCode enum
        ("country", pa.int16()),  # X's CountryCode enum
        ("gender", pa.int8()),  # profile gender: 1 female, 2 male (X's feature encoding)
        ("age_bracket", pa.int8()),  # 1 = 13-17, 2 = 18-24, ... 7 = 65+
        ("age_years", pa.int16()),
        ("inferred_gender", pa.int8()),  # 0 female, 1 male; meaningful when the score is > 0
        ("inferred_gender_score", pa.float32()),  # confidence in [0.5, 1]; 0 = not inferred
        ("latitude", pa.float32()),  # degrees; latitude = longitude = 0 when unknown
        ("longitude", pa.float32()),
        ("installed_apps", pa.int64()),  # 64-app multi-hot as a bit mask: bit i = app i
        ("ip_id", pa.int64()),  # IPv4 address as an integer
    ]
)

FOLLOWS = pa.schema([("follower_id", pa.int64()), ("followee_id", pa.int64())])
BLOCKS = pa.schema([("user_id", pa.int64()), ("blocked_id", pa.int64())])
MUTES = pa.schema([("user_id", pa.int64()), ("muted_id", pa.int64())])
MUTED_KEYWORDS = pa.schema([("user_id", pa.int64()), ("keyword", pa.string())])

POSTS = pa.schema(
    [
        ("post_id", pa.int64()),  # snowflake id; created_ms = (id >> 22) + epoch
        ("author_id", pa.int64()),
        ("created_ms", pa.int64()),  # equals snowflake.created_ms(post_id)
        ("kind", pa.int8()),  # ORIGINAL, REPLY or REPOST
        ("topic", pa.int32()),  # ground-truth topic (a repost carries its original's)
        ("parent_id", pa.int64()),  # replied-to post, 0 unless kind == REPLY
        ("reposted_id", pa.int64()),  # reposted original, 0 unless kind == REPOST
        ("conversation_id", pa.int64()),  # root post of the thread (own id for a root)
        ("is_video", pa.bool_()),  # a repost of a video counts as a video
        ("video_duration_s", pa.float32()),  # 0 unless is_video
        ("text", pa.string()),  # real words, topic-dependent; empty for a plain repost
        ("semantic_ids", pa.list_(pa.int16(), SID_LEVELS)),  # coarse to fine; all 0 = none
    ]
)

#: One row per impression (post served to a viewer), with the actions the viewer took. Rows with
#: no action are the negatives the ranker trains on; rows with at least one action form histories.
ENGAGEMENTS = pa.schema(
    [
        ("viewer_id", pa.int64()),
        ("post_id", pa.int64()),
        ("served_ms", pa.int64()),  # after the post's creation, before world.json's now_ms
        ("surface", pa.int8()),  # product surface, 0..15
        *[(name, pa.bool_()) for name in ACTIONS],
        ("dwell_time_s", pa.float32()),  # seconds, 0 when the post was not dwelled on
    ]
)

TABLES: dict[str, pa.Schema] = {
    "users": USERS,
    "follows": FOLLOWS,
    "blocks": BLOCKS,
    "mutes": MUTES,
    "muted_keywords": MUTED_KEYWORDS,
    "posts": POSTS,
    "engagements": ENGAGEMENTS,
}

META_FILE = "world.json"


def table_path(world_dir: Path, name: str) -> Path:
    """Where table `name` lives inside a world directory."""
    return Path(world_dir) / f"{name}.parquet"
