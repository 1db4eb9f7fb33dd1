"""The ranking arithmetic (docs/DESIGN.md §5, docs/RANKING.md): probabilities -> the feed order.

The stages run in X's home-mixer order, each taking its numbers from a `RankingConfig`:

1. weighted score: every action's weight times its probability (dwell_time: weight times seconds),
   plus the rules that change a weight for one post (the mutual-follow reply boost, the video
   rule for vqv, post_unexplored for in-network posts only), then squashed so negative raw scores
   stay below every positive one;
2. new-author lift: the best eligible post of a small, little-seen author rises to the 16th best
   score (`max(score, target)`);
3. author diversity: an author's k-th post in score order is multiplied by a decaying factor;
4. out-of-network discount;
5. DPP diversity re-ranking: a determinantal point process over the post embeddings of the best
   150 keeps at most 50 posts; the others score 0.

Everything is arrays, one entry per candidate, and every intermediate is kept in `Ranked` so a
feed can explain each score (`explain`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from phoenix.actions import DWELL_TIME
from phoenix.ranking_config import POST_UNEXPLORED, RankingConfig

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

#: The rules that change one post's weighted score, as `Ranked.adjustments` names them.
REPLY_BOOST = "mutual_follow_reply_boost"
VIDEO_RULE = "vqv_video_rule"
POST_UNEXPLORED_RULE = "post_unexplored_in_network_only"

#: post ids [n] -> (embeddings [n, D] float32, found [n] bool): where DPP reads post embeddings.
EmbeddingLookup = Callable[[I64], tuple[npt.NDArray[np.float32], Bools]]

_DPP_EPS = 1e-6  # X's epsilon in the DPP kernel and its stopping rule


@dataclass(frozen=True)
class RankingInputs:
    """What the arithmetic reads, one array entry per candidate [C].

    `probs` maps an action name to its probability per candidate; an action missing from it
    counts as 0. A repost carries its own
    author (diversity counts the reposter) but the reposted post's probabilities and embedding.
    """

    post_id: I64
    author_id: I64
    in_network: Bools
    is_reply: Bools
    is_repost: Bools
    mutual_follow: Bools  # author and viewer follow each other
    video_ms: I64  # video duration in ms, 0 for a post without video
    author_followers: I64
    impressions: I64  # times the post was served (X's view count)
    embedding_id: I64  # the post whose embedding DPP reads (the reposted one for a repost)
    probs: Mapping[str, F64]
    dwell_time_s: F64
    viewer_followers: int = 0

    def __len__(self) -> int:
        return len(self.post_id)


@dataclass
class Ranked:
    """Every stage's numbers per candidate (input order) and the final order."""

    contributions: dict[str, F64]  # weight name -> weight x probability (dwell_time: x seconds)
    adjustments: dict[str, F64]  # rule -> amount it added to raw (0 where it did not apply)
    raw: F64
    squashed: F64
    lifted: F64  # after the new-author lift
    diversity_k: I64
    diversity_multiplier: F64
    oon_factor: F64
    dpp_kept: Bools
    final: F64
    order: I64  # candidate indices, best final score first (stable)
    lifted_index: int | None = None  # the candidate the new-author lift raised, if any
    probs: dict[str, F64] = field(default_factory=dict)


def rank(
    config: RankingConfig, inputs: RankingInputs, embeddings: EmbeddingLookup | None = None
) -> Ranked:
    """All five stages. Without `embeddings` DPP treats every post as unlike every other (as for
    a post whose embedding is missing), so it only caps the feed at `dpp_max_selected`."""
    n = len(inputs)
    probs = {name: _prob(inputs, name) for name in config.weights if name != DWELL_TIME}
    contributions, adjustments = weighted_terms(config, inputs, probs)
    raw = np.sum([*contributions.values(), *adjustments.values()], axis=0).reshape(n)
    squashed = squash(config, raw)
    lifted, lifted_index = new_author_lift(config, inputs, squashed)
    k = author_ranks(inputs.author_id, lifted)
    multiplier = diversity_multipliers(config, k)
    oon = np.where(
        ~inputs.in_network | inputs.is_reply | inputs.is_repost, config.out_of_network_factor, 1.0
    )
    before_dpp = lifted * multiplier * oon
    if config.dpp_enabled:
        kept = dpp_keep(config, before_dpp, inputs.embedding_id, embeddings)
    else:
        kept = np.ones(n, np.bool_)
    final = np.where(kept, before_dpp, 0.0)
    return Ranked(
        contributions=contributions,
        adjustments=adjustments,
        raw=raw,
        squashed=squashed,
        lifted=lifted,
        diversity_k=k,
        diversity_multiplier=multiplier,
        oon_factor=oon,
        dpp_kept=kept,
        final=final,
        order=(-final).argsort(kind="stable"),
        lifted_index=lifted_index,
        probs=probs,
    )


