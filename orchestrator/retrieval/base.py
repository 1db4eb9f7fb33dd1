"""What every backend shares: validation, the lock, the host copy of the corpus, and rebuilds.

An index keeps every live vector in a host `DenseStore` (the truth) and, optionally, an
*accelerator* built from it: a faiss IVF index, a cuVS CAGRA graph. Writes go to both; searches go
to the accelerator when there is one and to the exact store otherwise. Approximate structures
degrade as the corpus churns (IVF centroids trained on posts long expired, CAGRA tombstones and
side buffers), so each backend says when its accelerator is due for a rebuild.

A rebuild must not stall feed requests for the seconds it takes, so it runs outside the lock:

1. under the read lock: copy the live ids and vectors, start a journal of writes;
2. without the lock: build the new accelerator from the copy (searches and writes go on, against
   the old accelerator, and every write is also appended to the journal);
3. under the write lock: replay the journal onto the new accelerator, swap it in.

The writer whose add or remove made a rebuild due runs it in its own thread (ingestion pays, feed
requests do not); one rebuild runs at a time, and `rebuild()` forces one.
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

import numpy as np

from orchestrator.retrieval.dense import DenseStore, Result, empty_result
from orchestrator.retrieval.locks import ReadWriteLock
from orchestrator.retrieval.validation import (
    Ids,
    Vectors,
    as_id,
    check_ids,
    check_k,
    check_rows,
    last_wins,
)
from phoenix.errors import ConfigError

log = logging.getLogger(__name__)


class Accelerator(Protocol):
    """An approximate (or device-resident) structure over a snapshot of the corpus, kept current
    by the index. `add` may receive ids it already holds (replace them); `remove` receives only
    ids that were live in the index, which it may or may not hold."""

    def add(self, ids: Ids, vectors: Vectors) -> None: ...

    def remove(self, ids: Ids) -> None: ...

    def search(self, queries: Vectors, k: int) -> Result: ...

    def describe(self) -> str: ...


class StoreBackedIndex:
    """The `VectorIndex` contract on top of a host store plus an optional accelerator.

    Subclasses set `name` and override `_build` (make an accelerator from a snapshot, or None for
    exact search) and `_rebuild_due` (is the current one stale).
    """

    name = "base"

    def __init__(self, dim: int) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ConfigError(f"dim: expected a positive integer, got {dim!r}")
        self.dim = dim
        self._store = DenseStore(dim)
        self._lock = ReadWriteLock()
        self._accel: Accelerator | None = None
        self._built_size = 0  # live vectors when the current accelerator was built
        self._churn = 0  # vectors added or removed since then
        self._journal: list[tuple[str, Ids, Vectors | None]] | None = None
        self._rebuilding = threading.Lock()
        self._retry_at_churn = 0  # after a failed automatic rebuild, wait for more churn

    # The VectorIndex contract -----------------------------------------------------------------
    def add(self, ids: object, vectors: object) -> None:
        """Insert vectors [N, D] under post ids [N]; an id already present gets the new vector."""
        ids = check_ids(ids)
        vectors = check_rows(vectors, self.dim, "vectors", rows=len(ids))
        ids, vectors = last_wins(ids, vectors)
        if not len(ids):
            return
        with self._lock.write():
            self._store.add(ids, vectors)
            self._update_accel("add", ids, vectors)
            if self._journal is not None:  # copies: the caller may reuse its arrays
                self._journal.append(("add", ids.copy(), vectors.copy()))
            self._churn += len(ids)
            due = self._auto_rebuild_due()
        if due:
            self._rebuild(automatic=True)

    def remove(self, ids: object) -> int:
        """Delete these posts; returns how many were present. Unknown ids are ignored."""
        ids = check_ids(ids)
        if not len(ids):
            return 0
        with self._lock.write():
            removed = self._store.remove(ids)
            if len(removed):
                self._update_accel("remove", removed, None)
                if self._journal is not None:
                    self._journal.append(("remove", removed, None))
                self._churn += len(removed)
            due = self._auto_rebuild_due()
        if due:
            self._rebuild(automatic=True)
        return len(removed)

    def search(self, queries: object, k: object) -> Result:
        """Top-k posts by inner product for each query [Q, D]: ids int64 [Q, k] and scores float32
        [Q, k], best first; slots beyond the live vectors hold id 0 and score -inf."""
        k = check_k(k)
        queries = check_rows(queries, self.dim, "queries")
        if not len(queries):
            return empty_result(0, k)
        with self._lock.read():
            if not len(self._store):
                return empty_result(len(queries), k)
            if self._accel is not None:
                return self._accel.search(queries, k)
            return self._store.search(queries, k)

    def vectors_of(self, ids: object) -> tuple[Vectors, np.ndarray]:
        """The stored vectors of `ids` [n, D] (zeros where absent) and which ids were found."""
        ids = check_ids(ids)
        with self._lock.read():
            return self._store.get(ids)

    def ids(self) -> Ids:
        """The live post ids, in no particular order."""
        with self._lock.read():
            return self._store.ids()

    def __len__(self) -> int:
        with self._lock.read():
            return len(self._store)

    def __contains__(self, post_id: object) -> bool:
        key = as_id(post_id)
        if key is None:
            return False
        with self._lock.read():
            return key in self._store

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}, {len(self)} vectors>"

    def _update_accel(self, op: str, ids: Ids, vectors: Vectors | None) -> None:
        """Apply a write to the accelerator. Should it fail (a faiss or CUDA error, out of
        memory), drop it: searches fall back to the exact store, which already holds the write,
        so answers stay correct, and the next write schedules a rebuild."""
        if self._accel is None:
            return
        try:
            if op == "add":
                self._accel.add(ids, vectors)
            else:
                self._accel.remove(ids)
        except Exception:
            log.exception(
                "%s index: %s failed on %s; searching exactly", self.name, op, self.describe()
            )
            self._accel = None
            self._built_size = 0

    # Rebuilds -----------------------------------------------------------------------------------
    def describe(self) -> str:
        """What answers searches right now, e.g. 'IVF-Flat nlist=4000 nprobe~26' (for reports)."""
        accel = self._accel
        return accel.describe() if accel is not None else "exact"

    def rebuild(self) -> bool:
        """Rebuild the accelerator from the current corpus now (blocking this caller only).

        Returns False when another rebuild was already running; errors propagate.
        """
        return self._rebuild(automatic=False)

    def _build(self, ids: Ids, vectors: Vectors) -> Accelerator | None:
        """An accelerator over this snapshot, or None to search the exact store. Runs unlocked."""
        return None

    def _rebuild_due(self, accel: Accelerator | None, live: int, built: int, churn: int) -> bool:
        """Whether `accel` (None: none yet) should be rebuilt. Called under the write lock."""
        return False

    def _auto_rebuild_due(self) -> bool:
        if self._journal is not None or self._churn < self._retry_at_churn:
            return False
        return self._rebuild_due(self._accel, len(self._store), self._built_size, self._churn)

    def _rebuild(self, *, automatic: bool) -> bool:
        if not self._rebuilding.acquire(blocking=False):
            return False
        try:
            with self._lock.read():
                ids, vectors = self._store.snapshot()
                self._journal = []
            try:
                accel = self._build(ids, vectors)
            except BaseException as exc:
                with self._lock.write():
                    self._journal = None
                    # Do not retry on every write: wait until the corpus has changed by a tenth.
                    self._retry_at_churn = self._churn + max(1024, len(self._store) // 10)
                if not automatic or not isinstance(exc, Exception):
                    raise
                log.exception("%s index: rebuild failed; serving %s", self.name, self.describe())
                return True
            del vectors
            with self._lock.write():
                journal, self._journal = self._journal, None
                if accel is not None:
                    for op, op_ids, op_vectors in journal:
                        if op == "add":
                            accel.add(op_ids, op_vectors)
                        else:
                            accel.remove(op_ids)
                self._accel = accel
                self._built_size = len(ids)
                self._churn = sum(len(op_ids) for _, op_ids, _ in journal)
                self._retry_at_churn = 0
            log.debug("%s index: rebuilt over %d vectors: %s", self.name, len(ids), self.describe())
            return True
        finally:
            self._rebuilding.release()
