"""Sets of ids as sorted NumPy arrays: membership and positions for a whole batch of ids at once.

`np.isin` sorts both sides on every call; a set kept sorted answers with one binary search.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]


def sorted_ids(ids: Iterable[int]) -> I64:
    """The ids as a sorted int64 array (what `contains` searches)."""
    out = np.fromiter(ids, np.int64)
    out.sort()
    return out


def find(keys: I64, values: npt.ArrayLike) -> tuple[I64, Bools]:
    """For each value: its position in the sorted `keys` (clipped to a valid index) and whether
    it is there."""
    values = np.asarray(values, np.int64)
    if len(keys) == 0:
        return np.zeros(len(values), np.int64), np.zeros(len(values), np.bool_)
    at = keys.searchsorted(values)
    np.minimum(at, len(keys) - 1, out=at)
    return at, keys.take(at) == values


def contains(keys: I64, values: npt.ArrayLike) -> Bools:
    """Whether each value is in the sorted `keys`."""
    return find(keys, values)[1]
