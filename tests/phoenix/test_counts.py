"""Engagement counts as of a moment: against a brute-force count over random event logs."""

from __future__ import annotations

import numpy as np
import pytest

from phoenix.counts import COUNTED_ACTIONS, EngagementCounts
from phoenix.errors import InputError


def brute_force(posts, times, actions, post, t) -> list[int]:
    before = (posts == post) & (times < t)
    return [*actions[before].sum(axis=0).tolist(), int(before.sum())]


@pytest.mark.parametrize("seed", range(3))
def test_counts_are_the_events_strictly_before(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 400
    posts = rng.integers(1, 30, n) * 1_000_003  # sparse, large ids
    times = rng.integers(1_785_000_000_000, 1_785_000_000_000 + 5_000, n)  # many ties
    actions = rng.random((n, len(COUNTED_ACTIONS))) < 0.3
    index = EngagementCounts(posts, times, actions)
    q_posts = np.concatenate([posts[:100], [7, 31 * 1_000_003]])  # unknown posts too
    q_times = np.concatenate([times[:100], [times.max() + 1, times.min()]])
    got = index.at(q_posts, q_times)
    assert got.shape == (102, 5) and got.dtype == np.int64
    for p, t, row in zip(q_posts, q_times, got, strict=True):
        assert row.tolist() == brute_force(posts, times, actions, p, t)
    # An impression never counts itself; after the last event every event of the post counts.
    everything = index.at(posts, np.full(n, times.max() + 1))
    for p, row in zip(posts[:20], everything[:20], strict=True):
        assert row[-1] == (posts == p).sum()


def test_counts_broadcast_and_empty_logs() -> None:
    index = EngagementCounts([5, 5], [10, 20], [[1, 0, 0, 0], [0, 1, 1, 0]])
    grid = index.at(np.array([[5], [6]]), np.array([10, 15, 25]))
    assert grid.shape == (2, 3, 5)
    assert grid[0, :, -1].tolist() == [0, 1, 2] and (grid[1] == 0).all()
    empty = EngagementCounts(np.zeros(0, int), np.zeros(0, int), np.zeros((0, 4), bool))
    assert (empty.at([1, 2], [3, 4]) == 0).all()


def test_bad_logs_are_refused() -> None:
    with pytest.raises(InputError, match=r"^actions"):
        EngagementCounts([1, 2], [3, 4], np.zeros((2, 3)))
    with pytest.raises(InputError, match=r"^post_ids and times"):
        EngagementCounts([1, 2], [3], np.zeros((2, 4)))
