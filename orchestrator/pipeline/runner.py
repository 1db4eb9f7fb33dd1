"""The pipeline runner: sources (concurrently) -> merge -> hydrate -> filters -> ranker -> ranking
arithmetic -> selection, with a timing per stage and degraded mode.

Degraded mode: when Triton fails (down, too slow, refusing), the feed is still answered, from the
in-network candidates in recency order, with `degraded` set; the next request tries Triton again,
so the service recovers by itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from orchestrator.metrics import Metrics
from orchestrator.pipeline.candidate import Candidate, FeedQuery
from orchestrator.pipeline.filters import Filter, apply_filters
from orchestrator.pipeline.hydrator import PostHydrator
from orchestrator.pipeline.ranking import EmbeddingLookup, Ranked, RankingInputs, rank
from orchestrator.pipeline.scorer import PhoenixScorer
from orchestrator.pipeline.selector import select
from orchestrator.pipeline.sources import Source
from orchestrator.triton_client import TritonUnavailable
from phoenix.actions import ACTIONS
from phoenix.ranking_config import RankingConfig

log = logging.getLogger(__name__)


@dataclass
class FeedResult:
    posts: list[Candidate]
    degraded: bool = False
    degraded_reason: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    candidates: dict[str, int] = field(default_factory=dict)  # per source, before filters
    removed: dict[str, int] = field(default_factory=dict)  # per filter
    removed_ids: dict[str, list[int]] | None = None  # per filter, when the query explains
    explanations: dict[int, dict[str, Any]] | None = None  # post id -> its score, stage by stage


class FeedPipeline:
    def __init__(
        self,
        sources: Sequence[Source],
        hydrator: PostHydrator,
        filters: Sequence[Filter],
        scorer: PhoenixScorer,
        ranking: RankingConfig,
        metrics: Metrics,
        embeddings: EmbeddingLookup | None = None,
    ) -> None:
        self.sources = tuple(sources)
        self.hydrator = hydrator
        self.filters = tuple(filters)
        self.scorer = scorer
        self.ranking = ranking
        self.metrics = metrics
        self.embeddings = embeddings  # post embeddings for DPP (None: every post unlike others)

    async def run(self, query: FeedQuery) -> FeedResult:
        result = FeedResult(posts=[])
        timer = _StageTimer(result.timings_ms, self.metrics)

        with timer("sources"):
            fetched = await asyncio.gather(
                *(s.fetch(query) for s in self.sources), return_exceptions=True
            )
        merged: list[Candidate] = []
        for source, got in zip(self.sources, fetched, strict=True):
            if isinstance(got, TritonUnavailable):
                self._degrade(result, f"{source.name}: {got}")
                got = []
            elif isinstance(got, BaseException):
                raise got
            result.candidates[source.name] = len(got)
            self.metrics.candidates.labels(source.name).observe(len(got))
            merged.extend(got)

        with timer("hydrate"):
            self.hydrator.hydrate(query, merged)
        with timer("filters"):
            removed_ids: dict[str, list[int]] | None = {} if query.explain else None
            kept, removed = apply_filters(self.filters, query, merged, removed_ids)
        result.removed, result.removed_ids = removed, removed_ids
        for name, count in removed.items():
            if count:
                self.metrics.filtered.labels(name).inc(count)

        if not result.degraded:
            try:
                with timer("ranker"):
                    await self.scorer.score(query, kept)
            except TritonUnavailable as exc:
                self._degrade(result, f"ranker: {exc}")
        with timer("select"):
            if result.degraded:
                result.posts = self._recency_feed(query, kept)
            else:
                ranked = rank(self.ranking, ranking_inputs(query, kept), self.embeddings)
                for c, weighted, score in zip(
                    kept, ranked.squashed.tolist(), ranked.final.tolist(), strict=True
                ):
                    c.weighted_score, c.score = weighted, score
                ordered = [kept[i] for i in ranked.order.tolist()]
                result.posts = select(self.ranking, ordered, query.limit)
                if query.explain:
                    result.explanations = explanations(ranked, kept, result.posts)
        result.timings_ms["total"] = sum(result.timings_ms.values())
        return result

    def _recency_feed(self, query: FeedQuery, candidates: list[Candidate]) -> list[Candidate]:
        """In-network posts, newest first, one per conversation, no scores."""
        newest = sorted((c for c in candidates if c.in_network), key=lambda c: -c.post_id)
        for c in newest:
            c.score = 0.0
        seen: set[int] = set()
        page = []
        for c in newest:
            if c.conversation_id not in seen:
                seen.add(c.conversation_id)
                page.append(c)
        return page[: query.limit]

    def _degrade(self, result: FeedResult, reason: str) -> None:
        if not result.degraded:
            log.warning("feed degraded: %s", reason)
            self.metrics.degraded.labels(reason.split(":", 1)[0]).inc()
        result.degraded = True
        result.degraded_reason = result.degraded_reason or reason


def ranking_inputs(query: FeedQuery, candidates: Sequence[Candidate]) -> RankingInputs:
    """The ranking arithmetic's arrays from hydrated, scored candidates."""
    n = len(candidates)
    probs = np.zeros((n, len(ACTIONS)))
    for i, c in enumerate(candidates):
        if c.predictions is None:
            raise ValueError(f"candidate {c.post_id} has no predictions")
        probs[i] = c.predictions
    if not np.isfinite(probs).all():
        bad = [
            c.post_id for c, ok in zip(candidates, np.isfinite(probs).all(1), strict=True) if not ok
        ]
        raise ValueError(f"non-finite predictions for candidates {bad}")

    def col(values: Any, dtype: type) -> np.ndarray:
        return np.fromiter(values, dtype, n)

    return RankingInputs(
        post_id=col((c.post_id for c in candidates), np.int64),
        author_id=col((c.author_id for c in candidates), np.int64),
        in_network=col((c.in_network for c in candidates), np.bool_),
        is_reply=col((c.post is not None and c.post.is_reply for c in candidates), np.bool_),
        is_repost=col((c.post is not None and c.post.is_repost for c in candidates), np.bool_),
        mutual_follow=col((c.mutual_follow for c in candidates), np.bool_),
        video_ms=col((c.video_ms for c in candidates), np.int64),
        author_followers=col((c.author_follower_count for c in candidates), np.int64),
        impressions=col((c.impressions for c in candidates), np.int64),
        embedding_id=col((c.original_post_id for c in candidates), np.int64),
        probs={name: probs[:, i] for i, name in enumerate(ACTIONS)},
        dwell_time_s=col((c.dwell_time_s for c in candidates), np.float64),
        viewer_followers=len(query.viewer.followers),
    )


