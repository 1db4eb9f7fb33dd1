"""The ranking arithmetic (DESIGN.md 5), against numbers worked out by hand from the August 2026
weights."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.pipeline.candidate import RETRIEVAL, THUNDER, Candidate
from orchestrator.pipeline.ranking import (
    author_diversity,
    new_author_boost,
    out_of_network_discount,
    rank,
    weighted_scores,
)
from orchestrator.state.posts import Post
from phoenix.actions import ACTIONS, NUM_ACTIONS
from phoenix.ranking_config import RankingConfig
from phoenix.world.schema import ORIGINAL, REPLY, REPOST

CONFIG = RankingConfig()
_ids = iter(range(1_000, 1_000_000))


def probs(**p: float) -> np.ndarray:
    out = np.zeros(NUM_ACTIONS, np.float32)
    for name, value in p.items():
        out[ACTIONS.index(name)] = value
    return out


def cand(
    *,
    author: int = 1,
    kind: int = ORIGINAL,
    in_network: bool = True,
    predictions: np.ndarray | None = None,
    score: float = 0.0,
    followers: int = 5_000,
    follows_back: bool = False,
    video_s: float | None = None,
    dwell_s: float = 0.0,
) -> Candidate:
    post_id = next(_ids)
    post = Post(
        post_id=post_id,
        author_id=author,
        kind=kind,
        parent_id=1 if kind == REPLY else 0,
        reposted_id=2 if kind == REPOST else 0,
        is_video=video_s is not None,
        video_duration_s=video_s or 0.0,
    )
    return Candidate(
        post_id=post_id,
        source=THUNDER if in_network else RETRIEVAL,
        in_network=in_network,
        post=post,
        author_known=True,
        author_follower_count=followers,
        author_follows_viewer=follows_back,
        predictions=predictions,
        dwell_time_s=dwell_s,
        score=score,
    )


def ids(candidates: list[Candidate]) -> list[int]:
    return [c.post_id for c in candidates]


def scored(c: Candidate) -> float:
    weighted_scores(CONFIG, [c])
    return c.score


# ------------------------------------------------------------------ weighted score


def test_positive_raw_score_gets_the_offset() -> None:
    # 0.5 * 0.5 (favorite) + 5.0 * 0.1 (reply) + 0.4 * 0.25 (click) + 0.004 * 10 s = 0.89
    c = cand(predictions=probs(favorite=0.5, reply=0.1, click=0.25), dwell_s=10.0)
    assert scored(c) == pytest.approx(0.891, rel=1e-6)
    assert c.weighted_score == c.score


def test_negative_raw_score_is_squashed_below_the_offset() -> None:
    # raw = -234 * 0.05 + 0.5 * 1.0 + 5.0 * 0.2 + 0.4 * 0.5 = -11.7 + 0.5 + 1.0 + 0.2 = -10.
    # pos = 0.5 + 5 + 1 + 0.05 + 0.05 + 0.4 + 0.2 + 0.05 + 2 + 5 + 20 + 5 + 0.05 + 4 + 0.004
    #     = 43.304; neg = 43.2 + 31.2 + 58.8 + 234 + 0.02 = 367.22.
    # (raw + neg) / (pos + neg) * 0.001 = 357.22 / 410.524 * 0.001
    c = cand(predictions=probs(report=0.05, favorite=1.0, reply=0.2, click=0.5))
    assert scored(c) == pytest.approx(0.000870156190, rel=1e-6)


def test_most_negative_raw_score_maps_to_zero() -> None:
    worst = probs(not_interested=1, block_author=1, mute_author=1, report=1, not_dwelled=1)
    assert scored(cand(predictions=worst)) == pytest.approx(0.0, abs=1e-12)


def test_reply_bonus_only_for_an_original_whose_author_follows_back() -> None:
    p = probs(reply=0.1)
    # (5 + 15) * 0.1 + 0.001 with the bonus, 5 * 0.1 + 0.001 without.
    assert scored(cand(predictions=p, follows_back=True)) == pytest.approx(2.001, rel=1e-6)
    assert scored(cand(predictions=p, follows_back=False)) == pytest.approx(0.501, rel=1e-6)
    reply = cand(kind=REPLY, predictions=p, follows_back=True)
    assert scored(reply) == pytest.approx(0.501, rel=1e-6)
    repost = cand(kind=REPOST, predictions=p, follows_back=True)
    assert scored(repost) == pytest.approx(0.501, rel=1e-6)


def test_vqv_counts_only_for_videos_longer_than_10_s() -> None:
    p = probs(vqv=0.5)
    # 0.05 * 0.5 + 0.001 for a 12 s video; only the offset otherwise.
    assert scored(cand(predictions=p, video_s=12.0)) == pytest.approx(0.026, rel=1e-6)
    assert scored(cand(predictions=p, video_s=8.0)) == pytest.approx(0.001, rel=1e-6)
    assert scored(cand(predictions=p, video_s=10.0)) == pytest.approx(0.001, rel=1e-6)
    assert scored(cand(predictions=p)) == pytest.approx(0.001, rel=1e-6)


def test_weighted_scores_vectorised_matches_one_at_a_time() -> None:
    rng = np.random.default_rng(0)
    batch = [
        cand(
            kind=(ORIGINAL, REPLY, REPOST)[i % 3],
            predictions=rng.random(NUM_ACTIONS).astype(np.float32) * 0.1,
            follows_back=i % 2 == 0,
            video_s=float(i) if i % 4 == 0 else None,
            dwell_s=float(i),
        )
        for i in range(40)
    ]
    weighted_scores(CONFIG, batch)
    together = [c.score for c in batch]
    alone = [scored(c) for c in batch]
    assert together == pytest.approx(alone, rel=1e-12)


def test_missing_predictions_name_the_post() -> None:
    good = cand(predictions=probs(favorite=0.1))
    bad = cand(predictions=None)
    with pytest.raises(ValueError, match=str(bad.post_id)):
        weighted_scores(CONFIG, [good, bad])
    with pytest.raises(ValueError, match=str(bad.post_id)):
        rank(CONFIG, [good, bad])


def test_malformed_predictions_are_refused() -> None:
    short = cand(predictions=np.zeros(NUM_ACTIONS - 1, np.float32))
    with pytest.raises(ValueError, match="shape"):
        weighted_scores(CONFIG, [short])
    nan = cand(predictions=probs(favorite=float("nan")))
    with pytest.raises(ValueError, match=str(nan.post_id)):
        weighted_scores(CONFIG, [nan])


# ------------------------------------------------------------------ new-author boost


def _field(n: int) -> list[Candidate]:
    """n established authors' originals scored n, n-1, ..., 1."""
    return [cand(author=100 + i, score=float(n - i)) for i in range(n)]