def weighted_terms(
    config: RankingConfig, inputs: RankingInputs, probs: Mapping[str, F64]
) -> tuple[dict[str, F64], dict[str, F64]]:
    """Each weight's contribution at its configured value, and each rule's correction:

    - the reply weight gains `mutual_follow_reply_bonus` for an original post whose author and
      viewer follow each other;
    - vqv counts only for a video longer than `vqv_min_video_ms` shown to a viewer with fewer
      than `vqv_max_viewer_followers` followers (the rule takes its contribution back otherwise);
    - post_unexplored counts only for in-network posts when `post_unexplored_in_network_only`.
    """
    w = config.weights
    names = list(probs)
    weighted = np.array([probs[name] for name in names]).reshape(len(names), len(inputs))
    weighted *= np.array([w[name] for name in names])[:, None]
    contributions = dict(zip(names, weighted, strict=True))  # rows of one [A, C] block
    contributions[DWELL_TIME] = w[DWELL_TIME] * np.asarray(inputs.dwell_time_s, np.float64)
    original = ~inputs.is_reply & ~inputs.is_repost
    boosted = original & inputs.mutual_follow
    vqv_counts = (inputs.video_ms > config.vqv_min_video_ms) & (
        inputs.viewer_followers < config.vqv_max_viewer_followers
    )
    adjustments = {
        REPLY_BOOST: np.where(boosted, config.mutual_follow_reply_bonus * probs["reply"], 0.0),
        VIDEO_RULE: np.where(vqv_counts, 0.0, -contributions["vqv"]),
    }
    if config.post_unexplored_in_network_only:
        adjustments[POST_UNEXPLORED_RULE] = np.where(
            inputs.in_network, 0.0, -contributions[POST_UNEXPLORED]
        )
    return contributions, adjustments


def squash(config: RankingConfig, raw: F64) -> F64:
    """X's offset: `raw + score_offset` for raw >= 0; a negative raw maps into
    [0, negative_score_scale) by `(raw + N) / (P + N) * negative_score_scale`, with P and N the
    positive and negative weight sums; with no weights at all, `max(raw, 0)`."""
    pos, neg = config.positive_weight_sum, config.negative_weight_sum
    total = pos + neg
    if total == 0:
        return np.maximum(raw, 0.0)
    return np.where(
        raw < 0, (raw + neg) / total * config.negative_score_scale, raw + config.score_offset
    )


def new_author_lift(
    config: RankingConfig, inputs: RankingInputs, scores: F64
) -> tuple[F64, int | None]:
    """X's author cold start: among original posts whose author has at most
    `new_author_max_followers` followers, with fewer than `new_author_max_impressions`
    impressions and already placed within the top `new_author_max_rank_ratio` of the non-zero
    scores, the best scored (the later one on a tie) gets `max(score, target)`, where target is
    the `new_author_target_rank`-th best score. Nothing happens with fewer candidates than that."""
    n = len(scores)
    out = scores.copy()
    rank_at = config.new_author_target_rank
    if n < rank_at:
        return out, None
    target = float(-np.partition(-scores, rank_at - 1)[rank_at - 1])
    nonzero = np.flatnonzero(scores != 0)
    order = nonzero[np.lexsort((nonzero, -scores[nonzero]))]
    position = np.full(n, n, np.int64)
    position[order] = np.arange(len(order))
    max_slot = int(config.new_author_max_rank_ratio * len(order))
    eligible = (
        ~inputs.is_reply
        & ~inputs.is_repost
        & (inputs.author_followers <= config.new_author_max_followers)
        & (inputs.impressions < config.new_author_max_impressions)
        & (position < max_slot)
    )
    candidates = np.flatnonzero(eligible)
    if not len(candidates):
        return out, None
    best = int(candidates[np.lexsort((candidates, scores[candidates]))[-1]])
    out[best] = max(out[best], target)
    return out, best


def author_ranks(author_id: I64, scores: F64) -> I64:
    """k per candidate: how many posts of its author score higher (earlier on a tie)."""
    n = len(author_id)
    order = np.lexsort((-scores, author_id))  # by author, best first, stable on ties
    authors = author_id[order]
    first = np.empty(n, np.bool_)
    first[:1] = True
    np.not_equal(authors[1:], authors[:-1], out=first[1:])
    at = np.arange(n)
    k = np.empty(n, np.int64)
    k[order] = at - np.maximum.accumulate(at * first)
    return k


