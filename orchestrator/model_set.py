"""The model set a feed runs on: one export's three models in Triton (a client pinned to their
version) and the post index that export's candidate tower embedded.

A feed takes the current set once, at its start (`FeedQuery.models`), and every stage that calls
a model or searches the index reads it from there: user tower, index and ranker of one feed are
always of one export, even when the service switches to a newer set meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.post_index import PostIndex
from orchestrator.triton_client import PhoenixTriton
from phoenix.errors import TritonUnavailable

#: Why a feed is degraded before the first model set is ready.
NOT_READY = "Triton has not answered since start"


class ModelSetNotReady(TritonUnavailable):
    """No model set yet: Triton has not answered since start, or the first post index is being
    built. The feed is answered from the in-network posts, in recency order."""

    def __init__(self) -> None:
        super().__init__(NOT_READY)


@dataclass(frozen=True)
class ModelSet:
    """A client pinned to one model set and the post index built with its candidate tower."""

    models: PhoenixTriton
    index: PostIndex

    @property
    def version(self) -> str:
        """The set's version as feeds report it ('latest' for an unversioned repository)."""
        return self.models.served.version or "latest"