def test_new_author_boost_lifts_to_the_16th_best_score() -> None:
    field = _field(20)  # scores 20..1; the 16th best is 20 - 15 = 5
    small = cand(author=1, followers=1_000, score=0.5)
    new_author_boost(CONFIG, [*field, small])
    assert small.score == 5.0
    assert small.notes == ("new_author_boost",)
    assert [c.score for c in field] == [float(20 - i) for i in range(20)]


def test_new_author_boost_needs_16_candidates() -> None:
    field = _field(14)
    small = cand(author=1, followers=10, score=0.5)
    new_author_boost(CONFIG, [*field, small])  # 15 candidates
    assert small.score == 0.5
    assert small.notes == ()


def test_new_author_boost_only_for_originals() -> None:
    reply = cand(author=1, followers=10, kind=REPLY, score=0.5)
    repost = cand(author=2, followers=10, kind=REPOST, score=0.4)
    new_author_boost(CONFIG, [*_field(20), reply, repost])
    assert (reply.score, repost.score) == (0.5, 0.4)
    assert reply.notes == repost.notes == ()


def test_new_author_boost_follower_limit() -> None:
    too_big = cand(author=1, followers=1_001, score=0.5)
    new_author_boost(CONFIG, [*_field(20), too_big])
    assert too_big.score == 0.5
    at_limit = cand(author=1, followers=1_000, score=0.5)
    new_author_boost(CONFIG, [*_field(20), at_limit])
    assert at_limit.score == 5.0


