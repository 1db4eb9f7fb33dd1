"""The cuVS backend: GPU brute force for small corpora, a CAGRA graph for large ones.

Needs the `cuvs` package (RAPIDS cuVS Python API), CuPy and a CUDA device. This module imports
without them; `CuvsIndex(...)` raises `ConfigError` naming what is missing.

Layout on the device, chosen by corpus size at each (re)build:

- below `cagra_min_size` live posts: a device mirror of the corpus (a `DenseStore` on CuPy, rows
  swapped in place on removal) and `cuvs.neighbors.brute_force` over its live rows, rebuilt after
  every write (no training: it is a copy and, at most, a norm per row);
- from `cagra_min_size` on: a CAGRA graph over a device snapshot. CAGRA cannot delete, so
  * removed or replaced rows become tombstones: cleared bits of a device bitset handed to
    `cagra.search` as a filter (and checked again on the host, so a removed id is never returned
    even by a cuVS without working filters);
  * posts added since the build go to a side buffer, an exact `DenseStore` on the device whose
    hits are merged with the graph's;
  * the graph is rebuilt off the lock (base.py) once the side buffer passes `side_limit`,
    tombstones pass `tombstone_fraction` of the graph, or the corpus falls to half of
    `cagra_min_size` (back to brute force).

Scores: the rows a search returns are re-scored on the device with exact inner products (a gather of
k rows per query). The returned scores are then exact, and do not depend on how a given cuVS version
reports inner-product distances; cuVS releases whose CAGRA Python API has no metric argument build
it over L2, which on the unit-norm candidate-tower outputs (docs/DESIGN.md §4.6) orders posts
exactly as the inner product does.
"""

from __future__ import annotations

import functools
import threading
import warnings
from types import ModuleType
from typing import Any

import numpy as np

from orchestrator.retrieval.base import Accelerator, StoreBackedIndex
from orchestrator.retrieval.dense import (
    PAD_ID,
    DenseStore,
    Result,
    empty_result,
    merge_results,
    to_host,
)
from orchestrator.retrieval.validation import Ids, Vectors
from phoenix.errors import ConfigError


@functools.lru_cache(maxsize=1)
def cuvs_unavailable_reason() -> str | None:
    """None when cuVS, CuPy and a CUDA device are all usable, else what is missing."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import cuvs  # noqa: F401
            from cuvs.neighbors import brute_force, cagra  # noqa: F401
    except Exception as exc:  # ImportError, or OSError/RuntimeError from missing CUDA libraries
        return f"the cuvs package cannot be imported ({exc}); install cuvs-cu12 on a CUDA host"
    try:
        import cupy
    except Exception as exc:
        return f"cupy cannot be imported ({exc}); install cupy-cuda12x"
    try:
        devices = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # cupy raises CUDARuntimeError without a driver
        return f"no usable CUDA device ({exc})"
    return None if devices > 0 else "no CUDA device"


def cuvs_available() -> bool:
    return cuvs_unavailable_reason() is None


class _Gpu:
    """The device-side modules, imported once per index, and one cuVS resource handle per
    thread (searches run from several request threads; a handle owns a CUDA stream)."""

    def __init__(self) -> None:
        import cupy
        from cuvs.common import Resources
        from cuvs.neighbors import brute_force, cagra, filters

        self.cp: ModuleType = cupy
        self.brute_force = brute_force
        self.cagra = cagra
        self.filters = filters
        self._resources_cls = Resources
        self._local = threading.local()

    def resources(self) -> Any:
        res = getattr(self._local, "resources", None)
        if res is None:
            res = self._local.resources = self._resources_cls()
        return res

    def sync_writes(self) -> None:
        """Finish CuPy's queued writes before cuVS (on its own stream) reads the arrays."""
        self.cp.cuda.get_current_stream().synchronize()


