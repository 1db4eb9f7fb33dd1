"""The faiss backend: IVF-Flat by inner product, for CPU corpora from 50k to a few million posts.

Chosen by measurement (`phoenix bench ann`, clustered synthetic embeddings, D=128, k=100, 2 cores):

- IVF-Flat keeps exact vectors in its lists, so a probed list is scanned with exact inner products;
  it deletes natively (`remove_ids`, O(1) per id with a hashtable direct map) and adds cheaply
  (one nearest-centroid lookup per post). At 100k posts it reached recall@100 0.98 at ~10x the
  exact search's single-query speed, at 1M 0.99+ at ~60x.
- HNSW-Flat (M=32) reached only 0.93 at efSearch=128 on the same 100k (0.96 needed efSearch=300,
  8x), cannot delete (tombstones and rebuilds), and builds 5x slower.

Parameters, each measured rather than guessed:

- below `min_train` live posts (50,000) searches are exact: with so few posts the 100 nearest span
  many clusters and IVF needs to probe a third of its lists, while exact search costs ~1.3 ms;
- `nlist` = 4 sqrt(N) lists (at most N/39: faiss wants ~39 training points per centroid);
- `nprobe` is set per search so that about `scan_factor` x k vectors are scanned, ceil(64 k nlist
  / N): recall@k depends on how many candidates are scanned relative to k, not on nlist alone;
- retrain (off the lock, see base.py) when the corpus has grown or shrunk 4x since training or
  when churn reaches twice the trained size: after a full turnover of the 48 h window the
  centroids describe posts that are gone.
"""

from __future__ import annotations

import math
import warnings
from types import ModuleType

import numpy as np

from orchestrator.retrieval.base import Accelerator, StoreBackedIndex
from orchestrator.retrieval.dense import PAD_ID, Result, pad_result
from orchestrator.retrieval.validation import Ids, Vectors
from phoenix.errors import ConfigError

#: k-means training points per list; faiss warns below 39.
_TRAIN_POINTS_PER_LIST = 40


def import_faiss() -> ModuleType:
    """The faiss module; its SWIG layer may emit DeprecationWarnings on import, which say nothing
    about our code and would fail tests run with warnings as errors."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import faiss
    except ImportError as exc:
        raise ConfigError(
            "faiss backend: the faiss package is not installed "
            "(pip install faiss-cpu, or this project's [serve] extra)"
        ) from exc
    return faiss


def faiss_available() -> bool:
    try:
        import_faiss()
    except ConfigError:
        return False
    return True


def ivf_nlist(n: int) -> int:
    """Lists for n training vectors: 4 sqrt(n), but at least 39 training points per list."""
    return max(1, min(round(4 * math.sqrt(n)), n // _TRAIN_POINTS_PER_LIST))


class IvfAccelerator:
    """A trained `IndexIVFFlat` (inner product) holding the corpus under the post ids."""

    def __init__(
        self,
        faiss: ModuleType,
        ids: Ids,
        vectors: Vectors,
        *,
        scan_factor: float,
        min_nprobe: int,
        seed: int,
    ) -> None:
        n, dim = vectors.shape
        self._faiss = faiss
        self._scan_factor = scan_factor
        self._min_nprobe = min_nprobe
        self.nlist = ivf_nlist(n)
        self._quantizer = faiss.IndexFlatIP(dim)  # referenced by the IVF index: keep it alive
        index = faiss.IndexIVFFlat(self._quantizer, dim, self.nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        sample = min(n, _TRAIN_POINTS_PER_LIST * self.nlist)
        if sample < n:
            rows = np.sort(np.random.default_rng(seed).choice(n, sample, replace=False))
            index.train(vectors[rows])
        else:
            index.train(vectors)
        index.set_direct_map_type(faiss.DirectMap.Hashtable)  # O(1) remove by id
        index.add_with_ids(vectors, ids)
        self._index = index

    def add(self, ids: Ids, vectors: Vectors) -> None:
        self._remove(ids)  # IVF would keep both copies of a re-added id
        self._index.add_with_ids(vectors, ids)

    def remove(self, ids: Ids) -> None:
        self._remove(ids)

    def _remove(self, ids: Ids) -> None:
        # With a hashtable direct map faiss accepts only an IDSelectorArray (not the IDSelectorBatch
        # it builds from a plain array); `ids` stays referenced for the duration of the call.
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        self._index.remove_ids(self._faiss.IDSelectorArray(ids))

    def nprobe(self, k: int) -> int:
        """Lists to probe so that about scan_factor * k vectors are scanned."""
        per_list = max(self._index.ntotal, 1) / self.nlist
        wanted = math.ceil(self._scan_factor * k / per_list)
        return max(1, min(self.nlist, max(self._min_nprobe, wanted)))

    def search(self, queries: Vectors, k: int) -> Result:
        params = self._faiss.SearchParametersIVF(nprobe=self.nprobe(k))
        scores, ids = self._index.search(queries, k, params=params)
        missing = ids < 0  # fewer than k vectors in the probed lists
        ids[missing] = PAD_ID
        scores[missing] = -np.inf
        return pad_result(ids, scores, k)

    def describe(self) -> str:
        return f"IVF-Flat nlist={self.nlist} nprobe={self.nprobe(100)}@k=100"


class FaissIndex(StoreBackedIndex):
    """Exact search while small, then IVF-Flat; rebuilt off the lock as the corpus turns over.

    Memory: the host store keeps a second copy of every vector (the truth rebuilds start from).
    """

    name = "faiss"

    def __init__(
        self,
        dim: int,
        *,
        min_train: int = 50_000,
        scan_factor: float = 64.0,
        min_nprobe: int = 8,
        regrow: float = 4.0,
        retrain_churn: float = 2.0,
        seed: int = 0,
    ) -> None:
        if isinstance(min_train, bool) or not isinstance(min_train, int) or min_train < 1:
            raise ConfigError(f"min_train: expected a positive integer, got {min_train!r}")
        if not scan_factor > 0:
            raise ConfigError(f"scan_factor: expected a positive number, got {scan_factor!r}")
        if isinstance(min_nprobe, bool) or not isinstance(min_nprobe, int) or min_nprobe < 1:
            raise ConfigError(f"min_nprobe: expected a positive integer, got {min_nprobe!r}")
        if not regrow > 1:
            raise ConfigError(f"regrow: expected a factor above 1, got {regrow!r}")
        if not retrain_churn > 0:
            raise ConfigError(f"retrain_churn: expected a positive number, got {retrain_churn!r}")
        self._faiss = import_faiss()
        super().__init__(dim)
        self.min_train = min_train
        self.scan_factor = float(scan_factor)
        self.min_nprobe = min_nprobe
        self.regrow = float(regrow)
        self.retrain_churn = float(retrain_churn)
        self.seed = seed

    def _build(self, ids: Ids, vectors: Vectors) -> Accelerator | None:
        # Hysteresis: IVF from min_train posts on, back to exact only below half of it, so a
        # corpus hovering around min_train does not flip between the two on every write.
        floor = self.min_train if self._accel is None else self.min_train // 2
        if len(ids) < floor:
            return None
        return IvfAccelerator(
            self._faiss,
            ids,
            vectors,
            scan_factor=self.scan_factor,
            min_nprobe=self.min_nprobe,
            seed=self.seed,
        )

    def _rebuild_due(self, accel: Accelerator | None, live: int, built: int, churn: int) -> bool:
        if accel is None:
            return live >= self.min_train
        return (
            live < self.min_train // 2
            or live >= self.regrow * built
            or live * self.regrow <= built
            or churn >= self.retrain_churn * built
        )