def test_new_author_boost_at_most_one_post() -> None:
    best = cand(author=1, followers=10, score=0.9)
    second = cand(author=2, followers=10, score=0.8)
    new_author_boost(CONFIG, [*_field(20), second, best])
    assert (best.score, second.score) == (5.0, 0.8)
    assert second.notes == ()


def test_new_author_boost_leaves_a_post_already_above_the_target() -> None:
    field = _field(20)
    small = cand(author=1, followers=10, score=7.5)
    other_small = cand(author=2, followers=10, score=0.1)
    new_author_boost(CONFIG, [*field, small, other_small])
    assert (small.score, other_small.score) == (7.5, 0.1)
    assert small.notes == other_small.notes == ()


# ------------------------------------------------------------------ diversity and discount


def test_author_diversity_multipliers() -> None:
    # (1 - 0.25) * 0.5^k + 0.25 = 1, 0.625, 0.4375 for k = 0, 1, 2, in score order.
    third = cand(author=1, score=0.2)
    first = cand(author=1, score=0.8)
    other = cand(author=2, score=0.5)
    second = cand(author=1, score=0.4)
    author_diversity(CONFIG, [third, first, other, second])
    assert first.score == pytest.approx(0.8)
    assert second.score == pytest.approx(0.4 * 0.625)
    assert third.score == pytest.approx(0.2 * 0.4375)
    assert other.score == pytest.approx(0.5)


def test_out_of_network_discount() -> None:
    cases = {
        "oon original": (cand(in_network=False, score=1.0), 0.75),
        "oon reply": (cand(in_network=False, kind=REPLY, score=1.0), 0.75),
        "in-network reply": (cand(kind=REPLY, score=1.0), 0.75),
        "in-network repost": (cand(kind=REPOST, score=1.0), 0.75),
        "in-network original": (cand(score=1.0), 1.0),
    }
    out_of_network_discount(CONFIG, [c for c, _ in cases.values()])
    assert {k: c.score for k, (c, _) in cases.items()} == {k: f for k, (_, f) in cases.items()}


def test_factors_come_from_the_config() -> None:
    config = RankingConfig(out_of_network_factor=0.5, diversity_floor=0.0, score_offset=0.0)
    a = cand(in_network=False, score=1.0)
    out_of_network_discount(config, [a])
    assert a.score == 0.5
    first, second = cand(author=3, score=1.0), cand(author=3, score=1.0)
    author_diversity(config, [first, second])
    assert (first.score, second.score) == (1.0, 0.5)
    c = cand(predictions=probs(favorite=1.0))
    weighted_scores(config, [c])
    assert c.score == pytest.approx(0.5)


# ------------------------------------------------------------------ all stages


def test_rank_runs_all_stages_and_sorts() -> None:
    a = cand(author=1, predictions=probs(favorite=1.0))  # 0.501
    b = cand(author=1, predictions=probs(favorite=0.8))  # 0.401 * 0.625 = 0.250625
    c = cand(author=2, in_network=False, predictions=probs(favorite=0.9))  # 0.451 * 0.75
    ranked = rank(CONFIG, [b, c, a])
    assert ids(ranked) == ids([a, c, b])
    assert [x.score for x in ranked] == pytest.approx([0.501, 0.33825, 0.250625], rel=1e-6)
    assert b.weighted_score == pytest.approx(0.401, rel=1e-6)


def test_rank_is_stable_on_ties() -> None:
    batch = [cand(author=10 + i, predictions=probs(favorite=0.5)) for i in range(5)]
    assert ids(rank(CONFIG, batch)) == ids(batch)
    assert ids(rank(CONFIG, batch[::-1])) == ids(batch[::-1])


def test_rank_applies_the_new_author_boost_before_diversity() -> None:
    # 16 established authors' originals, then one small author's original scored below them.
    field = [cand(author=100 + i, predictions=probs(favorite=0.9)) for i in range(16)]
    small = cand(author=1, followers=10, predictions=probs(favorite=0.1))  # 0.051
    ranked = rank(CONFIG, [*field, small])
    assert "new_author_boost" in small.notes
    assert small.score == pytest.approx(0.451, rel=1e-6)  # the 16th best, 0.5 * 0.9 + 0.001
    assert ranked[-1] is small  # tied with the 16th, after it in input order


def test_rank_of_nothing() -> None:
    assert rank(CONFIG, []) == []