def _rescore(
    gpu: _Gpu, queries: Any, matrix: Any, row_ids: Ids, rows: Any, alive: np.ndarray | None
) -> Result:
    """(ids, exact inner products) for the rows a cuVS search returned; invalid slots (out of
    range, or tombstoned when `alive` is given) become padding."""
    cp = gpu.cp
    rows = cp.asarray(rows).astype(cp.int64)
    n = matrix.shape[0]
    valid = (rows >= 0) & (rows < n)
    safe = cp.where(valid, rows, 0)
    scores = cp.matmul(matrix[safe], queries[:, :, None])[:, :, 0]  # [Q, k, D] @ [Q, D, 1]
    safe_h, valid_h, scores_h = to_host(safe), to_host(valid), to_host(scores)
    if alive is not None:
        valid_h &= alive[safe_h]
    ids = row_ids[safe_h]
    ids[~valid_h] = PAD_ID
    scores_h[~valid_h] = -np.inf
    return ids, scores_h.astype(np.float32, copy=False)


class _BruteForce:
    """A device mirror of the whole corpus, searched by cuVS brute force."""

    def __init__(self, gpu: _Gpu, ids: Ids, vectors: Vectors) -> None:
        self._gpu = gpu
        self._mirror = DenseStore(vectors.shape[1], xp=gpu.cp)
        self._mirror.add(ids, vectors)
        self._index: Any = None
        self._refresh()

    def _refresh(self) -> None:
        self._gpu.sync_writes()
        self._index = None
        if len(self._mirror):
            res = self._gpu.resources()
            self._index = self._gpu.brute_force.build(
                self._mirror.vectors(), metric="inner_product", resources=res
            )
            res.sync()

    def add(self, ids: Ids, vectors: Vectors) -> None:
        self._mirror.add(ids, vectors)
        self._refresh()

    def remove(self, ids: Ids) -> None:
        self._mirror.remove(ids)
        self._refresh()

    def search(self, queries: Vectors, k: int) -> Result:
        n = len(self._mirror)
        if not n:
            return empty_result(len(queries), k)
        q = self._gpu.cp.asarray(queries)
        res = self._gpu.resources()
        _, rows = self._gpu.brute_force.search(self._index, q, min(k, n), resources=res)
        res.sync()
        live = self._mirror.vectors()
        found = _rescore(self._gpu, q, live, self._mirror.id_view(), rows, None)
        return merge_results([found], k)

    def describe(self) -> str:
        return "cuVS brute force"


