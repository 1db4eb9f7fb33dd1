"""The interface every post index offers, the exact reference backend, and the factory.

Out-of-network retrieval (docs/DESIGN.md §2, §4.6) matches a unit-norm user embedding against the
candidate-tower embedding of every post inside the retention window and keeps the top k by inner
product. Posts arrive one at a time or in small batches and leave when they expire or are deleted,
so the index is mutable; searches run from several request threads at once.

Backends (`make_index`):

    exact   NumPy brute force: the reference, and the right answer for small corpora
    faiss   IVF-Flat on the CPU (exact below 50k posts); see faiss_index.py
    cuvs    brute force, then CAGRA, on a CUDA device; see cuvs_index.py
    torch   exact top-k with PyTorch on a CUDA device, where cuVS is absent; see torch_index.py
    auto    cuvs when it imports and sees a GPU, else torch on a GPU, else faiss when installed,
            else exact

Errors: bad arguments to add/remove/search raise `InputError`; a bad backend name, dimension or
option, or a backend this machine cannot run, raises `ConfigError`; both name the culprit.
"""

from __future__ import annotations

import inspect
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from orchestrator.retrieval.base import StoreBackedIndex
from orchestrator.retrieval.cuvs_index import CuvsIndex, cuvs_unavailable_reason
from orchestrator.retrieval.faiss_index import FaissIndex, faiss_available
from orchestrator.retrieval.torch_index import TorchIndex, torch_unavailable_reason
from phoenix.errors import ConfigError

#: Every backend name `make_index` knows, besides "auto".
BACKENDS = ("exact", "faiss", "cuvs", "torch")


@runtime_checkable
class VectorIndex(Protocol):
    """A mutable top-k inner-product index over post embeddings, safe to use from many threads.

    Ids are positive int64 post ids (0 means "no post"); vectors are float32 [N, dim].
    """

    name: str

    def add(self, ids: npt.ArrayLike, vectors: npt.ArrayLike) -> None:
        """Insert ids [N] with vectors [N, dim]; a present id gets its new vector (the last
        occurrence wins within one call)."""
        ...

    def remove(self, ids: npt.ArrayLike) -> int:
        """Delete these ids; returns how many were present."""
        ...

    def search(
        self, queries: npt.ArrayLike, k: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Per query [Q, dim]: the k best ids int64 [Q, k] and scores float32 [Q, k], best first;
        slots beyond the live posts hold id 0 and score -inf; never a removed id."""
        ...

    def vectors_of(
        self, ids: npt.ArrayLike
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
        """The stored vectors of `ids` (zeros where absent) and which ids were found."""
        ...

    def ids(self) -> npt.NDArray[np.int64]:
        """The live ids, in no particular order."""
        ...

    def __len__(self) -> int: ...

    def __contains__(self, post_id: object) -> bool: ...


class ExactIndex(StoreBackedIndex):
    """Brute force over a dense float32 matrix: one matrix product and an `argpartition` per
    search. The reference the approximate backends are measured against, and fast enough below
    ~50k posts (about 1 ms per query on 2 cores)."""

    name = "exact"


_CLASSES: dict[str, type[StoreBackedIndex]] = {
    "exact": ExactIndex,
    "faiss": FaissIndex,
    "cuvs": CuvsIndex,
    "torch": TorchIndex,
}


def available_backends() -> tuple[str, ...]:
    """The backends this machine can run, in the order `auto` prefers them (best first)."""
    found = ["exact"]
    if faiss_available():
        found.insert(0, "faiss")
    if torch_unavailable_reason("cuda") is None:
        found.insert(0, "torch")
    if cuvs_unavailable_reason() is None:
        found.insert(0, "cuvs")
    return tuple(found)


def resolve_backend(backend: str) -> str:
    """The concrete backend for `backend` ("auto" or a name), refusing unknown names."""
    if backend == "auto":
        return available_backends()[0]
    if backend not in _CLASSES:
        raise ConfigError(
            f"backend: unknown ANN backend {backend!r}; expected auto, {', '.join(BACKENDS)}"
        )
    return backend


def make_index(backend: str = "auto", *, dim: int, **options: object) -> VectorIndex:
    """A new, empty index of `dim`-dimensional vectors.

    `options` are the chosen backend's keyword arguments (e.g. `min_train` for faiss,
    `cagra_min_size` for cuvs); an option the backend does not take is refused. Asking for a
    backend by name that this machine cannot run raises `ConfigError` saying what is missing.
    """
    cls = _CLASSES[resolve_backend(backend)]
    try:
        inspect.signature(cls).bind(dim, **options)
    except TypeError as exc:
        raise ConfigError(f"options: {cls.name} backend: {exc}") from exc
    return cls(dim, **options)
