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

from orchestrator.metrics import Metrics
from orchestrator.pipeline.candidate import Candidate, FeedQuery
from orchestrator.pipeline.filters import Filter, apply_filters
from orchestrator.pipeline.hydrator import PostHydrator
from orchestrator.pipeline.ranking import rank
from orchestrator.pipeline.scorer import PhoenixScorer
from orchestrator.pipeline.selector import select
from orchestrator.pipeline.sources import Source
from orchestrator.triton_client import TritonUnavailable
from phoenix.ranking_config import RankingConfig

log = logging.getLogger(__name__)


@dataclass
class FeedResult:
    posts: list[Candidate]
    degraded: bool = False
    degraded_reason: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    candidates: dict[str, int] = field(default_factory=dict)  # per source, before filters
    model_versions: dict[str, str] = field(default_factory=dict)  # model -> version(s) called


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
            kept, removed = apply_filters(self.filters, query, merged)
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
                result.posts = select(self.ranking, rank(self.ranking, kept), query.limit)
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
