"""Model features from ids and facts: the one place that turns a viewer, their engagement history
and candidate posts into the arrays the ranker and the towers take. Names, shapes and meanings are
those of `export.models.inputs` (the contract); the orchestrator and training both pack here.

Callers give ids and plain facts (times, follow bits, counts, semantic ids, named actions); this
module hashes the ids, derives what X's engine derives (local hour and day of week, the stale
flag, the action columns), aligns histories and zeroes padding. A post id of 0 means "nothing
here": its slot is all zeros. NumPy only: the orchestrator uses it without PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt

from phoenix.actions import NUM_ACTIONS, to_columns
from phoenix.config import ModelConfig
from phoenix.errors import InputError
from phoenix.hashing import IdHasher

Arrays = dict[str, npt.NDArray]

# Columns of the user arrays (X's UserCategoricalFeature / UserFloatFeature order; the same
# numbers as export.models.inputs, which tests check).
USER_LANGUAGE, USER_COUNTRY, USER_GENDER, USER_AGE_BRACKET, USER_INFERRED_GENDER = 0, 1, 3, 4, 6
NUM_USER_CATEGORICAL = 7
USER_LONGITUDE, USER_LATITUDE, USER_INFERRED_GENDER_SCORE, USER_AGE_YEARS = 0, 1, 2, 3
NUM_USER_FLOAT = 4

#: The engagement counts of a post, in the order of the `*_counts` columns.
COUNT_NAMES = ("favorite", "reply", "repost", "quote", "view")
#: X's engine caps counts at the int32 maximum.
MAX_COUNT = 2**31 - 1

#: UTC offset in seconds of each value of X's `Timezone` enum (0 unknown and 31 other count as
#: UTC). Fixed offsets, no daylight saving, as in X's engine.
TIMEZONE_UTC_OFFSET_S = np.array(
    [
        0, -18000, -21600, -28800, -25200, -10800, 0, 3600, 3600, 3600, 3600, 3600, 10800,
        10800, 32400, 19800, 28800, 32400, 25200, 25200, 14400, 10800, 28800, 28800, 39600,
        -36000, -25200, -18000, -21600, -10800, 3600, 0,
    ],
    dtype=np.int64,
)  # fmt: skip
NUM_TIMEZONES = len(TIMEZONE_UTC_OFFSET_S)

#: A candidate created more than this long before its impression is stale (X's 14-day TTL,
#: which is 14 days and one hour); X's engine then sends its counts as zeros.
STALE_AFTER_S = 1_213_200

_DAY_S = 86_400
#: 1970-01-01 was a Thursday: day-of-week code 4 with Monday = 1.
_EPOCH_WEEKDAY = 3


@dataclass(frozen=True)
class UserProfile:
    """What X's user features read about each of B viewers; 0 means unknown in every field.

    The fields are the `users` columns of a synthetic world (phoenix/world/schema.py) under the
    same names: codes are X's enums, `installed_apps` is a 64-bit mask (bit i = app i).
    """

    timezone: npt.ArrayLike
    language: npt.ArrayLike
    country: npt.ArrayLike
    gender: npt.ArrayLike
    age_bracket: npt.ArrayLike
    age_years: npt.ArrayLike
    inferred_gender: npt.ArrayLike
    inferred_gender_score: npt.ArrayLike
    latitude: npt.ArrayLike
    longitude: npt.ArrayLike
    installed_apps: npt.ArrayLike
    ip_id: npt.ArrayLike

    @classmethod
    def unknown(cls, n: int) -> UserProfile:
        """Profiles of `n` viewers nothing is known about."""
        return cls(**{f.name: np.zeros(n, np.int64) for f in fields(cls)})


PROFILE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(UserProfile))


@dataclass(frozen=True)
class PostFacts:
    """Posts shown to viewers: one entry per impression, every field with the same leading shape.

    `impression_s` and `created_s` are Unix seconds (0 = unknown); the follow bits say whether the
    viewer follows the post's author and whether the author follows the viewer; `counts` [..., 5]
    are the post's favorite, reply, repost, quote and view counts at the impression (COUNT_NAMES);
    `sids` [..., K] its semantic-id codes (0 = missing; any K, fitted to the config's levels).
    """

    post_ids: npt.ArrayLike
    author_ids: npt.ArrayLike
    surface: npt.ArrayLike
    impression_s: npt.ArrayLike
    created_s: npt.ArrayLike
    followed_by_viewer: npt.ArrayLike
    following_viewer: npt.ArrayLike
    counts: npt.ArrayLike
    sids: npt.ArrayLike


def pack_user(hasher: IdHasher, user_ids: npt.ArrayLike, profile: UserProfile) -> Arrays:
    """The viewer arrays for B viewers: `user_hash`, `user_ip_hash`, `user_categorical`,
    `user_float` and `user_apps`."""
    config = hasher.config
    user_ids = _ints(user_ids, "user_ids")
    if user_ids.ndim != 1:
        raise InputError(f"user_ids: expected shape [B], got {list(user_ids.shape)}")
    b = len(user_ids)
    p = {name: np.asarray(getattr(profile, name)) for name in PROFILE_FIELDS}
    for name, value in p.items():
        if value.shape != (b,):
            raise InputError(f"{name}: expected shape [{b}], got {list(value.shape)}")
    _check_timezones(p["timezone"])
    categorical = np.zeros((b, NUM_USER_CATEGORICAL), np.int64)
    for column, name in (
        (USER_LANGUAGE, "language"),
        (USER_COUNTRY, "country"),
        (USER_GENDER, "gender"),
        (USER_AGE_BRACKET, "age_bracket"),
        (USER_INFERRED_GENDER, "inferred_gender"),
    ):
        categorical[:, column] = _ints(p[name], name)
        if (categorical[:, column] < 0).any():
            raise InputError(f"{name}: codes must be >= 0")
    floats = np.zeros((b, NUM_USER_FLOAT), np.float32)
    for column, name in (
        (USER_LONGITUDE, "longitude"),
        (USER_LATITUDE, "latitude"),
        (USER_INFERRED_GENDER_SCORE, "inferred_gender_score"),
        (USER_AGE_YEARS, "age_years"),
    ):
        floats[:, column] = p[name]
    if not np.isfinite(floats).all():
        raise InputError("user profile: latitude, longitude, scores and ages must be finite")
    return {
        "user_hash": hasher.users(user_ids),
        "user_ip_hash": hasher.ips(_ints(p["ip_id"], "ip_id")),
        "user_categorical": categorical,
        "user_float": floats,
        "user_apps": unpack_apps(p["installed_apps"], config.num_apps),
    }


def unpack_apps(mask: npt.ArrayLike, num_apps: int) -> npt.NDArray[np.float32]:
    """64-bit installed-app masks [...] -> [..., num_apps] multi-hot (bit i -> column i; apps past
    the 64 bits are 0)."""
    bits = _ints(mask, "installed_apps").view(np.uint64)
    out = np.zeros((*bits.shape, num_apps), np.float32)
    width = min(num_apps, 64)
    shifts = np.arange(width, dtype=np.uint64)
    out[..., :width] = (bits[..., None] >> shifts) & np.uint64(1)
    return out


def local_context(timezone: npt.ArrayLike, impression_s: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """[..., 3] (timezone, local hour, day of week) as X's engine stamps them: hour 1..24 and day
    1..7 (Monday = 1) in the timezone's fixed offset, both 0 when the impression time is unknown."""
    tz = _ints(timezone, "timezone")
    _check_timezones(tz)
    ts = _ints(impression_s, "impression_s")
    tz, ts = np.broadcast_arrays(tz, ts)
    local = ts + TIMEZONE_UTC_OFFSET_S[tz]
    known = ts > 0
    hour = np.where(known, local % _DAY_S // 3600 + 1, 0)
    day = np.where(known, (local // _DAY_S + _EPOCH_WEEKDAY) % 7 + 1, 0)
    return np.stack([tz, hour, day], axis=-1)


def is_stale(impression_s: npt.ArrayLike, created_s: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Posts older than STALE_AFTER_S at the impression; never when the creation time is unknown."""
    impression_s = _ints(impression_s, "impression_s")
    created_s = _ints(created_s, "created_s")
    return (created_s > 0) & (impression_s - created_s > STALE_AFTER_S)


def fit_semantic_ids(sids: npt.ArrayLike, config: ModelConfig) -> npt.NDArray[np.int64]:
    """[..., K] codes -> [..., config.sid_levels]: extra levels dropped, missing ones 0; codes
    past the config's codebook folded into it ((c - 1) % codes + 1), 0 kept as missing."""
    codes = _ints(sids, "sids")
    if codes.ndim < 1:
        raise InputError("sids: expected a trailing axis of levels")
    if (codes < 0).any():
        raise InputError("sids: codes must be >= 0")
    out = np.zeros((*codes.shape[:-1], config.sid_levels), np.int64)
    k = min(codes.shape[-1], config.sid_levels)
    out[..., :k] = codes[..., :k]
    return np.where(out > 0, (out - 1) % config.sid_codes + 1, 0)


def pack_candidates(hasher: IdHasher, posts: PostFacts, timezone: npt.ArrayLike) -> Arrays:
    """The `candidate_*` arrays, in the posts' own layout (any leading shape: [C] for one viewer,
    [B, C] for a batch). `timezone` is the viewer's, broadcast against that shape (a scalar for
    [C], [B, 1] for [B, C]). Stale candidates get zero counts, as X's engine sends them."""
    seq = _sequence(hasher, posts, timezone, "candidate")
    impression, created = posts_times(posts)
    stale = is_stale(impression, created) & (seq["candidate_post_hash"][..., 0] != 0)
    seq["candidate_counts"] = np.where(stale[..., None], 0, seq["candidate_counts"])
    seq["candidate_stale"] = stale.astype(np.int64)
    return seq


def pack_history(
    hasher: IdHasher,
    posts: PostFacts,
    actions: npt.ArrayLike,
    dwell_s: npt.ArrayLike,
    viewer: npt.ArrayLike,
    timezone: npt.ArrayLike,
) -> Arrays:
    """The `history_*` arrays [B, S, ...] of B viewers from their engagements, given flat.

    posts, actions [N, NUM_ACTIONS] (named, `phoenix.actions.ACTIONS` order), dwell_s [N] and
    viewer [N] (row 0..B-1 of the engagement's viewer) describe N engagements in any order;
    timezone [B] is each viewer's. Each viewer's engagements are ordered by impression time (ties
    keep the given order) and the newest S = config.history_len are kept, left-aligned, oldest
    first, as X's engine fills a history; slots after them are zeros. Engagements with post id 0
    are ignored.
    """
    config = hasher.config
    timezone = _ints(timezone, "timezone")
    if timezone.ndim != 1:
        raise InputError(f"timezone: expected shape [B], got {list(timezone.shape)}")
    b, s = len(timezone), config.history_len
    post_ids = _ints(posts.post_ids, "post_ids")
    if post_ids.ndim != 1:
        raise InputError(f"post_ids: expected shape [N], got {list(post_ids.shape)}")
    n = len(post_ids)
    viewer = _shaped(_ints(viewer, "viewer"), "viewer", (n,))
    actions = _shaped(np.asarray(actions), "actions", (n, NUM_ACTIONS))
    dwell_s = _shaped(np.asarray(dwell_s, np.float32), "dwell_s", (n,))
    if n and (viewer.min() < 0 or viewer.max() >= b):
        raise InputError(f"viewer: rows must be in [0, {b}), got [{viewer.min()}, {viewer.max()}]")
    if not np.isfinite(dwell_s).all() or (dwell_s < 0).any():
        raise InputError("dwell_s: must be finite seconds >= 0")
    impression, _ = posts_times(posts)

    rows = np.flatnonzero(post_ids != 0)
    rows = rows[np.lexsort((rows, impression[rows], viewer[rows]))]  # by viewer, then time
    v = viewer[rows]
    keep = np.arange(len(rows)) >= np.searchsorted(v, v, side="right") - s  # each one's newest s
    rows, v = rows[keep], v[keep]
    slot = np.arange(len(rows)) - np.searchsorted(v, v, side="left")

    def place(values: npt.NDArray) -> npt.NDArray:
        out = np.zeros((b, s, *values.shape[1:]), values.dtype)
        out[v, slot] = values[rows]
        return out

    flat = _sequence(hasher, posts, timezone[viewer], "history")
    packed = {name: place(values) for name, values in flat.items()}
    packed["history_actions"] = place(to_columns(actions != 0, config.num_action_columns))
    packed["history_dwell"] = place(dwell_s)
    return packed


def pack_posts(
    hasher: IdHasher, post_ids: npt.ArrayLike, author_ids: npt.ArrayLike, sids: npt.ArrayLike
) -> Arrays:
    """What the candidate tower reads about posts [N]: `post_hash`, `author_hash`, `sids`."""
    post_ids = _ints(post_ids, "post_ids")
    author_ids = _shaped(_ints(author_ids, "author_ids"), "author_ids", post_ids.shape)
    codes = fit_semantic_ids(sids, hasher.config)
    _shaped(codes[..., 0], "sids", post_ids.shape)
    pad = post_ids == 0
    return {
        "post_hash": hasher.posts(post_ids),
        "author_hash": hasher.authors(np.where(pad, 0, author_ids)),
        "sids": np.where(pad[..., None], 0, codes),
    }


def posts_times(posts: PostFacts) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(impression_s, created_s) as int64 arrays of the posts' shape."""
    shape = np.shape(posts.post_ids)
    return (
        _shaped(_ints(posts.impression_s, "impression_s"), "impression_s", shape),
        _shaped(_ints(posts.created_s, "created_s"), "created_s", shape),
    )


def _sequence(hasher: IdHasher, posts: PostFacts, timezone: npt.ArrayLike, prefix: str) -> Arrays:
    """The per-post fields shared by history and candidates, padding zeroed, names prefixed."""
    config = hasher.config
    post_ids = _ints(posts.post_ids, "post_ids")
    shape = post_ids.shape
    impression, created = posts_times(posts)
    counts = _shaped(_ints(posts.counts, "counts"), "counts", (*shape, config.num_counts))
    if (counts < 0).any():
        raise InputError("counts: must be >= 0")
    surface = _shaped(_ints(posts.surface, "surface"), "surface", shape)
    if (surface < 0).any():
        raise InputError("surface: must be >= 0")
    if (impression < 0).any() or (created < 0).any():
        raise InputError("impression_s, created_s: Unix seconds must be >= 0 (0 = unknown)")
    sids = fit_semantic_ids(posts.sids, config)
    _shaped(sids[..., 0], "sids", shape)
    follow = np.stack(
        [
            _shaped(np.asarray(posts.followed_by_viewer), "followed_by_viewer", shape),
            _shaped(np.asarray(posts.following_viewer), "following_viewer", shape),
        ],
        axis=-1,
    ).astype(bool)
    try:
        context = local_context(np.broadcast_to(_ints(timezone, "timezone"), shape), impression)
    except ValueError:
        raise InputError(
            f"timezone: shape {list(np.shape(timezone))} does not broadcast to {list(shape)}"
        ) from None
    values = {
        "post_hash": hasher.posts(post_ids),
        "author_hash": hasher.authors(
            _shaped(_ints(posts.author_ids, "author_ids"), "author_ids", shape)
        ),
        "surface": surface,
        "time": np.stack([impression, created], axis=-1),
        "context": context,
        "follow": follow.astype(np.int64),
        "counts": np.minimum(counts, MAX_COUNT),
        "sids": sids,
    }
    pad = post_ids == 0
    return {
        f"{prefix}_{name}": np.where(pad.reshape(*shape, *([1] * (v.ndim - len(shape)))), 0, v)
        for name, v in values.items()
    }


def _check_timezones(tz: npt.ArrayLike) -> None:
    tz = np.asarray(tz)
    if tz.size and (tz.min() < 0 or tz.max() >= NUM_TIMEZONES):
        raise InputError(
            f"timezone: X's Timezone codes are 0..{NUM_TIMEZONES - 1}, got {tz.min()}..{tz.max()}"
        )


def _ints(values: npt.ArrayLike, name: str) -> npt.NDArray[np.int64]:
    arr = np.asarray(values)
    if arr.dtype == np.uint64:
        return arr.view(np.int64)
    if arr.dtype == bool:
        return arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        if arr.size == 0:
            return arr.astype(np.int64)
        raise InputError(f"{name}: expected integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _shaped(arr: npt.NDArray, name: str, shape: tuple[int, ...]) -> npt.NDArray:
    if arr.shape != tuple(shape):
        raise InputError(f"{name}: expected shape {list(shape)}, got {list(arr.shape)}")
    return arr
