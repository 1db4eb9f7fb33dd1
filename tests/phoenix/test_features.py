"""Feature packing: the user arrays, histories (left-aligned, oldest first, the newest kept),
candidates (stale flag, counts), local time as X's engine derives it, and the errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from datetime import timezone as dt_timezone

import numpy as np
import pytest

from phoenix.actions import NUM_ACTIONS, X_COLUMNS, Action
from phoenix.config import PRESETS
from phoenix.errors import InputError
from phoenix.features import (
    NUM_TIMEZONES,
    STALE_AFTER_S,
    TIMEZONE_UTC_OFFSET_S,
    USER_AGE_BRACKET,
    USER_AGE_YEARS,
    USER_COUNTRY,
    USER_GENDER,
    USER_INFERRED_GENDER,
    USER_INFERRED_GENDER_SCORE,
    USER_LANGUAGE,
    USER_LATITUDE,
    USER_LONGITUDE,
    PostFacts,
    UserProfile,
    fit_semantic_ids,
    is_stale,
    local_context,
    pack_candidates,
    pack_history,
    pack_posts,
    pack_user,
    unpack_apps,
)
from phoenix.hashing import IdHasher

CONFIG = PRESETS["tiny"].with_overrides(history_len=4)
HASHER = IdHasher(CONFIG)
T0 = 1_785_000_000  # 2026-07-25, Unix seconds


def facts(n: int | tuple[int, ...], **changes) -> PostFacts:
    """Posts 1..n by authors 101.., shown at T0 + 60 * i, created an hour before; counts and
    semantic ids that name the row."""
    shape = (n,) if isinstance(n, int) else n
    i = np.arange(int(np.prod(shape))).reshape(shape)
    base = {
        "post_ids": i + 1,
        "author_ids": i + 101,
        "surface": i % 16,
        "impression_s": T0 + 60 * i,
        "created_s": T0 + 60 * i - 3600,
        "followed_by_viewer": i % 2 == 0,
        "following_viewer": i % 3 == 0,
        "counts": np.stack([i + 1, i + 2, i + 3, i + 4, 10 * i + 5], axis=-1),
        "sids": np.stack([(i % 256) + 1] * 6, axis=-1),
    }
    return PostFacts(**(base | changes))


def profile(n: int, **changes) -> UserProfile:
    base = UserProfile.unknown(n)
    return UserProfile(**(vars(base) | changes))


# The viewer -------------------------------------------------------------------------------------


def test_user_arrays_in_x_columns() -> None:
    p = profile(
        2,
        timezone=np.array([1, 14]),
        language=np.array([37, 74]),
        country=np.array([233, 114]),
        gender=np.array([2, 0]),
        age_bracket=np.array([3, 0]),
        age_years=np.array([29, 0]),
        inferred_gender=np.array([1, 0]),
        inferred_gender_score=np.array([0.9, 0.0]),
        latitude=np.array([40.7, 35.7]),
        longitude=np.array([-74.0, 139.7]),
        installed_apps=np.array([0b1011, -(2**63)]),  # apps 0, 1, 3; app 63 (the sign bit)
        ip_id=np.array([0x17000001, 0]),
    )
    out = pack_user(HASHER, [5, 6], p)
    np.testing.assert_array_equal(out["user_hash"], HASHER.users([5, 6]))
    np.testing.assert_array_equal(out["user_ip_hash"][0], HASHER.ips(0x17000001))
    assert (out["user_ip_hash"][1] == 0).all()  # unknown address: no rows
    assert (out["user_ip_hash"][0] > CONFIG.ip_offset).all()
    cat = out["user_categorical"]
    assert cat.shape == (2, 7) and cat.dtype == np.int64
    assert cat[0, USER_LANGUAGE] == 37 and cat[0, USER_COUNTRY] == 233
    assert cat[0, USER_GENDER] == 2 and cat[0, USER_AGE_BRACKET] == 3
    assert cat[0, USER_INFERRED_GENDER] == 1
    assert (cat[:, [2, 5]] == 0).all()  # X's state and DMA columns: not in the world
    flt = out["user_float"]
    assert flt.dtype == np.float32
    np.testing.assert_allclose(flt[0, [USER_LONGITUDE, USER_LATITUDE]], [-74.0, 40.7], rtol=1e-6)
    np.testing.assert_allclose(flt[0, [USER_INFERRED_GENDER_SCORE, USER_AGE_YEARS]], [0.9, 29])
    apps = out["user_apps"]
    assert apps.shape == (2, CONFIG.num_apps) and apps.dtype == np.float32
    assert np.flatnonzero(apps[0]).tolist() == [0, 1, 3]
    assert np.flatnonzero(apps[1]).tolist() == [63]


def test_unknown_profile_is_all_zero_but_the_user_rows() -> None:
    out = pack_user(HASHER, [7], UserProfile.unknown(1))
    assert (out["user_hash"] != 0).all()
    for name in ("user_ip_hash", "user_categorical", "user_float", "user_apps"):
        assert (out[name] == 0).all(), name


def test_apps_fit_the_config_width() -> None:
    mask = np.array([(1 << 5) | (1 << 40)])
    assert np.flatnonzero(unpack_apps(mask, 8)[0]).tolist() == [5]
    wide = unpack_apps(mask, 80)
    assert wide.shape == (1, 80) and np.flatnonzero(wide[0]).tolist() == [5, 40]


def test_a_config_without_ip_rows_sends_zero_ip_rows() -> None:
    hasher = IdHasher(PRESETS["tiny"].with_overrides(num_ip_rows=0))
    out = pack_user(hasher, [1], profile(1, ip_id=np.array([12345])))
    assert (out["user_ip_hash"] == 0).all()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"timezone": np.array([32])}, "timezone"),
        ({"timezone": np.array([-1])}, "timezone"),
        ({"country": np.array([1, 2])}, "country"),
        ({"gender": np.array([-1])}, "gender"),
        ({"latitude": np.array([np.nan])}, "user profile"),
        ({"ip_id": np.array([1.5])}, "ip_id"),
    ],
)
def test_bad_profiles_name_the_field(changes: dict, field: str) -> None:
    with pytest.raises(InputError, match=rf"^{field}"):
        pack_user(HASHER, [1], profile(1, **changes))


# Local time and staleness -----------------------------------------------------------------------


@pytest.mark.parametrize("tz", range(NUM_TIMEZONES))
def test_local_hour_and_weekday_match_the_calendar(tz: int) -> None:
    times = T0 + np.arange(0, 8 * 86_400, 3_599 * 5)
    ctx = local_context(tz, times)
    assert ctx.shape == (len(times), 3)
    zone = dt_timezone(timedelta(seconds=int(TIMEZONE_UTC_OFFSET_S[tz])))
    for t, (code, hour, day) in zip(times.tolist(), ctx.tolist(), strict=True):
        local = datetime.fromtimestamp(t, UTC).astimezone(zone)
        assert (code, hour, day) == (tz, local.hour + 1, local.isoweekday())


def test_local_time_offsets_are_the_zones_standard_offsets() -> None:
    # A few of X's zones by name: New York, Los Angeles, London, Kolkata, Tokyo, Honolulu.
    hours = {1: -5, 3: -8, 6: 0, 15: 5.5, 14: 9, 25: -10}
    for tz, h in hours.items():
        assert TIMEZONE_UTC_OFFSET_S[tz] == h * 3600


def test_unknown_impression_time_has_no_hour_or_day() -> None:
    utc = datetime.fromtimestamp(T0, UTC)
    assert local_context(np.array([3, 0]), np.array([0, T0])).tolist() == [
        [3, 0, 0],
        [0, utc.hour + 1, utc.isoweekday()],  # timezone 0 (unknown) counts as UTC
    ]


def test_stale_after_fourteen_days() -> None:
    created = np.array([T0, T0, T0, 0])
    shown = np.array([T0 + 14 * 86_400, T0 + STALE_AFTER_S, T0 + STALE_AFTER_S + 1, T0])
    assert is_stale(shown, created).tolist() == [False, False, True, False]
    assert STALE_AFTER_S >= 14 * 86_400


# Histories --------------------------------------------------------------------------------------


def test_history_is_left_aligned_oldest_first_and_keeps_the_newest() -> None:
    # Viewer 0: six engagements given newest first (truncated to the newest 4); viewer 1: two,
    # given in shuffled order; viewer 2: none.
    f = facts(8)
    order = np.array([5, 4, 3, 2, 1, 0, 7, 6])
    posts = PostFacts(**{k: np.asarray(v)[order] for k, v in vars(f).items()})
    viewer = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    named = np.zeros((8, NUM_ACTIONS), bool)
    named[:, Action.FAVORITE] = True
    dwell = np.arange(8, dtype=np.float32)[order]
    out = pack_history(HASHER, posts, named, dwell, viewer, np.array([1, 14, 6]))

    assert out["history_post_hash"].shape == (3, 4, 2)
    slots = out["history_post_hash"][..., 0]
    np.testing.assert_array_equal(slots[0], HASHER.posts([3, 4, 5, 6])[:, 0])  # newest 4 of 6
    np.testing.assert_array_equal(slots[1, :2], HASHER.posts([7, 8])[:, 0])  # oldest first
    np.testing.assert_array_equal(out["history_dwell"][0], [2, 3, 4, 5])
    times = out["history_time"][..., 0]
    assert np.all(np.diff(times[0]) > 0)
    # Padding: everything zero after the valid slots, and for a viewer with no history.
    for name, values in out.items():
        assert (values[1, 2:] == 0).all() and (values[2] == 0).all(), name


def test_history_fields_describe_each_engagement() -> None:
    f = facts(3)
    named = np.zeros((3, NUM_ACTIONS), bool)
    named[0, Action.FAVORITE] = named[1, Action.REPLY] = named[1, Action.DWELL] = True
    out = pack_history(HASHER, f, named, np.array([0, 7.5, 0]), np.zeros(3, int), np.array([14]))
    i = np.arange(3)
    np.testing.assert_array_equal(out["history_author_hash"][0, :3], HASHER.authors(i + 101))
    np.testing.assert_array_equal(out["history_surface"][0, :3], i % 16)
    np.testing.assert_array_equal(out["history_time"][0, :3, 0], T0 + 60 * i)
    np.testing.assert_array_equal(out["history_time"][0, :3, 1], T0 + 60 * i - 3600)
    np.testing.assert_array_equal(out["history_context"][0, :3], local_context(14, T0 + 60 * i))
    np.testing.assert_array_equal(out["history_follow"][0, :3, 0], i % 2 == 0)
    np.testing.assert_array_equal(out["history_follow"][0, :3, 1], i % 3 == 0)
    np.testing.assert_array_equal(out["history_counts"][0, :3, 4], 10 * i + 5)
    np.testing.assert_array_equal(out["history_sids"][0, :3, 0], i + 1)
    acts = out["history_actions"]
    assert acts.shape == (1, 4, CONFIG.num_action_columns) and acts.dtype == np.float32
    assert np.flatnonzero(acts[0, 0]).tolist() == [X_COLUMNS[Action.FAVORITE]]
    assert set(np.flatnonzero(acts[0, 1]).tolist()) == {
        X_COLUMNS[Action.REPLY],
        X_COLUMNS[Action.DWELL],
    }
    assert not acts[0, 2].any()  # an impression without action keeps its slot, no columns set
    np.testing.assert_array_equal(out["history_dwell"][0], [0, 7.5, 0, 0])


def test_history_ties_keep_the_given_order_and_ignore_empty_posts() -> None:
    f = facts(4, impression_s=np.full(4, T0), post_ids=np.array([11, 0, 12, 13]))
    out = pack_history(
        HASHER, f, np.zeros((4, NUM_ACTIONS)), np.zeros(4), np.zeros(4, int), np.array([0])
    )
    np.testing.assert_array_equal(
        out["history_post_hash"][0, :, 0], [*HASHER.posts([11, 12, 13])[:, 0], 0]
    )


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"viewer": np.array([0, 2])}, "viewer"),
        ({"viewer": np.array([0])}, "viewer"),
        ({"actions": np.zeros((2, NUM_ACTIONS + 1))}, "actions"),
        ({"dwell_s": np.array([1.0, -1.0])}, "dwell_s"),
        ({"timezone": np.array([[0, 0]])}, "timezone"),
        ({"posts": facts(2, counts=np.zeros((2, 4), int))}, "counts"),
        ({"posts": facts(2, author_ids=np.array([1]))}, "author_ids"),
        ({"posts": facts(2, impression_s=np.array([1.5, 2.0]))}, "impression_s"),
        ({"posts": facts(2, surface=np.array([-1, 0]))}, "surface"),
    ],
)
def test_bad_histories_name_the_field(kwargs: dict, field: str) -> None:
    args = {
        "posts": facts(2),
        "actions": np.zeros((2, NUM_ACTIONS)),
        "dwell_s": np.zeros(2),
        "viewer": np.array([0, 1]),
        "timezone": np.array([0, 0]),
    } | kwargs
    with pytest.raises(InputError, match=rf"^{field}"):
        pack_history(HASHER, **args)


# Candidates and posts ---------------------------------------------------------------------------


def test_candidates_for_one_viewer_and_for_a_batch() -> None:
    one = pack_candidates(HASHER, facts(3), 14)
    assert one["candidate_post_hash"].shape == (3, 2)
    np.testing.assert_array_equal(
        one["candidate_context"], local_context(14, T0 + 60 * np.arange(3))
    )
    batch = pack_candidates(HASHER, facts((2, 3)), np.array([[1], [14]]))
    assert batch["candidate_counts"].shape == (2, 3, CONFIG.num_counts)
    assert batch["candidate_context"][:, :, 0].tolist() == [[1, 1, 1], [14, 14, 14]]
    assert batch["candidate_stale"].tolist() == [[0, 0, 0], [0, 0, 0]]
    with pytest.raises(InputError, match=r"^timezone"):
        pack_candidates(HASHER, facts((2, 3)), np.array([1, 14]))


def test_padding_candidates_are_all_zero() -> None:
    f = facts(3, post_ids=np.array([1, 0, 3]))
    out = pack_candidates(HASHER, f, 6)
    for name, values in out.items():
        assert (values[1] == 0).all(), name
        assert name == "candidate_stale" or (values[2] != 0).any(), name


def test_stale_candidates_are_flagged_and_their_counts_zeroed() -> None:
    created = np.array([T0 - 15 * 86_400, T0 - 86_400, 0])
    out = pack_candidates(HASHER, facts(3, impression_s=np.full(3, T0), created_s=created), 0)
    assert out["candidate_stale"].tolist() == [1, 0, 0]
    assert (out["candidate_counts"][0] == 0).all()
    assert (out["candidate_counts"][1:] > 0).all()
    assert out["candidate_time"][:, 1].tolist() == created.tolist()


def test_counts_are_capped_at_the_int32_maximum() -> None:
    out = pack_candidates(HASHER, facts(1, counts=np.array([[2**40, 0, 0, 0, 1]])), 0)
    assert out["candidate_counts"][0, 0] == 2**31 - 1


def test_semantic_ids_fit_the_config() -> None:
    five = PRESETS["tiny"].with_overrides(sid_levels=5, sid_codes=100)
    codes = np.array([[1, 100, 101, 256, 0, 7], [0, 0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(fit_semantic_ids(codes, five), [[1, 100, 1, 56, 0], [0] * 5])
    eight = PRESETS["tiny"].with_overrides(sid_levels=8)
    np.testing.assert_array_equal(
        fit_semantic_ids(codes[:1], eight), [[1, 100, 101, 256, 0, 7, 0, 0]]
    )
    with pytest.raises(InputError, match=r"^sids"):
        fit_semantic_ids([[-1]], CONFIG)


def test_pack_posts_for_the_candidate_tower() -> None:
    out = pack_posts(HASHER, [5, 0], [9, 9], [[1, 2, 3, 4, 5, 6], [7, 7, 7, 7, 7, 7]])
    np.testing.assert_array_equal(out["post_hash"][0], HASHER.posts(5))
    np.testing.assert_array_equal(out["author_hash"][0], HASHER.authors(9))
    assert out["sids"][0].tolist() == [1, 2, 3, 4, 5, 6]
    assert (out["post_hash"][1] == 0).all() and (out["author_hash"][1] == 0).all()
    assert (out["sids"][1] == 0).all()
    with pytest.raises(InputError, match=r"^author_ids"):
        pack_posts(HASHER, [5, 6], [9], [[1] * 6] * 2)
