"""The pipeline runner: sources (concurrently) -> merge -> hydrate -> filters -> ranker -> ranking
arithmetic -> selection, with a timing per stage and degraded mode.

Degraded mode: when Triton fails (down, too slow, refusing), the feed is still answered, from the
in-network candidates in recency order, with `degraded` set; the next request tries Triton again,
so the service recovers by itself. Before the first model set is ready (`FeedQuery.models` is
None) retrieval says so and every feed is degraded alike.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from orchestrator.metrics import Metrics
from orchestrator.model_set import ModelSetNotReady
from orchestrator.pipeline.candidate import Candidates, FeedQuery, RankedPost
from orchestrator.pipeline.filters import Filter, apply_filters
from orchestrator.pipeline.hydrator import PostHydrator
from orchestrator.pipeline.ranking import Ranked, RankingInputs, rank
from orchestrator.pipeline.scorer import PhoenixScorer
from orchestrator.pipeline.selector import select
from orchestrator.pipeline.sources import Source
from orchestrator.triton_client import TritonUnavailable
from phoenix.actions import ACTIONS, POST_UNEXPLORED
from phoenix.ranking_config import RankingConfig

log = logging.getLogger(__name__)


@dataclass
class FeedResult:
    posts: list[RankedPost]
    degraded: bool = False
    degraded_reason: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    candidates: dict[str, int] = field(default_factory=dict)  # per source, before filters
    model_versions: dict[str, str] = field(default_factory=dict)  # model -> version(s) called
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
    ) -> None:
        self.sources = tuple(sources)
        self.hydrator = hydrator
        self.filters = tuple(filters)
        self.scorer = scorer
        self.ranking = ranking
        self.metrics = metrics

    async def run(self, query: FeedQuery) -> FeedResult:
        result = FeedResult(posts=[])
        timer = _StageTimer(result.timings_ms, self.metrics)

        with timer("sources"):
            fetched = await asyncio.gather(
                *(s.fetch(query) for s in self.sources), return_exceptions=True
            )
        parts: list[Candidates] = []
        for source, got in zip(self.sources, fetched, strict=True):
            if isinstance(got, ModelSetNotReady):
                self._degrade(result, source.name, str(got))
                got = Candidates.empty()
            elif isinstance(got, TritonUnavailable):
                self._degrade(result, source.name, f"{source.name}: {got}")
                got = Candidates.empty()
            elif isinstance(got, BaseException):
                raise got
            result.candidates[source.name] = len(got)
            self.metrics.candidates.labels(source.name).observe(len(got))
            parts.append(got)
        merged = Candidates.concat(parts)

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
                self._degrade(result, "ranker", f"ranker: {exc}")
        with timer("select"):
            if result.degraded:
                kept.score = np.zeros(len(kept))
                result.posts = kept.posts(recency_page(kept, query.limit))
            else:
                # DPP compares the candidate-tower embeddings of the feed's set.
                embeddings = None if query.models is None else query.models.index.embeddings
                ranked = rank(self.ranking, ranking_inputs(query, kept), embeddings)
                kept.score = ranked.final
                order = ranked.order
                chosen = select(
                    self.ranking, kept.conversation_id[order], ranked.final[order], query.limit
                )
                page = order[chosen]
                result.posts = kept.posts(page)
                if query.explain:
                    result.explanations = explanations(ranked, kept.post_id, page)
        result.timings_ms["total"] = sum(result.timings_ms.values())
        return result

    def _degrade(self, result: FeedResult, stage: str, reason: str) -> None:
        if not result.degraded:
            log.warning("feed degraded: %s", reason)
            self.metrics.degraded.labels(stage).inc()
        result.degraded = True
        result.degraded_reason = result.degraded_reason or reason


def recency_page(candidates: Candidates, limit: int) -> npt.NDArray[np.int64]:
    """The degraded page: in-network posts, newest first, one per conversation (positions)."""
    newest = np.flatnonzero(candidates.in_network)
    newest = newest[np.argsort(-candidates.post_id[newest], kind="stable")]
    first = np.sort(np.unique(candidates.conversation_id[newest], return_index=True)[1])
    return newest[first][:limit]


def ranking_inputs(query: FeedQuery, candidates: Candidates) -> RankingInputs:
    """The ranking arithmetic's arrays from a hydrated, scored batch."""
    c = candidates
    probs = c.predictions
    if probs is None:
        raise ValueError("the candidates have no predictions")
    finite = np.isfinite(probs).all(axis=1)
    if not finite.all():
        raise ValueError(f"non-finite predictions for candidates {c.post_id[~finite].tolist()}")
    probs64 = probs.astype(np.float64)
    return RankingInputs(
        post_id=c.post_id,
        author_id=c.author_id,
        in_network=c.in_network,
        is_reply=c.is_reply,
        is_repost=c.is_repost,
        mutual_follow=c.mutual_follow,
        video_ms=c.video_ms,
        author_followers=c.author_followers,
        impressions=c.impressions,
        embedding_id=c.original_post_id,
        probs={
            **{name: probs64[:, i] for i, name in enumerate(ACTIONS)},
            POST_UNEXPLORED: np.asarray(c.post_unexplored, np.float64),
        },
        dwell_time_s=c.dwell_time_s,
        viewer_followers=len(query.viewer.followers),
    )


def explanations(
    ranked: Ranked, post_ids: npt.NDArray[np.int64], page: npt.NDArray[np.int64]
) -> dict[int, dict[str, Any]]:
    """Each page post's score, stage by stage, by post id (docs/RANKING.md); `page` holds
    positions in the ranked batch."""
    out = {}
    for i in page.tolist():
        out[int(post_ids[i])] = {
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
