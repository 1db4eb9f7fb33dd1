"""The retrieval corpus: candidate-tower embeddings of the original posts inside the retention
window, in an ANN index, kept current as posts arrive, expire and are deleted.

Only originals are searchable: out-of-network replies and reposts are filtered out before scoring
anyway (docs/DESIGN.md §7), so indexing them would only crowd the top-k. Replies are embedded too,
into a side table beside the index, because the DPP diversity stage compares every candidate's
embedding (a repost uses the reposted post's).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt
from tqdm.auto import tqdm

from orchestrator.retrieval import VectorIndex
from orchestrator.retrieval.dense import DenseStore
from orchestrator.state.posts import Post, semantic_ids
from orchestrator.triton_client import PhoenixTriton
from phoenix.features import pack_posts
from phoenix.serving import CANDIDATE_TOWER
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
        self._replies = DenseStore(index.dim) if hasattr(index, "dim") else None

    def indexable(self, post: Post, now_ms: int) -> bool:
        """An original or a reply inside the retention window (reposts borrow their original's
        embedding)."""
        return not post.is_repost and 0 <= now_ms - post.created_ms <= self._retention_ms

    async def add(self, posts: Sequence[Post], *, progress: bool = False, chunk: int = 4096) -> int:
        """Embed the originals and replies among `posts` (callers pass posts inside retention);
        originals go into the index, replies into the side table. Returns how many originals."""
        embedded = [p for p in posts if not p.is_repost]
        hasher = self._triton.served.hasher_of(CANDIDATE_TOWER)
        bar = tqdm(total=len(embedded), desc="index", unit="post", disable=not progress or None)
        with bar:
            for start in range(0, len(embedded), chunk):
                part = embedded[start : start + chunk]
                ids = np.fromiter((p.post_id for p in part), np.int64, len(part))
                authors = np.fromiter((p.author_id for p in part), np.int64, len(part))
                original = np.fromiter((p.is_original for p in part), np.bool_, len(part))
                vectors = await self._triton.embed_posts(
                    pack_posts(hasher, ids, authors, semantic_ids(part))
                )
                vectors = np.ascontiguousarray(vectors, dtype=np.float32)
                with self._lock:
                    self.index.add(ids[original], vectors[original])
                    if self._replies is not None and not original.all():
                        self._replies.add(ids[~original], vectors[~original])
                bar.update(len(part))
        return sum(p.is_original for p in embedded)

    def remove(self, post_ids: Iterable[int]) -> int:
        ids = np.fromiter(post_ids, np.int64)
        if not len(ids):
            return 0
        with self._lock:
            if self._replies is not None:
                self._replies.remove(ids)
            return self.index.remove(ids)

    def expire(self, now_ms: int) -> int:
        """Drop posts older than the retention window (age from the snowflake id); returns how
        many indexed originals went."""
        with self._lock:
            if self._replies is not None:
                replies = self._replies.ids()
                self._replies.remove(replies[now_ms - created_ms(replies) > self._retention_ms])
            ids = self.index.ids()
            old = ids[now_ms - created_ms(ids) > self._retention_ms]
            return self.index.remove(old) if len(old) else 0

    def embeddings(
        self, post_ids: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
        """The candidate-tower embeddings of `post_ids` [n, D] (zeros where unknown) and which
        were found: what the DPP diversity stage compares."""
        ids = np.asarray(post_ids, np.int64)
        vectors, found = self.index.vectors_of(ids)
        if self._replies is not None and not found.all():
            with self._lock:
                more, more_found = self._replies.get(ids[~found])
            vectors[~found], found[~found] = more, more_found
        return vectors, found

    def search(
        self, user_embedding: npt.NDArray[np.float32], k: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """(post ids, scores) of the k nearest posts to one user embedding [D]; padding dropped."""
        ids, scores = self.index.search(user_embedding.reshape(1, -1).astype(np.float32), k)
        keep = ids[0] != 0
        return ids[0][keep], scores[0][keep]

    def __len__(self) -> int:
        return len(self.index)
