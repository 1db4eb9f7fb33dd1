"""The Phoenix ranker and the two retrieval towers in PyTorch (DESIGN.md 4)."""

from export.models.inputs import CandidateInputs, HistoryInputs, RankerInputs
from export.models.ranker import PhoenixRanker, RankerOutput
from export.models.towers import RetrievalModel

__all__ = [
    "CandidateInputs",
    "HistoryInputs",
    "PhoenixRanker",
    "RankerInputs",
    "RankerOutput",
    "RetrievalModel",
]
