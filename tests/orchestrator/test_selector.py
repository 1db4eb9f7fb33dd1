"""Selection (docs/DESIGN.md §5): top 50 -> one post per conversation -> the request's limit."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.pipeline.selector import select
from phoenix.ranking_config import RankingConfig

CONFIG = RankingConfig()


def ranked(n: int, conversation_of: dict[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(conversation keys, scores) of n ranked posts, best first (score n - i); post i joins the
    conversation rooted at post `conversation_of[i]` when given, else starts its own."""
    conversation_of = conversation_of or {}
    keys = np.array([1_000 + conversation_of.get(i, i) for i in range(n)], np.int64)
    return keys, np.arange(n, 0, -1, dtype=np.float64)


def positions(config: RankingConfig, posts: tuple[np.ndarray, np.ndarray], limit: int) -> list[int]:
    return select(config, *posts, limit).tolist()


def test_returns_the_first_limit_posts() -> None:
    assert positions(CONFIG, ranked(60), 35) == list(range(35))
    assert positions(CONFIG, ranked(60), 10) == list(range(10))
    assert positions(CONFIG, ranked(5), 35) == list(range(5))


def test_conversation_dedup_keeps_the_best_scored() -> None:
    # 3 and 7 reply in conversation 1; 1 scores best of the three.
    selected = positions(CONFIG, ranked(40, {3: 1, 7: 1}), 35)
    assert selected == [i for i in range(37) if i not in (3, 7)]
    # Now the root scores below its reply: the reply (2) is kept, the root (5) goes.
    selected = positions(CONFIG, ranked(40, {2: 5}), 35)
    assert 2 in selected
    assert 5 not in selected


def test_dedup_runs_on_the_top_50_only() -> None:
    # 20 of the top 50 are replies in conversations already present: 30 posts survive, and
    # posts ranked below 50 are not pulled in to fill the page.
    duplicates = {i: i - 1 for i in range(1, 41, 2)}
    selected = positions(CONFIG, ranked(80, duplicates), 35)
    assert len(selected) == 30
    assert max(selected) < 50


def test_a_limit_above_50_widens_the_top_slice() -> None:
    assert positions(CONFIG, ranked(250), 200) == list(range(200))


def test_the_top_slice_comes_from_the_config() -> None:
    config = RankingConfig(max_selected=20)
    # The top 20 hold one duplicate: 19 posts, the 21st is not pulled in.
    assert positions(config, ranked(30, {1: 0}), 20) == [0, *range(2, 20)]


def test_limit_zero_and_negative() -> None:
    assert positions(CONFIG, ranked(5), 0) == []
    with pytest.raises(ValueError, match="limit"):
        positions(CONFIG, ranked(5), -1)
