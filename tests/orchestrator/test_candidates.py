"""The columnar candidate batch: what sources build, how batches join and narrow, and the page
objects made from it."""

from __future__ import annotations

import numpy as np

from orchestrator.id_arrays import contains, find, sorted_ids
from orchestrator.pipeline.candidate import RETRIEVAL, THUNDER, Candidates


def test_a_source_batch_starts_unhydrated() -> None:
    c = Candidates.of(RETRIEVAL, [5, 3], in_network=False, retrieval_scores=[0.5, 0.25])
    assert len(c) == 2 and c.post_id.tolist() == [5, 3]
    assert c.in_network.tolist() == [False, False]
    assert c.retrieval_score.tolist() == [0.5, 0.25]
    assert not c.found.any() and c.author_id.tolist() == [0, 0]
    # until hydrated a candidate is its own conversation and original
    assert c.conversation_id.tolist() == c.original_post_id.tolist() == [5, 3]
    assert c.predictions is None and c.token_line is None
    assert np.isnan(Candidates.of(THUNDER, [1], True).retrieval_score).all()


def test_concat_take_and_the_page() -> None:
    a = Candidates.of(THUNDER, [1, 2], True)
    b = Candidates.of(RETRIEVAL, [3], False, [0.9])
    both = Candidates.concat([a, b])
    assert both.post_id.tolist() == [1, 2, 3] and both.in_network.tolist() == [True, True, False]
    both.predictions = np.arange(3 * 22, dtype=np.float32).reshape(3, 22)
    both.score = np.array([0.1, 0.2, 0.3])
    narrowed = both.take(np.array([False, True, True]))
    assert narrowed.post_id.tolist() == [2, 3] and narrowed.predictions.shape == (2, 22)  # type: ignore[union-attr]
    assert both.take([2, 0]).post_id.tolist() == [3, 1]
    page = both.posts([2, 0])
    assert [(p.post_id, p.source, p.in_network, p.score) for p in page] == [
        (3, RETRIEVAL, False, 0.3),
        (1, THUNDER, True, 0.1),
    ]
    assert page[0].predictions is not None and page[0].predictions[0] == 44.0
    assert len(Candidates.concat([])) == 0
    assert Candidates.concat([a, Candidates.empty()]).post_id.tolist() == [1, 2]


def test_sorted_id_sets() -> None:
    keys = sorted_ids({9, 2, 5})
    assert keys.tolist() == [2, 5, 9]
    assert contains(keys, [5, 6, 9, 1, 10]).tolist() == [True, False, True, False, False]
    at, hit = find(keys, [9, 3])
    assert hit.tolist() == [True, False] and keys[at[0]] == 9
    assert contains(sorted_ids(()), [1, 2]).tolist() == [False, False]
