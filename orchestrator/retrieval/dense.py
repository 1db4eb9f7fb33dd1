"""A dense, id-addressed matrix of vectors and the exact top-k over it.

This is the exact backend's whole engine, and the other backends keep one too: as the source of
truth they rebuild from, as the answer while a corpus is too small for an approximate structure,
and (on the GPU) as the side buffer for posts added since the last CAGRA build. It is written
against an array module `xp` (NumPy, or CuPy for device-resident copies) so one implementation
serves both; the id bookkeeping always stays on the host.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np

from orchestrator.retrieval.validation import Ids, Vectors

#: The id returned for an empty result slot (0 is never a post id).
PAD_ID = 0

#: Largest score block computed at once, in float32 entries (64 MiB): bounds a search's memory
#: whatever the corpus size and query batch.
_SCORE_BLOCK = 1 << 24

Result = tuple[Ids, np.ndarray]  # ids int64 [Q, k], scores float32 [Q, k]


def empty_result(queries: int, k: int) -> Result:
    """Every slot padded: id 0 and score -inf."""
    return np.full((queries, k), PAD_ID, np.int64), np.full((queries, k), -np.inf, np.float32)


def to_host(a: Any) -> np.ndarray:
    """A NumPy array from a NumPy or CuPy one."""
    return a if isinstance(a, np.ndarray) else a.get()


def top_k(scores: Any, k: int, xp: ModuleType = np) -> tuple[Any, Any]:
    """Columns and values of the min(k, N) largest scores of each row, best first.

    `argpartition` finds the k largest in O(N) per row; only those k are then sorted.
    """
    n = scores.shape[1]
    if k < n:
        cols = xp.argpartition(scores, n - k, axis=1)[:, n - k :]
        vals = xp.take_along_axis(scores, cols, axis=1)
    else:
        cols = xp.broadcast_to(xp.arange(n), scores.shape)
        vals = scores
    order = xp.argsort(-vals, axis=1)
    return xp.take_along_axis(cols, order, axis=1), xp.take_along_axis(vals, order, axis=1)


def merge_results(parts: Sequence[Result], k: int) -> Result:
    """The best k of several (ids, scores) results for the same queries, padded to k."""
    ids = np.concatenate([p[0] for p in parts], axis=1)
    scores = np.concatenate([p[1] for p in parts], axis=1)
    cols, vals = top_k(scores, k)
    return pad_result(np.take_along_axis(ids, cols, axis=1), vals, k)


def pad_result(ids: Ids, scores: np.ndarray, k: int) -> Result:
    """Widen to k columns with padding, and mark every -inf slot as padding (id 0)."""
    ids = np.asarray(ids, np.int64)
    scores = np.asarray(scores, np.float32)
    if ids.shape[1] < k:
        out_ids, out_scores = empty_result(ids.shape[0], k)
        out_ids[:, : ids.shape[1]] = ids
        out_scores[:, : ids.shape[1]] = scores
        ids, scores = out_ids, out_scores
    ids[np.isneginf(scores)] = PAD_ID
    return ids, scores


class DenseStore:
    """Live vectors in rows 0..n-1 of one float32 matrix, with an id -> row map.

    Removing a row moves the last row into its place, so the live rows stay contiguous and a
    search is a single matrix product. Not thread-safe: the owning index holds the lock.
    """

    def __init__(self, dim: int, xp: ModuleType = np) -> None:
        self.dim = dim
        self._xp = xp
        self._matrix = xp.empty((0, dim), dtype=np.float32)
        self._row_ids = np.empty(0, np.int64)  # host: row -> id
        self._rows: dict[int, int] = {}  # id -> row
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def __contains__(self, post_id: int) -> bool:
        return post_id in self._rows

    def ids(self) -> Ids:
        """The live ids in row order (a copy)."""
        return self._row_ids[: self._n].copy()

    def id_view(self) -> Ids:
        """The live ids in row order, a view: valid until the next add or remove."""
        return self._row_ids[: self._n]

    def vectors(self) -> Any:
        """The live rows, a view: valid until the next add or remove."""
        return self._matrix[: self._n]

    def snapshot(self) -> tuple[Ids, Vectors]:
        """Host copies of the live ids and rows, for building another structure from them."""
        return self.ids(), np.array(to_host(self.vectors()), dtype=np.float32, copy=True)

    def add(self, ids: Ids, vectors: Vectors) -> None:
        """Insert or replace rows. `ids` must be unique (see `validation.last_wins`)."""
        if not len(ids):
            return
        xp = self._xp
        vectors = xp.asarray(vectors)
        found = np.fromiter((self._rows.get(i, -1) for i in ids.tolist()), np.int64, len(ids))
        old = found >= 0
        if old.any():
            self._matrix[xp.asarray(found[old])] = vectors[xp.asarray(old)]
        new = ~old
        count = int(new.sum())
        if not count:
            return
        start = self._n
        self._reserve(start + count)
        new_ids = ids[new]
        if count < len(ids):
            vectors = vectors[xp.asarray(new)]
        self._matrix[start : start + count] = vectors
        self._row_ids[start : start + count] = new_ids
        self._rows.update(zip(new_ids.tolist(), range(start, start + count), strict=True))
        self._n += count

    def get(self, ids: Ids) -> tuple[np.ndarray, np.ndarray]:
        """Host copies of the vectors of `ids` [n, D] (zeros where absent) and which were found."""
        rows = np.fromiter((self._rows.get(i, -1) for i in ids.tolist()), np.int64, len(ids))
        found = rows >= 0
        out = np.zeros((len(ids), self.dim), np.float32)
        if found.any():
            out[found] = to_host(self._matrix[self._xp.asarray(rows[found])])
        return out, found

    def remove(self, ids: Ids) -> Ids:
        """Delete the rows of `ids`; returns the ids that were present (each once)."""
        removed = []
        rows, row_ids, matrix = self._rows, self._row_ids, self._matrix
        for post_id in ids.tolist():
            row = rows.pop(post_id, None)
            if row is None:
                continue
            last = self._n - 1
            if row != last:
                moved = int(row_ids[last])
                matrix[row] = matrix[last]
                row_ids[row] = moved
                rows[moved] = row
            self._n = last
            removed.append(post_id)
        return np.asarray(removed, np.int64)

    def search(self, queries: Vectors, k: int) -> Result:
        """Exact top-k by inner product, on the host: ids [Q, k] and scores [Q, k], padded.

        The product is computed in blocks of rows so a large corpus times a large batch never
        materialises more than `_SCORE_BLOCK` scores at once.
        """
        n_queries, n = len(queries), self._n
        if not n or not n_queries:
            return empty_result(n_queries, k)
        xp = self._xp
        queries = xp.asarray(queries)
        kk = min(k, n)
        block = max(kk, _SCORE_BLOCK // n_queries)
        best_rows = best_vals = None
        for start in range(0, n, block):
            scores = queries @ self._matrix[start : min(n, start + block)].T
            rows, vals = top_k(scores, kk, xp)
            rows = rows + start
            if best_rows is not None:
                vals = xp.concatenate([best_vals, vals], axis=1)
                rows = xp.concatenate([best_rows, rows], axis=1)
                cols, vals = top_k(vals, kk, xp)
                rows = xp.take_along_axis(rows, cols, axis=1)
            best_rows, best_vals = rows, vals
        ids = self._row_ids[to_host(best_rows)]
        return pad_result(ids, to_host(best_vals), k)

    def _reserve(self, rows: int) -> None:
        """Grow the matrix geometrically, so adding posts one at a time stays amortised O(1)."""
        capacity = len(self._row_ids)
        if rows <= capacity:
            return
        capacity = max(rows, 2 * capacity, 1024)
        matrix = self._xp.empty((capacity, self.dim), dtype=np.float32)
        matrix[: self._n] = self._matrix[: self._n]
        row_ids = np.empty(capacity, np.int64)
        row_ids[: self._n] = self._row_ids[: self._n]
        self._matrix, self._row_ids = matrix, row_ids
