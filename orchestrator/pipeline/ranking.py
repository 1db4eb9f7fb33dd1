"""The ranking arithmetic (DESIGN.md 5): predicted probabilities -> the feed order.

Four stages run in DESIGN.md 2's order, each taking its numbers from a `RankingConfig`:
weighted score -> new-author boost -> author diversity -> out-of-network discount. Every stage
writes `candidate.score` in place (the weighted stage also `weighted_score`); `rank` runs them all
and returns the candidates sorted by final score.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from orchestrator.pipeline.candidate import Candidate
from phoenix.actions import ACTIONS, DWELL_TIME, NUM_ACTIONS, Action
from phoenix.ranking_config import RankingConfig


def weight_vector(config: RankingConfig) -> npt.NDArray[np.float64]:
    """The action weights in `ACTIONS` order (the ranker's output columns)."""
    return np.array([config.weights.get(name, 0.0) for name in ACTIONS], np.float64)


def prediction_matrix(candidates: Sequence[Candidate]) -> npt.NDArray[np.float64]:
    """[C, A] probabilities; a candidate the ranker did not score is a pipeline bug, not a
    zero score, so it raises ValueError naming the post."""
    rows = np.empty((len(candidates), NUM_ACTIONS), np.float64)
    for i, c in enumerate(candidates):
        p = c.predictions
        if p is None:
            raise ValueError(f"candidate {c.post_id} has no predictions")
        if np.shape(p) != (NUM_ACTIONS,):
            raise ValueError(
                f"candidate {c.post_id}: predictions have shape {np.shape(p)}, "
                f"expected ({NUM_ACTIONS},)"
            )
        rows[i] = p
    if not np.isfinite(rows).all():
        bad = [
            c.post_id
            for c, ok in zip(candidates, np.isfinite(rows).all(axis=1), strict=True)
            if not ok
        ]
        raise ValueError(f"non-finite predictions for candidates {bad}")
    return rows


def weighted_scores(config: RankingConfig, candidates: Sequence[Candidate]) -> None:
    """raw = sum(weight * p) + dwell_time weight * dwell seconds, then squashed so negative raw
    scores stay below every positive one but keep their order (DESIGN.md 5).

    Per candidate, the reply weight gains `reply_follow_back_bonus` for an original post whose
    author follows the viewer back, and vqv counts only for videos longer than
    `vqv_min_video_s`. Sets `weighted_score` and `score`.
    """
    if not candidates:
        return
    probs = prediction_matrix(candidates)  # [C, A]
    n = len(candidates)
    weights = np.broadcast_to(weight_vector(config), (n, NUM_ACTIONS)).copy()  # [C, A]

    follow_back_original = np.fromiter(
        (c.author_follows_viewer and c.post is not None and c.post.is_original for c in candidates),
        np.bool_,
        n,
    )
    weights[follow_back_original, Action.REPLY] += config.reply_follow_back_bonus
    long_video = np.fromiter(
        (c.is_video and c.video_duration_s > config.vqv_min_video_s for c in candidates),
        np.bool_,
        n,
    )
    weights[~long_video, Action.VQV] = 0.0

    dwell_s = np.fromiter((c.dwell_time_s for c in candidates), np.float64, n)
    raw = (probs * weights).sum(axis=1) + config.weights.get(DWELL_TIME, 0.0) * dwell_s  # [C]

    pos, neg = config.positive_weight_sum, config.negative_weight_sum
    # raw < 0 needs a negative weight, so neg > 0 there; the guard only avoids a 0/0 warning in
    # the branch np.where discards when every weight is zero.
    denom = (pos + neg) or 1.0
    scores = np.where(
        raw < 0, (raw + neg) / denom * config.negative_score_scale, raw + config.score_offset
    )
    for c, s in zip(candidates, scores.tolist(), strict=True):
        c.weighted_score = s
        c.score = s


def new_author_boost(config: RankingConfig, candidates: Sequence[Candidate]) -> None:
    """Lift the best-scored original post of a small author (at most `new_author_max_followers`
    followers) to the `new_author_target_rank`-th best score, so new voices get a chance to be
    seen. One post per request, and only when there are enough candidates for that rank."""
    rank = config.new_author_target_rank
    if len(candidates) < rank:
        return
    target = sorted((c.score for c in candidates), reverse=True)[rank - 1]
    best: Candidate | None = None
    for c in candidates:
        if (
            c.post is not None
            and c.post.is_original
            and c.author_follower_count <= config.new_author_max_followers
            and (best is None or c.score > best.score)
        ):
            best = c
    if best is not None and best.score < target:
        best.score = target
        best.notes = (*best.notes, "new_author_boost")


def author_diversity(config: RankingConfig, candidates: Sequence[Candidate]) -> None:
    """In descending score order, multiply an author's k-th post (k = 0, 1, ...) by
    `config.diversity_multiplier(k)`, so one prolific author cannot fill the feed."""
    per_author: dict[int, int] = {}
    for c in _by_score(candidates):
        k = per_author.get(c.author_id, 0)
        per_author[c.author_id] = k + 1
        c.score *= config.diversity_multiplier(k)


def out_of_network_discount(config: RankingConfig, candidates: Sequence[Candidate]) -> None:
    """Multiply by `out_of_network_factor` the posts the viewer did not ask for directly:
    out-of-network posts, and in-network replies and reposts."""
    for c in candidates:
        indirect = c.post is not None and (c.post.is_reply or c.post.is_repost)
        if not c.in_network or indirect:
            c.score *= config.out_of_network_factor


def rank(config: RankingConfig, candidates: Sequence[Candidate]) -> list[Candidate]:
    """All four stages in DESIGN.md 2's order; the candidates sorted by final score, best first
    (stable: ties keep their input order)."""
    weighted_scores(config, candidates)
    new_author_boost(config, candidates)
    author_diversity(config, candidates)
    out_of_network_discount(config, candidates)
    return _by_score(candidates)


def _by_score(candidates: Sequence[Candidate]) -> list[Candidate]:
    return sorted(candidates, key=lambda c: c.score, reverse=True)
