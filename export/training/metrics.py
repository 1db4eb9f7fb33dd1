"""Ranking metrics in NumPy: ROC AUC and recall@K."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def roc_auc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float | None:
    """Area under the ROC curve (Mann-Whitney U with tied scores averaged).

    None when only one class is present, where AUC is undefined.
    """
    y = np.asarray(labels).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in size: {y.shape} vs {s.shape}")
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty(s.size, dtype=np.float64)
    # Average 1-based ranks over runs of equal scores.
    starts = np.flatnonzero(np.r_[True, sorted_s[1:] != sorted_s[:-1]])
    ends = np.r_[starts[1:], s.size]
    avg = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(avg, ends - starts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def recall_at_k(retrieved: npt.NDArray[np.int64], relevant: list[set[int]]) -> float | None:
    """Mean over queries of |top-K ∩ relevant| / |relevant|; queries with nothing relevant skipped.

    retrieved: [Q, K] ids per query, best first.
    """
    per_query = [
        len(rel.intersection(row.tolist())) / len(rel)
        for row, rel in zip(retrieved, relevant, strict=True)
        if rel
    ]
    return float(np.mean(per_query)) if per_query else None