def explanations(
    ranked: Ranked, candidates: Sequence[Candidate], page: Sequence[Candidate]
) -> dict[int, dict[str, Any]]:
    """Each page post's score, stage by stage, by post id (docs/RANKING.md)."""
    index = {id(c): i for i, c in enumerate(candidates)}
    out = {}
    for c in page:
        i = index[id(c)]
        out[c.post_id] = {
            "probabilities": {k: float(v[i]) for k, v in ranked.probs.items()},
            "contributions": {k: float(v[i]) for k, v in ranked.contributions.items()},
            "adjustments": {k: float(v[i]) for k, v in ranked.adjustments.items() if v[i] != 0},
            "raw": float(ranked.raw[i]),
            "squashed": float(ranked.squashed[i]),
            "new_author_lift": float(ranked.lifted[i]),
            "diversity_k": int(ranked.diversity_k[i]),
            "diversity_multiplier": float(ranked.diversity_multiplier[i]),
            "oon_factor": float(ranked.oon_factor[i]),
            "dpp_kept": bool(ranked.dpp_kept[i]),
            "final": float(ranked.final[i]),
        }
    return out


class _StageTimer:
    """`with timer("stage"):` records the stage's milliseconds and its Prometheus histogram."""

    def __init__(self, timings_ms: dict[str, float], metrics: Metrics) -> None:
        self._timings = timings_ms
        self._metrics = metrics
        self._stage = ""
        self._start = 0.0

    def __call__(self, stage: str) -> _StageTimer:
        self._stage = stage
        return self

    def __enter__(self) -> None:
        self._start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        seconds = time.perf_counter() - self._start
        self._timings[self._stage] = round(seconds * 1000, 3)
        self._metrics.stage_latency.labels(self._stage).observe(seconds)
