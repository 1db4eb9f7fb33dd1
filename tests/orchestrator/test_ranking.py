"""The ranking arithmetic (docs/RANKING.md) against numbers worked out by hand from the August 2026
weights, and the literal cases of X's home-mixer and vm-ranker unit tests (ranking_scorer.rs,
author_cold_start.rs, candidates_util.rs, dpp.rs), restated here."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from orchestrator.pipeline.ranking import (
    POST_UNEXPLORED_RULE,
    REPLY_BOOST,
    VIDEO_RULE,
    RankingInputs,
    author_ranks,
    dpp_keep,
    new_author_lift,
    rank,
    squash,
)
from phoenix.ranking_config import RankingConfig

CONFIG = RankingConfig()


def batch(*rows: dict[str, Any], viewer_followers: int = 0) -> RankingInputs:
    """Candidates from short specs: kind ("original", "reply", "repost"), author, in_network,
    mutual, video_ms, followers, impressions, dwell_s and action probabilities by name."""
    n = len(rows)

    def col(key: str, default: Any, dtype: type) -> np.ndarray:
        return np.array([r.get(key, default) for r in rows], dtype).reshape(n)

    kinds = [r.get("kind", "original") for r in rows]
    probs: dict[str, np.ndarray] = {}
    for i, r in enumerate(rows):
        for name, p in r.get("p", {}).items():
            probs.setdefault(name, np.zeros(n))[i] = p
    return RankingInputs(
        post_id=np.arange(1, n + 1, dtype=np.int64),
        author_id=col("author", 0, np.int64) if n else np.zeros(0, np.int64),
        in_network=col("in_network", True, np.bool_),
        is_reply=np.array([k == "reply" for k in kinds], np.bool_).reshape(n),
        is_repost=np.array([k == "repost" for k in kinds], np.bool_).reshape(n),
        mutual_follow=col("mutual", False, np.bool_),
        video_ms=col("video_ms", 0, np.int64),
        author_followers=col("followers", 5_000, np.int64),
        impressions=col("impressions", 5_000, np.int64),
        embedding_id=np.arange(1, n + 1, dtype=np.int64),
        probs=probs,
        dwell_time_s=col("dwell_s", 0.0, np.float64),
        viewer_followers=viewer_followers,
    )


def one(config: RankingConfig = CONFIG, viewer_followers: int = 0, **row: Any) -> float:
    """The squashed score of one candidate."""
    return float(rank(config, batch(row, viewer_followers=viewer_followers)).squashed[0])


# ------------------------------------------------------------------ weighted score


def test_positive_raw_score_gets_the_offset() -> None:
    # 0.5 * 0.5 (favorite) + 5.0 * 0.1 (reply) + 0.4 * 0.25 (click) + 0.004 * 10 s = 0.89
    assert one(p={"favorite": 0.5, "reply": 0.1, "click": 0.25}, dwell_s=10.0) == pytest.approx(
        0.891, rel=1e-12
    )


def test_squash_denominator_is_xs_positive_and_negative_weight_sums() -> None:
    # Positive: 0.5 + 5 + 1 + 0.05 + 0.4 + 0.05 + 2 + 5 + 20 + 5 + 0.05 + 4 + 0.05 + 0.2
    # + 0.02 (post_unexplored) = 43.32, dwell_time's 0.004 per second left out.
    assert CONFIG.positive_weight_sum == pytest.approx(43.32, abs=1e-12)
    assert CONFIG.negative_weight_sum == pytest.approx(367.22, abs=1e-12)


def test_negative_raw_score_is_squashed_below_the_offset() -> None:
    # raw = -234 * 0.05 + 0.5 * 1.0 + 5.0 * 0.2 + 0.4 * 0.5 = -11.7 + 1.7 = -10.
    # (raw + 367.22) / (43.32 + 367.22) * 0.001 = 357.22 / 410.54 * 0.001
    got = one(p={"report": 0.05, "favorite": 1.0, "reply": 0.2, "click": 0.5})
    assert got == pytest.approx(357.22 / 410.54 * 0.001, rel=1e-12)


def test_most_negative_raw_score_maps_to_zero() -> None:
    worst = dict.fromkeys(
        ("not_interested", "block_author", "mute_author", "report", "not_dwelled"), 1.0
    )
    assert one(p=worst) == pytest.approx(0.0, abs=1e-15)


def test_without_any_weight_the_score_is_raw_clipped_at_zero() -> None:
    empty = RankingConfig(weights={})
    assert squash(empty, np.array([-1.0, 0.0, 2.0])).tolist() == [0.0, 0.0, 2.0]


def test_reply_boost_needs_a_mutual_follow_and_an_original() -> None:
    """X: reply weight + 15 for a mutual-follow original; replies, reposts and one-way follows
    keep the base weight."""
    p = {"reply": 0.1}
    # (5 + 15) * 0.1 + 0.001 with the boost, 5 * 0.1 + 0.001 without.
    assert one(p=p, mutual=True) == pytest.approx(2.001, rel=1e-12)
    assert one(p=p, mutual=False) == pytest.approx(0.501, rel=1e-12)
    assert one(p=p, mutual=True, kind="reply") == pytest.approx(0.501, rel=1e-12)
    assert one(p=p, mutual=True, kind="repost") == pytest.approx(0.501, rel=1e-12)
    ranked = rank(CONFIG, batch({"p": p, "mutual": True}))
    assert ranked.adjustments[REPLY_BOOST][0] == pytest.approx(1.5, rel=1e-12)
    no_boost = RankingConfig(mutual_follow_reply_bonus=0.0)
    assert one(no_boost, p=p, mutual=True) == pytest.approx(0.501, rel=1e-12)


def test_vqv_counts_for_videos_over_10_s_and_viewers_under_10000_followers() -> None:
    p = {"vqv": 0.5}
    # 0.05 * 0.5 + 0.001 when it counts; only the offset otherwise.
    assert one(p=p, video_ms=12_000) == pytest.approx(0.026, rel=1e-12)
    assert one(p=p, video_ms=10_001) == pytest.approx(0.026, rel=1e-12)
    assert one(p=p, video_ms=10_000) == pytest.approx(0.001, rel=1e-12)  # X: exactly 10 s, no
    assert one(p=p, video_ms=5_000) == pytest.approx(0.001, rel=1e-12)
    assert one(p=p) == pytest.approx(0.001, rel=1e-12)  # not a video
    assert one(p=p, video_ms=12_000, viewer_followers=9_999) == pytest.approx(0.026, rel=1e-12)
    assert one(p=p, video_ms=12_000, viewer_followers=10_000) == pytest.approx(0.001, rel=1e-12)
    ranked = rank(CONFIG, batch({"p": p, "video_ms": 10_000}))
    assert ranked.contributions["vqv"][0] == pytest.approx(0.025, rel=1e-12)
    assert ranked.adjustments[VIDEO_RULE][0] == pytest.approx(-0.025, rel=1e-12)


def test_post_unexplored_counts_for_in_network_posts_only() -> None:
    p = {"post_unexplored": 0.5}
    assert one(p=p) == pytest.approx(0.02 * 0.5 + 0.001, rel=1e-12)
    assert one(p=p, in_network=False) == pytest.approx(0.001, rel=1e-12)
    everywhere = RankingConfig(post_unexplored_in_network_only=False)
    assert one(everywhere, p=p, in_network=False) == pytest.approx(0.011, rel=1e-12)
    ranked = rank(CONFIG, batch({"p": p, "in_network": False}))
    assert ranked.adjustments[POST_UNEXPLORED_RULE][0] == pytest.approx(-0.01, rel=1e-12)


def test_a_model_without_post_unexplored_contributes_zero() -> None:
    ranked = rank(CONFIG, batch({"p": {"favorite": 0.2}}))
    assert ranked.contributions["post_unexplored"][0] == 0.0
    assert ranked.squashed[0] == pytest.approx(0.101, rel=1e-12)


def test_unknown_weight_names_are_refused() -> None:
    with pytest.raises(ValueError, match="bogus"):
        RankingConfig(weights={"bogus": 1.0})


# ------------------------------------------------------------------ new-author lift


def _scores_and_inputs(*rows: dict[str, Any]) -> tuple[np.ndarray, RankingInputs]:
    return np.array([r.pop("score") for r in rows], np.float64), batch(*rows)


def _lift(config: RankingConfig, *rows: dict[str, Any]) -> list[float]:
    scores, inputs = _scores_and_inputs(*rows)
    return new_author_lift(config, inputs, scores)[0].tolist()


#: X's test query: the 1st best score is the target, any non-zero rank, < 100 impressions.
X_TEST = RankingConfig(
    new_author_target_rank=1, new_author_max_rank_ratio=1.0, new_author_max_impressions=100
)


def test_x_case_a_little_seen_post_rises_to_the_target() -> None:
    """author_cold_start.rs: [views 3 scored 10, views 1000 scored 90] -> [90, 90]."""
    got = _lift(
        X_TEST,
        {"score": 10.0, "impressions": 3, "followers": 100},
        {"score": 90.0, "impressions": 1_000, "followers": 100},
    )
    assert got == [90.0, 90.0]


def test_x_case_the_rank_ratio_bounds_eligibility() -> None:
    """author_cold_start.rs: ratio 0.5 of 4 non-zero scores; the little-seen post ranks 4th."""
    config = X_TEST.model_copy(update={"new_author_max_rank_ratio": 0.5})
    rows = [
        {"score": 10.0, "impressions": 3, "followers": 100},
        {"score": 40.0, "impressions": 1_000, "followers": 100},
        {"score": 30.0, "impressions": 1_000, "followers": 100},
        {"score": 20.0, "impressions": 1_000, "followers": 100},
    ]
    assert _lift(config, *rows) == [10.0, 40.0, 30.0, 20.0]


def test_x_case_the_best_eligible_post_keeps_max_of_score_and_target() -> None:
    """author_cold_start.rs: both unseen; the better one is picked and already at the target."""
    got = _lift(
        X_TEST,
        {"score": 10.0, "impressions": 0, "followers": 100},
        {"score": 90.0, "impressions": 0, "followers": 100},
    )
    assert got == [10.0, 90.0]


def _field(n: int) -> list[dict[str, Any]]:
    """n established authors' originals scored n, n-1, ..., 1."""
    return [{"score": float(n - i), "followers": 50_000} for i in range(n)]