class _Cagra:
    """A CAGRA graph over a snapshot, plus tombstones and an exact side buffer for new posts."""

    def __init__(
        self, gpu: _Gpu, ids: Ids, vectors: Vectors, *, index_params: dict, itopk_size: int
    ) -> None:
        self._gpu = gpu
        cp = gpu.cp
        self._matrix = cp.asarray(vectors)  # [N, D] device snapshot, kept for re-scoring
        self._row_ids = ids.copy()
        order = np.argsort(ids, kind="stable")
        self._sorted_ids, self._sorted_rows = ids[order], order
        self._alive = np.ones(len(ids), bool)
        self._dead = 0
        self._filter: Any = None
        self._itopk_size = itopk_size
        self.side = DenseStore(vectors.shape[1], xp=cp)
        res = gpu.resources()
        params = gpu.cagra.IndexParams(metric="inner_product", **index_params)
        self._graph = gpu.cagra.build(params, self._matrix, resources=res)
        res.sync()

    @property
    def graph_size(self) -> int:
        return len(self._row_ids)

    @property
    def dead(self) -> int:
        return self._dead

    def add(self, ids: Ids, vectors: Vectors) -> None:
        self._kill(ids)  # a re-added post's old graph row must not come back
        self.side.add(ids, vectors)
        self._gpu.sync_writes()

    def remove(self, ids: Ids) -> None:
        self.side.remove(ids)
        self._kill(ids)
        self._gpu.sync_writes()

    def _kill(self, ids: Ids) -> None:
        pos = np.searchsorted(self._sorted_ids, ids)
        pos = np.minimum(pos, len(self._sorted_ids) - 1)
        hit = self._sorted_ids[pos] == ids
        rows = self._sorted_rows[pos[hit]]
        rows = rows[self._alive[rows]]
        if not len(rows):
            return
        self._alive[rows] = False
        self._dead += len(rows)
        # Bit i of 32-bit word i // 32 set = row i may be returned (cuVS bitset layout).
        padded = np.zeros(-(-len(self._alive) // 32) * 32, bool)
        padded[: len(self._alive)] = self._alive
        bitset = self._gpu.cp.asarray(np.packbits(padded, bitorder="little").view(np.uint32))
        self._filter = self._gpu.filters.from_bitset(bitset)

    def search(self, queries: Vectors, k: int) -> Result:
        gpu = self._gpu
        q = gpu.cp.asarray(queries)
        parts = []
        alive = self.graph_size - self._dead
        if alive:
            kk = min(k, alive)
            params = gpu.cagra.SearchParams(itopk_size=max(self._itopk_size, -(-kk // 32) * 32))
            extra = {"filter": self._filter} if self._dead else {}
            res = gpu.resources()
            _, rows = gpu.cagra.search(params, self._graph, q, kk, resources=res, **extra)
            res.sync()
            parts.append(_rescore(gpu, q, self._matrix, self._row_ids, rows, self._alive))
        if len(self.side):
            parts.append(self.side.search(q, k))
        return merge_results(parts, k) if parts else empty_result(len(queries), k)

    def describe(self) -> str:
        return (
            f"CAGRA itopk={self._itopk_size} over {self.graph_size} "
            f"(+{len(self.side)} side, {self._dead} tombstones)"
        )


class CuvsIndex(StoreBackedIndex):
    """GPU retrieval: brute force below `cagra_min_size` posts, CAGRA above, rebuilt off the lock.

    `graph_degree`, `intermediate_graph_degree` and `build_algo` go to `cagra.IndexParams`
    (None: cuVS's default); `itopk_size` (at least k, rounded up to 32) trades recall for speed.
    """

    name = "cuvs"

    def __init__(
        self,
        dim: int,
        *,
        cagra_min_size: int = 500_000,
        graph_degree: int | None = None,
        intermediate_graph_degree: int | None = None,
        build_algo: str | None = None,
        itopk_size: int = 128,
        side_limit: int = 65_536,
        tombstone_fraction: float = 0.1,
    ) -> None:
        for option, value in (
            ("cagra_min_size", cagra_min_size),
            ("itopk_size", itopk_size),
            ("side_limit", side_limit),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{option}: expected a positive integer, got {value!r}")
        if not 0 < tombstone_fraction < 1:
            raise ConfigError(
                f"tombstone_fraction: expected a fraction in (0, 1), got {tombstone_fraction!r}"
            )
        reason = cuvs_unavailable_reason()
        if reason is not None:
            raise ConfigError(f"cuvs backend: {reason}")
        super().__init__(dim)
        self._gpu = _Gpu()
        self.cagra_min_size = cagra_min_size
        self.itopk_size = itopk_size
        self.side_limit = side_limit
        self.tombstone_fraction = float(tombstone_fraction)
        self._index_params = {
            name: value
            for name, value in (
                ("graph_degree", graph_degree),
                ("intermediate_graph_degree", intermediate_graph_degree),
                ("build_algo", build_algo),
            )
            if value is not None
        }

    def _build(self, ids: Ids, vectors: Vectors) -> Accelerator | None:
        if not len(ids):
            return None
        if len(ids) < self.cagra_min_size:
            return _BruteForce(self._gpu, ids, vectors)
        return _Cagra(
            self._gpu, ids, vectors, index_params=self._index_params, itopk_size=self.itopk_size
        )

    def _rebuild_due(self, accel: Accelerator | None, live: int, built: int, churn: int) -> bool:
        if accel is None:
            return live > 0
        if isinstance(accel, _BruteForce):
            return live >= self.cagra_min_size
        if not isinstance(accel, _Cagra):
            return False
        return (
            len(accel.side) > self.side_limit
            or accel.dead > self.tombstone_fraction * accel.graph_size
            or live < self.cagra_min_size // 2
        )