def diversity_multipliers(config: RankingConfig, k: I64) -> F64:
    """`(1 - floor) * decay**k + floor` per candidate."""
    floor, decay = config.diversity_floor, config.diversity_decay
    return (1 - floor) * np.power(decay, k.astype(np.float64)) + floor


def dpp_keep(
    config: RankingConfig,
    scores: F64,
    embedding_ids: I64,
    embeddings: EmbeddingLookup | None = None,
) -> Bools:
    """Which candidates X's DPP re-ranking keeps: the best `dpp_pool` by score (earlier on a tie)
    form the pool, quality `q = score / max(best score, 1e-6)`, kernel
    `L_ij = exp(a q_i) exp(a q_j) cos_ij` with `a = theta / (2 (1 - theta))`, and a greedy MAP
    picks at most `dpp_max_selected`, stopping once no post adds more than 1e-6 of volume.

    A post without an embedding counts as orthogonal to every other (X draws a random unit
    vector, which in its 1,024 dimensions is nearly so; this keeps feeds reproducible)."""
    n = len(scores)
    kept = np.zeros(n, np.bool_)
    if n == 0:
        return kept
    pool = (-scores).argsort(kind="stable")[: config.dpp_pool]
    q = scores[pool] / max(float(scores[pool[0]]), _DPP_EPS)
    theta = min(max(config.dpp_theta, 0.0), 1 - _DPP_EPS)
    quality = np.exp(theta / (2 * (1 - theta)) * q)
    kernel = _kernel(quality, embedding_ids[pool], embeddings)
    kept[pool[_greedy_map(kernel, config.dpp_max_selected)]] = True
    return kept


def _kernel(quality: F64, ids: I64, embeddings: EmbeddingLookup | None) -> F64:
    """`L_ij = quality_i quality_j cos_ij` [m, m], with cos 1 on the diagonal and 0 where a norm
    product is under 1e-6 or an embedding is missing: the Gram matrix of the unit embeddings
    scaled by quality (a missing or null embedding a zero row), its diagonal set to quality^2."""
    m = len(quality)
    kernel = np.zeros((m, m))
    if embeddings is not None and m:
        vectors, found = embeddings(ids)
        v = np.asarray(vectors, np.float64)
        norms = np.sqrt(np.einsum("ij,ij->i", v, v))
        usable = found & (norms > 0)
        scale = np.divide(quality, norms, out=np.zeros(m), where=usable)
        w = v * scale[:, None]
        kernel = w @ w.T
        small = norms[usable]
        if len(small) > 1 and small.min() ** 2 <= _DPP_EPS:  # rare: some norm products too small
            tiny = np.outer(norms, norms) <= _DPP_EPS
            kernel[tiny] = 0.0
    kernel.flat[:: m + 1] = quality * quality
    return kernel


def _greedy_map(kernel: F64, k: int) -> I64:
    """Greedy MAP of a DPP by incremental Cholesky: repeatedly take the item with the largest
    conditional variance (the first on a tie), until `k` items or no variance above 1e-6."""
    m = len(kernel)
    k = min(k, m)
    if k <= 0:
        return np.zeros(0, np.int64)
    variance = kernel.diagonal().copy()
    rows = np.zeros((k, m))  # row s: the s-th pick's column of the Cholesky factor
    scratch = np.empty(m)
    selected = []
    best = int(variance.argmax())
    for s in range(k):
        bv = float(variance[best])
        if s and bv <= _DPP_EPS:
            break
        selected.append(best)
        if s + 1 == k:
            break
        root = math.sqrt(bv)
        if root > _DPP_EPS:  # rows[s] = (L[best] - rows[:s, best] @ rows[:s]) / root, in place
            e = rows[s]
            np.matmul(rows[:s, best], rows[:s], out=scratch)
            np.subtract(kernel[best], scratch, out=e)
            e *= 1.0 / root
            np.multiply(e, e, out=scratch)
            variance -= scratch
        variance[best] = -np.inf  # taken
        best = int(variance.argmax())
    return np.array(selected, np.int64)


def _prob(inputs: RankingInputs, name: str) -> F64:
    p = inputs.probs.get(name)
    if p is None:
        return np.zeros(len(inputs))
    return np.asarray(p, np.float64)
