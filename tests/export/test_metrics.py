"""AUC and recall@K against independent computations."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from export.training.metrics import recall_at_k, roc_auc


def pairwise_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counting one half: the definition."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_the_pairwise_definition_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 60)
    scores = rng.integers(0, 6, 60).astype(float)  # many ties
    assert roc_auc(labels, scores) == pytest.approx(pairwise_auc(labels, scores))


def test_auc_extremes_and_undefined() -> None:
    labels = np.array([0, 0, 1, 1])
    assert roc_auc(labels, [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert roc_auc(labels, [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert roc_auc(labels, [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert roc_auc([1, 1], [0.2, 0.3]) is None
    with pytest.raises(ValueError, match="differ in size"):
        roc_auc([0, 1], [0.1])


def test_recall_at_k() -> None:
    retrieved = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    relevant = [{1, 10}, {6}, set()]
    # query 0 finds 1 of 2, query 1 finds 1 of 1, query 2 has nothing relevant and is skipped
    assert recall_at_k(retrieved, relevant) == pytest.approx((0.5 + 1.0) / 2)
    assert recall_at_k(retrieved[:, :1], relevant) == pytest.approx((0.5 + 0.0) / 2)
    assert recall_at_k(retrieved, [set(), set(), set()]) is None
