"""`phoenix.snowflake`: creation times live in the bits above the low 22."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

from phoenix.errors import InputError
from phoenix.snowflake import (
    TWITTER_EPOCH_MS,
    WORKER_BITS,
    SnowflakeIds,
    age_ms,
    created_ms,
    snowflake_id,
)

EPOCH_MS = 1288834974657  # 2010-11-04T01:42:54.657Z
AUG_2026_MS = 1_785_542_400_000  # 2026-08-01T00:00:00Z


def test_epoch_is_twitters() -> None:
    epoch = datetime(2010, 11, 4, 1, 42, 54, 657_000, tzinfo=timezone.utc)
    assert round(epoch.timestamp() * 1000) == EPOCH_MS == TWITTER_EPOCH_MS
    aug = datetime(2026, 8, 1, tzinfo=timezone.utc)
    assert round(aug.timestamp() * 1000) == AUG_2026_MS


@pytest.mark.parametrize(
    ("ms", "seq"),
    [
        (EPOCH_MS, 0),
        (EPOCH_MS + 1, 1),
        (AUG_2026_MS, 0),
        (AUG_2026_MS, 4_194_303),
        (AUG_2026_MS + 7, 42),
    ],
)
def test_snowflake_id_packs_time_and_sequence_by_hand(ms: int, seq: int) -> None:
    want = ((ms - EPOCH_MS) << 22) | seq  # Python ints
    got = snowflake_id(ms, seq)
    assert int(got) == want
    assert int(created_ms(want)) == ms


def test_a_real_looking_id_decodes_by_hand() -> None:
    ident = 1_800_000_000_000_000_123
    assert int(created_ms(ident)) == (ident >> 22) + EPOCH_MS
    assert int(created_ms(ident)) == ident // 2**22 + 1288834974657


def test_round_trip_over_arrays() -> None:
    rng = np.random.default_rng(0)
    times = rng.integers(EPOCH_MS, AUG_2026_MS + 10**10, size=(4, 50), dtype=np.int64)
    seqs = rng.integers(0, 2**22, size=(4, 50), dtype=np.int64)
    ids = snowflake_id(times, seqs)
    assert ids.shape == (4, 50)
    assert ids.dtype == np.int64
    np.testing.assert_array_equal(created_ms(ids), times)
    np.testing.assert_array_equal(ids & (2**22 - 1), seqs)


def test_ids_order_by_time() -> None:
    ids = snowflake_id([AUG_2026_MS, AUG_2026_MS + 1], [4_194_303, 0])
    assert ids[0] < ids[1]


def test_default_sequence_is_zero_and_broadcasts() -> None:
    assert int(snowflake_id(AUG_2026_MS)) == (AUG_2026_MS - EPOCH_MS) << 22
    ids = snowflake_id(AUG_2026_MS, np.arange(3))
    assert ids.tolist() == [((AUG_2026_MS - EPOCH_MS) << 22) | s for s in range(3)]


def test_age_ms() -> None:
    ids = snowflake_id([AUG_2026_MS - 1000, AUG_2026_MS - 48 * 3600 * 1000], [9, 0])
    assert age_ms(ids, AUG_2026_MS).tolist() == [1000, 48 * 3600 * 1000]


@pytest.mark.parametrize("seq", [-1, 2**22, [0, 2**22 + 5]])
def test_bad_sequence_raises(seq: object) -> None:
    with pytest.raises(ValueError, match="sequence"):
        snowflake_id(AUG_2026_MS, seq)


@pytest.mark.parametrize("ms", [EPOCH_MS - 1, 0, [AUG_2026_MS, EPOCH_MS - 5]])
def test_pre_epoch_time_raises(ms: object) -> None:
    with pytest.raises(ValueError, match="created_at_ms"):
        snowflake_id(ms)


def test_times_beyond_41_bits_are_refused_not_wrapped() -> None:
    last_ok = TWITTER_EPOCH_MS + (1 << 41) - 1
    assert int(snowflake_id(last_ok)) > 0
    with pytest.raises(InputError, match=r"^created_at_ms:"):
        snowflake_id(last_ok + 1)


def test_workers_never_make_the_same_id_and_each_makes_increasing_ids() -> None:
    now = 1_700_000_000_000
    makers = [SnowflakeIds(worker=w, worker_bits=2) for w in range(4)]
    ids = [[m.next_id(now) for _ in range(5000)] for m in makers]
    for own in ids:
        assert own == sorted(own) and len(set(own)) == len(own)
    assert len({i for own in ids for i in own}) == 4 * 5000
    # the worker's number sits in the low bits, below it the count
    assert [(own[0] >> 20) & 3 for own in ids] == [0, 1, 2, 3]


def test_a_full_millisecond_dates_the_next_ids_a_millisecond_later() -> None:
    now = 1_700_000_000_000
    maker = SnowflakeIds(worker=5, worker_bits=20)  # 2 bits of count: 4 ids per millisecond
    ids = [maker.next_id(now) for _ in range(9)]
    assert [int(created_ms(i)) for i in ids] == [now] * 4 + [now + 1] * 4 + [now + 2]
    assert len(set(ids)) == 9
    assert maker.next_id(now - 50) > ids[-1]  # the clock going back never makes an older id


def test_a_worker_number_out_of_range_is_refused_naming_it() -> None:
    with pytest.raises(InputError, match="worker"):
        SnowflakeIds(worker=1 << WORKER_BITS)
