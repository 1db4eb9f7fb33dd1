"""Engagement counts of posts as of any moment, from impression events (NumPy only).

X's ranker reads each post's favorite, reply, repost, quote and view counts as they stood when the
post was shown (`phoenix.features.COUNT_NAMES`). `EngagementCounts` indexes a log of impressions,
each with the actions taken on it, and answers "how many before time t" for any (post, t):
strictly before, so an impression never counts itself, and nothing after it leaks in.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from phoenix.errors import InputError

#: The counted actions, in the order of the count columns; the last count (views) is every
#: impression.
COUNTED_ACTIONS = ("favorite", "reply", "repost", "quote")


class EngagementCounts:
    """Per-post cumulative counts over an impression log.

    post_ids [E], times [E] (any integer unit, the same as the queries'), actions [E, 4] 0/1 in
    COUNTED_ACTIONS order. Memory and build time are O(E log E); each query is a binary search.
    """

    def __init__(
        self, post_ids: npt.ArrayLike, times: npt.ArrayLike, actions: npt.ArrayLike
    ) -> None:
        post_ids = np.asarray(post_ids, dtype=np.int64)
        times = np.asarray(times, dtype=np.int64)
        actions = np.asarray(actions)
        e = len(post_ids)
        if post_ids.shape != (e,) or times.shape != (e,):
            raise InputError("post_ids and times: expected two arrays of the same shape [E]")
        if actions.shape != (e, len(COUNTED_ACTIONS)):
            raise InputError(
                f"actions: expected shape [{e}, {len(COUNTED_ACTIONS)}], got {list(actions.shape)}"
            )
        self._posts = np.unique(post_ids)
        self._times = np.unique(times)
        self._stride = len(self._times) + 1
        keys = self._key(
            np.searchsorted(self._posts, post_ids), np.searchsorted(self._times, times)
        )
        order = np.argsort(keys, kind="stable")
        self._keys = keys[order]
        values = np.concatenate([actions[order].astype(np.int64), np.ones((e, 1), np.int64)], 1)
        self._cumulative = np.concatenate([np.zeros((1, values.shape[1]), np.int64), values])
        np.cumsum(self._cumulative, axis=0, out=self._cumulative)

    def _key(self, post_rank: npt.NDArray, time_rank: npt.NDArray) -> npt.NDArray[np.int64]:
        return post_rank.astype(np.int64) * self._stride + time_rank

    def at(self, post_ids: npt.ArrayLike, times: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """[..., 5] counts (COUNTED_ACTIONS, then views) of each post from events strictly before
        the matching time; zeros for a post with no events."""
        post_ids = np.asarray(post_ids, dtype=np.int64)
        times = np.asarray(times, dtype=np.int64)
        post_ids, times = np.broadcast_arrays(post_ids, times)
        rank = np.minimum(np.searchsorted(self._posts, post_ids), max(len(self._posts) - 1, 0))
        known = self._posts[rank] == post_ids if len(self._posts) else np.zeros(rank.shape, bool)
        before = np.searchsorted(self._times, times, side="left")  # distinct times < t
        first = np.searchsorted(self._keys, self._key(rank, np.zeros_like(rank)), side="left")
        upto = np.searchsorted(self._keys, self._key(rank, before), side="left")
        counts = self._cumulative[upto] - self._cumulative[first]
        return np.where(known[..., None], counts, 0)
