"""Out-of-network retrieval: the index of candidate-tower post embeddings that a user embedding is
matched against (docs/DESIGN.md §2, §4.6), behind one `VectorIndex` interface with four backends
(exact NumPy, faiss IVF-Flat on the CPU, cuVS on a GPU, PyTorch exact on a GPU without cuVS).
`make_index("auto", dim=...)` picks the best this machine can run."""

from orchestrator.retrieval.cuvs_index import CuvsIndex, cuvs_available
from orchestrator.retrieval.faiss_index import FaissIndex, faiss_available
from orchestrator.retrieval.index import (
    BACKENDS,
    ExactIndex,
    VectorIndex,
    available_backends,
    make_index,
    resolve_backend,
)
from orchestrator.retrieval.torch_index import TorchIndex, torch_unavailable_reason

__all__ = [
    "BACKENDS",
    "CuvsIndex",
    "ExactIndex",
    "FaissIndex",
    "TorchIndex",
    "VectorIndex",
    "available_backends",
    "cuvs_available",
    "faiss_available",
    "make_index",
    "resolve_backend",
    "torch_unavailable_reason",
]