def _small(score: float, **kw: Any) -> dict[str, Any]:
    return {"score": score, "followers": 1_000, "impressions": 999, **kw}


def test_lift_to_the_16th_best_score() -> None:
    # 30..1 and 10.5: the 16th best is 15; 10.5 ranks 21st of 31, within int(0.85 * 31) = 26.
    got = _lift(CONFIG, *_field(30), _small(10.5))
    assert got[-1] == 15.0 and got[:-1] == [float(30 - i) for i in range(30)]


def test_lift_needs_16_candidates() -> None:
    assert _lift(CONFIG, *_field(14), _small(13.5))[-1] == 13.5


@pytest.mark.parametrize(
    "change",
    [{"followers": 1_001}, {"impressions": 1_000}, {"kind": "reply"}, {"kind": "repost"}],
    ids=["1001 followers", "1000 impressions", "reply", "repost"],
)
def test_lift_eligibility_limits(change: dict[str, Any]) -> None:
    assert _lift(CONFIG, *_field(30), _small(10.5, **change))[-1] == 10.5


def test_lift_needs_a_rank_within_the_top_85_percent_of_non_zero_scores() -> None:
    # 31 non-zero scores: 26 slots (0-based positions 0..25).
    assert _lift(CONFIG, *_field(30), _small(5.5))[-1] == 15.0  # position 25
    assert _lift(CONFIG, *_field(30), _small(4.5))[-1] == 4.5  # position 26
    zeros = [{"score": 0.0, "followers": 50_000} for _ in range(10)]
    # zero scores do not count toward the 85%
    assert _lift(CONFIG, *_field(30), *zeros, _small(4.5))[-1] == 4.5


