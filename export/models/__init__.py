"""The Phoenix ranker and the two retrieval towers in PyTorch: X's architecture (docs/FIDELITY.md)."""

from export.models.inputs import (
    CandidateInputs,
    HistoryInputs,
    RankerInputs,
    UserInputs,
    ViewerInputs,
)
from export.models.ranker import PhoenixRanker, RankerOutput
from export.models.towers import RetrievalModel

__all__ = [
    "CandidateInputs",
    "HistoryInputs",
    "PhoenixRanker",
    "RankerInputs",
    "RankerOutput",
    "RetrievalModel",
    "UserInputs",
    "ViewerInputs",
]
