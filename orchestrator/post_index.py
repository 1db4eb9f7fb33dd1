"""The retrieval corpus: candidate-tower embeddings of the original posts inside the retention
window, in an ANN index, kept current as posts arrive, expire and are deleted.

Only originals are indexed: out-of-network replies and reposts are filtered out before scoring
anyway (DESIGN.md 7), so indexing them would only crowd the top-k.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt
from tqdm.auto import tqdm

from orchestrator.retrieval import VectorIndex
from orchestrator.state.posts import Post
from orchestrator.triton_client import PhoenixTriton
from phoenix.snowflake import created_ms

log = logging.getLogger(__name__)

_HOUR_MS = 3_600_000


class PostIndex:
    """Embeds posts through Triton's candidate tower and keeps them searchable by user embedding."""

    def __init__(
        self, index: VectorIndex, triton: PhoenixTriton, *, retention_hours: float = 48.0
    ) -> None:
        self.index = index
        self._triton = triton
        self._retention_ms = int(retention_hours * _HOUR_MS)
        self._lock = threading.Lock()

    def indexable(self, post: Post, now_ms: int) -> bool:
        return post.is_original and 0 <= now_ms - post.created_ms <= self._retention_ms

    async def add(self, posts: Sequence[Post], *, progress: bool = False, chunk: int = 4096) -> int:
        """Embed and index the originals among `posts` (callers pass posts inside retention)."""
        originals = [p for p in posts if p.is_original]
        hasher = self._triton.served.hasher
        bar = tqdm(total=len(originals), desc="index", unit="post", disable=not progress or None)
        with bar:
            for start in range(0, len(originals), chunk):
                part = originals[start : start + chunk]
                ids = np.fromiter((p.post_id for p in part), np.int64, len(part))
                authors = np.fromiter((p.author_id for p in part), np.int64, len(part))
                vectors = await self._triton.embed_posts(hasher.posts(ids), hasher.authors(authors))
                with self._lock:
                    self.index.add(ids, np.ascontiguousarray(vectors, dtype=np.float32))
                bar.update(len(part))
        return len(originals)

    def remove(self, post_ids: Iterable[int]) -> int:
        ids = np.fromiter(post_ids, np.int64)
        if not len(ids):
            return 0
        with self._lock:
            return self.index.remove(ids)

    def expire(self, now_ms: int) -> int:
        """Drop posts older than the retention window (age from the snowflake id)."""
        with self._lock:
            ids = self.index.ids()
            old = ids[now_ms - created_ms(ids) > self._retention_ms]
            return self.index.remove(old) if len(old) else 0

    def search(
        self, user_embedding: npt.NDArray[np.float32], k: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """(post ids, scores) of the k nearest posts to one user embedding [D]; padding dropped."""
        ids, scores = self.index.search(user_embedding.reshape(1, -1).astype(np.float32), k)
        keep = ids[0] != 0
        return ids[0][keep], scores[0][keep]

    def __len__(self) -> int:
        return len(self.index)
