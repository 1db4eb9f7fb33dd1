"""The Phoenix ranker and the two retrieval towers in PyTorch: X's architecture.

See docs/FIDELITY.md for where they follow X and where they deliberately do not.
"""

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
