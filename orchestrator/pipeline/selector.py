"""Selection (DESIGN.md 2 and 5): top posts -> one per conversation -> the page.

DESIGN.md keeps the top 50, drops conversation duplicates and returns 35; here the request's limit
replaces 35, and the top slice grows with it so a large page (up to 200) can still be filled.
"""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.pipeline.candidate import Candidate
from orchestrator.pipeline.filters import ConversationDedup
from phoenix.ranking_config import RankingConfig

_CONVERSATION_DEDUP = ConversationDedup()


def select(config: RankingConfig, ranked: Sequence[Candidate], limit: int) -> list[Candidate]:
    """The page: the top `max(config.max_selected, limit)` of `ranked` (sorted best first, as
    `ranking.rank` returns it), one post per conversation, cut to `limit`."""
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    top = list(ranked[: max(config.max_selected, limit)])
    return _CONVERSATION_DEDUP.apply(None, top)[:limit]
