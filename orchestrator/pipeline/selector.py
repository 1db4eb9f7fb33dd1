"""Selection (docs/DESIGN.md §2 and §5): top posts -> one per conversation -> the page.

X keeps the top 50, drops conversation duplicates and returns 35; here (docs/DESIGN.md §5) the
request's limit replaces 35, and the top slice grows with it so a large page (up to 200) can still
be filled.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from orchestrator.pipeline.filters import dedup_conversations
from phoenix.ranking_config import RankingConfig


def select(
    config: RankingConfig, conversation_ids: npt.ArrayLike, scores: npt.ArrayLike, limit: int
) -> npt.NDArray[np.int64]:
    """The page, as positions in the ranked sequence whose conversation keys and scores are given
    best first (as `ranking.rank`'s order puts them): the top `max(config.max_selected, limit)`,
    one post per conversation, cut to `limit`."""
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    top = max(config.max_selected, limit)
    keys = np.asarray(conversation_ids, np.int64)[:top]
    return dedup_conversations(keys, np.asarray(scores, np.float64)[:top])[:limit]
