"""Generic numpy helpers of the world generator: weighted sampling without replacement, in time
windows and per row, and sets of (a, b) index pairs."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def gumbel_top_k(
    rng: np.random.Generator,
    log_weights: Callable[[np.ndarray], np.ndarray],
    rows: np.ndarray,
    counts: np.ndarray,
    chunk: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """For each row r of `rows`, `counts` distinct columns drawn without replacement with
    probability proportional to exp(log_weights(rows)[r]) (the Gumbel top-k trick). Columns of
    weight 0 (log -inf) are never drawn. Returns flat (row, column) arrays."""
    out_rows, out_cols = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for start in range(0, len(rows), chunk):
        block = rows[start : start + chunk]
        keys = log_weights(block)
        keys = keys + rng.gumbel(size=keys.shape)
        order = np.argsort(-keys, axis=1, kind="stable")
        r, c = np.nonzero(np.arange(keys.shape[1]) < counts[start : start + chunk, None])
        cols = order[r, c]
        keep = np.isfinite(keys[r, cols])
        out_rows.append(block[r[keep]])
        out_cols.append(cols[keep])
    return np.concatenate(out_rows), np.concatenate(out_cols)


def sample_in_windows(
    rng: np.random.Generator,
    created: np.ndarray,
    weights: np.ndarray,
    times: np.ndarray,
    windows: np.ndarray,
) -> np.ndarray:
    """For each time t, one item of a time-sorted pool created in [t - window, t), with probability
    proportional to its weight; -1 where that range holds no weight."""
    cum = np.concatenate([[0.0], np.cumsum(weights, dtype=np.float64)])
    lo = np.searchsorted(created, times - windows, side="left")
    hi = np.searchsorted(created, times, side="left")  # strictly before t
    target = cum[lo] + rng.random(len(times)) * (cum[hi] - cum[lo])
    pick = np.clip(np.searchsorted(cum, target, side="right") - 1, lo, np.maximum(hi - 1, lo))
    return np.where(cum[hi] > cum[lo], pick, -1)


def choose_per_row(rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
    """One column per row of `weights` [R, C], drawn proportionally to the row."""
    cdf = np.cumsum(weights, axis=1)
    u = rng.random(len(weights)) * cdf[:, -1] if len(weights) else np.zeros(0)
    return np.minimum((cdf < u[:, None]).sum(axis=1), weights.shape[1] - 1)


def unique_pairs(pairs: np.ndarray, n: int) -> np.ndarray:
    """Distinct (a, b) index pairs sorted by a then b."""
    codes = np.unique(pairs[:, 0].astype(np.int64) * n + pairs[:, 1])
    return np.stack([codes // n, codes % n], axis=1)


def pairs_in(pairs: np.ndarray, existing: np.ndarray, n: int) -> np.ndarray:
    """Per row of `pairs`: is it one of the rows of `existing`?"""
    return np.isin(pairs[:, 0] * n + pairs[:, 1], existing[:, 0] * n + existing[:, 1])


def adjacency(pairs: np.ndarray, n: int) -> list[np.ndarray]:
    """Per first index (0..n-1), the second indices of the sorted `pairs` that start with it."""
    bounds = np.searchsorted(pairs[:, 0], np.arange(n + 1))
    return [pairs[bounds[i] : bounds[i + 1], 1] for i in range(n)]