def test_lift_at_most_one_post_the_best_and_the_later_on_a_tie() -> None:
    got = _lift(CONFIG, *_field(30), _small(10.6), _small(10.8))
    assert got[-2:] == [10.6, 15.0]
    tied = _lift(CONFIG, *_field(30), _small(10.8), _small(10.8))
    assert tied[-2:] == [10.8, 15.0]


def test_lift_leaves_a_post_above_the_target_and_lifts_no_other() -> None:
    got = _lift(CONFIG, *_field(30), _small(17.5), _small(10.5))
    assert got[-2:] == [17.5, 10.5]


# ------------------------------------------------------------------ diversity and discount


def test_author_diversity_in_score_order() -> None:
    """ranking_scorer.rs: an author's k-th post (score order) gets (1-0.25)*0.5^k + 0.25."""
    rows = [
        {"author": 1, "p": {"favorite": 0.2}},
        {"author": 1, "p": {"favorite": 0.8}},
        {"author": 2, "p": {"favorite": 0.5}},
        {"author": 1, "p": {"favorite": 0.4}},
    ]
    ranked = rank(RankingConfig(dpp_enabled=False), batch(*rows))
    assert ranked.diversity_k.tolist() == [2, 0, 0, 1]
    assert ranked.diversity_multiplier.tolist() == pytest.approx([0.4375, 1.0, 1.0, 0.625])
    assert author_ranks(np.array([5, 5, 5]), np.array([1.0, 1.0, 1.0])).tolist() == [0, 1, 2]


