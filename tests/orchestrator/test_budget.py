"""The scoring budget: newest in-network and best retrieved candidates, shares that flow over."""

from __future__ import annotations

import pytest

from orchestrator.pipeline.budget import ScoringBudget
from orchestrator.pipeline.candidate import RETRIEVAL, THUNDER, Candidates, FeedQuery
from orchestrator.state.viewers import Viewer

QUERY = FeedQuery(
    viewer=Viewer(1, (), frozenset(), frozenset(), frozenset(), frozenset(), ()), now_ms=0
)


def _in(post_id: int) -> Candidates:
    return Candidates.of(THUNDER, [post_id], True)


def _out(post_id: int, score: float) -> Candidates:
    return Candidates.of(RETRIEVAL, [post_id], False, [score])


def _kept(budget: ScoringBudget, *parts: Candidates) -> list[Candidates]:
    """The parts (one candidate each) the budget keeps, in their order."""
    keep = budget.apply(QUERY, Candidates.concat(parts)).tolist()
    return [p for p, k in zip(parts, keep, strict=True) if k]


def test_under_the_budget_nothing_changes() -> None:
    candidates = [_in(1), _out(2, 0.5)]
    assert _kept(ScoringBudget(5), *candidates) == candidates
    assert _kept(ScoringBudget(2), *candidates) == candidates


def test_each_source_keeps_its_best_share_in_the_original_order() -> None:
    candidates = [_in(10), _out(1, 0.1), _in(30), _out(2, 0.9), _in(20), _out(3, 0.5)]
    kept = _kept(ScoringBudget(4, in_network_share=0.5), *candidates)
    # in-network: the two newest (30, 20); retrieved: the two best scored (2, 3)
    assert [int(c.post_id[0]) for c in kept] == [30, 2, 20, 3]


def test_an_unused_share_goes_to_the_other_source() -> None:
    candidates = [_in(5), *(_out(i, i / 10) for i in range(1, 6))]
    kept = _kept(ScoringBudget(4, in_network_share=0.5), *candidates)
    # one in-network post uses one of its two slots; retrieval takes the other three
    assert [int(c.post_id[0]) for c in kept if c.in_network[0]] == [5]
    assert sorted(int(c.post_id[0]) for c in kept if not c.in_network[0]) == [3, 4, 5]
    only_in = [_in(i) for i in range(1, 8)]
    assert [int(c.post_id[0]) for c in _kept(ScoringBudget(3), *only_in)] == [5, 6, 7]


def test_a_retrieved_post_without_a_score_comes_last() -> None:
    unscored = Candidates.of(RETRIEVAL, [9], False)  # no ANN score
    candidates = [unscored, _out(1, -5.0), _out(2, 0.1)]
    assert [int(c.post_id[0]) for c in _kept(ScoringBudget(2, 0.5), *candidates)] == [1, 2]


@pytest.mark.parametrize(("limit", "share"), [(0, 0.5), (10, 1.5)])
def test_bad_settings_are_refused(limit: int, share: float) -> None:
    with pytest.raises(ValueError):
        ScoringBudget(limit, share)