def test_out_of_network_discount() -> None:
    """ranking_scorer.rs: out-of-network posts and in-network replies and reposts x 0.75."""
    kinds = [
        ({"in_network": False}, 0.75),
        ({"in_network": False, "kind": "reply"}, 0.75),
        ({"kind": "reply"}, 0.75),
        ({"kind": "repost"}, 0.75),
        ({}, 1.0),
    ]
    rows = [{**row, "author": i} for i, (row, _) in enumerate(kinds)]
    assert rank(CONFIG, batch(*rows)).oon_factor.tolist() == [f for _, f in kinds]


# ------------------------------------------------------------------ DPP


def lookup(vectors: dict[int, list[float]]):  # type: ignore[no-untyped-def]
    """An embedding lookup over a dict; ids missing from it are not found."""

    def get(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dim = len(next(iter(vectors.values())))
        found = np.array([int(i) in vectors for i in ids], np.bool_)
        out = np.array([vectors.get(int(i), [0.0] * dim) for i in ids], np.float32)
        return out.reshape(len(ids), dim), found

    return get


def _dpp(scores: list[float], vectors: dict[int, list[float]], **config: Any) -> list[int]:
    """Ids (1-based positions) DPP keeps."""
    cfg = RankingConfig(**config)
    ids = np.arange(1, len(scores) + 1, dtype=np.int64)
    kept = dpp_keep(cfg, np.array(scores, np.float64), ids, lookup(vectors) if vectors else None)
    return (np.flatnonzero(kept) + 1).tolist()


X_DPP = {"dpp_theta": 0.5, "dpp_pool": 10, "dpp_max_selected": 3}


def test_x_dpp_single_candidate_is_kept() -> None:
    assert _dpp([5.0], {1: [1.0, 0.0, 0.0]}, **X_DPP) == [1]


def test_x_dpp_identical_embeddings_keep_the_top_scorer_only() -> None:
    same = [1.0, 0.0, 0.0]
    assert _dpp([10.0, 5.0, 1.0], {1: same, 2: same, 3: same}, **X_DPP) == [1]


def test_x_dpp_orthogonal_embedding_beats_a_near_duplicate() -> None:
    kept = _dpp([10.0, 9.5, 5.0], {1: [1.0, 0.0], 2: [1.0, 0.0], 3: [0.0, 1.0]}, **X_DPP)
    assert 3 in kept and 2 not in kept


def test_x_dpp_keeps_at_most_top_k_and_never_changes_scores() -> None:
    vectors = {i + 1: [math.cos(i * math.pi / 10), math.sin(i * math.pi / 10)] for i in range(20)}
    scores = [10.0 - i * 0.4 for i in range(20)]
    config = RankingConfig(dpp_theta=0.5, dpp_pool=20, dpp_max_selected=10, diversity_floor=1.0)
    kept = _dpp(scores, vectors, dpp_theta=0.5, dpp_pool=20, dpp_max_selected=10)
    assert 1 <= len(kept) <= 10
    rows = [{"author": i, "p": {"favorite": s / 10}} for i, s in enumerate(scores)]
    ranked = rank(config, batch(*rows), lookup(vectors))
    assert ranked.dpp_kept.sum() == len(kept)
    before = ranked.lifted * ranked.diversity_multiplier * ranked.oon_factor
    assert np.array_equal(ranked.final, np.where(ranked.dpp_kept, before, 0.0))


def test_x_dpp_pool_is_the_best_ranked() -> None:
    vectors = {
        i + 1: [math.cos(i * math.pi / 100), math.sin(i * math.pi / 100)] for i in range(100)
    }
    kept = _dpp(
        [100.0 - i for i in range(100)], vectors, dpp_theta=0.5, dpp_pool=10, dpp_max_selected=5
    )
    assert 1 <= len(kept) <= 5 and all(i <= 10 for i in kept)


def test_dpp_missing_embeddings_count_as_unlike_everything() -> None:
    same = [1.0, 0.0]
    kept = _dpp([10.0, 9.0, 8.0], {1: same, 2: same}, **X_DPP)  # 3 has no embedding
    assert kept == [1, 3]
    assert _dpp([3.0, 2.0, 1.0], {}, **X_DPP) == [1, 2, 3]  # no lookup at all


def test_dpp_defaults_keep_at_most_50_of_the_best_150() -> None:
    rng = np.random.default_rng(0)
    vectors = {i + 1: rng.normal(size=64).tolist() for i in range(300)}
    scores = sorted(rng.random(300).tolist(), reverse=True)
    kept = _dpp(scores, vectors)
    assert len(kept) == 50 and max(kept) <= 150
    assert (CONFIG.dpp_enabled, CONFIG.dpp_theta, CONFIG.dpp_pool) == (True, 0.65, 150)


def test_dpp_can_be_switched_off() -> None:
    rows = [{"author": i, "p": {"favorite": 0.5}} for i in range(60)]
    same = {i + 1: [1.0, 0.0] for i in range(60)}
    assert rank(CONFIG, batch(*rows), lookup(same)).dpp_kept.sum() == 1
    off = RankingConfig(dpp_enabled=False)
    assert rank(off, batch(*rows), lookup(same)).dpp_kept.all()


# ------------------------------------------------------------------ all stages


def test_rank_runs_all_stages_sorts_and_is_stable() -> None:
    rows = [
        {"author": 1, "p": {"favorite": 0.8}},  # 0.401 * 0.625 (second post of author 1)
        {"author": 2, "in_network": False, "p": {"favorite": 0.9}},  # 0.451 * 0.75
        {"author": 1, "p": {"favorite": 1.0}},  # 0.501
        {"author": 3, "p": {"favorite": 0.5}},  # 0.251
        {"author": 4, "p": {"favorite": 0.5}},  # 0.251, after its tie
    ]
    ranked = rank(CONFIG, batch(*rows))
    assert ranked.order.tolist() == [2, 1, 3, 4, 0]
    assert ranked.final.tolist() == pytest.approx(
        [0.401 * 0.625, 0.451 * 0.75, 0.501, 0.251, 0.251], rel=1e-12
    )


def test_every_score_follows_from_its_stages() -> None:
    """The documented arithmetic (docs/RANKING.md) reproduces every final score."""
    rng = np.random.default_rng(1)
    names = [n for n in CONFIG.weights if n != "dwell_time"]
    rows = [
        {
            "author": int(rng.integers(0, 8)),
            "kind": ("original", "reply", "repost")[i % 3],
            "in_network": bool(rng.random() < 0.5),
            "mutual": bool(rng.random() < 0.5),
            "video_ms": int(rng.choice([0, 10_000, 20_000])),
            "followers": int(rng.integers(0, 3_000)),
            "impressions": int(rng.integers(0, 2_000)),
            "dwell_s": float(rng.random() * 30),
            "p": {n: float(rng.random() * 0.2) for n in names},
        }
        for i in range(200)
    ]
    vectors = {i + 1: rng.normal(size=8).tolist() for i in range(200)}
    r = rank(CONFIG, batch(*rows), lookup(vectors))
    pos, neg = CONFIG.positive_weight_sum, CONFIG.negative_weight_sum
    for i in range(200):
        raw = sum(v[i] for v in r.contributions.values()) + sum(
            v[i] for v in r.adjustments.values()
        )
        assert raw == pytest.approx(r.raw[i], abs=1e-9)
        squashed = raw + 0.001 if raw >= 0 else (raw + neg) / (pos + neg) * 0.001
        assert squashed == pytest.approx(r.squashed[i], abs=1e-9)
        assert r.lifted[i] == r.squashed[i] or i == r.lifted_index
        mult = 0.75 * 0.5 ** r.diversity_k[i] + 0.25
        final = r.lifted[i] * mult * r.oon_factor[i] if r.dpp_kept[i] else 0.0
        assert final == pytest.approx(r.final[i], abs=1e-9)
    assert 0 < r.dpp_kept.sum() <= 50


def test_rank_of_nothing() -> None:
    ranked = rank(CONFIG, batch())
    assert len(ranked.final) == 0 and len(ranked.order) == 0
