"""Model features from ids: the one place that turns a viewer's history and candidate posts into
the arrays the ranker and towers take (names match `export.models.inputs` and the Triton tensors).

Callers arrange ids into fixed-size matrices, newest engagement first, with 0 meaning "nothing
here"; hashing maps id 0 to row 0, which the models treat as padding. NumPy only: the orchestrator
uses this without PyTorch.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from phoenix.errors import InputError
from phoenix.hashing import IdHasher

Arrays = dict[str, npt.NDArray]


def pack_history(
    hasher: IdHasher,
    user_ids: npt.ArrayLike,
    post_ids: npt.ArrayLike,
    author_ids: npt.ArrayLike,
    actions: npt.ArrayLike,
    surfaces: npt.ArrayLike,
) -> Arrays:
    """Viewer features for B viewers with S history slots each.

    user_ids [B]; post_ids, author_ids, surfaces [B, S]; actions [B, S, A] multi-hot (bool or 0/1).
    Slots whose post id is 0 are padding: their author, actions and surface are zeroed.
    """
    post_ids = np.asarray(post_ids, dtype=np.int64)
    author_ids = np.asarray(author_ids, dtype=np.int64)
    actions = np.asarray(actions)
    surfaces = np.asarray(surfaces, dtype=np.int64)
    if post_ids.ndim != 2:
        raise InputError(f"post_ids: expected shape [B, S], got {list(post_ids.shape)}")
    for name, arr in (("author_ids", author_ids), ("surfaces", surfaces)):
        if arr.shape != post_ids.shape:
            raise InputError(
                f"{name}: expected shape {list(post_ids.shape)}, got {list(arr.shape)}"
            )
    if actions.shape != (*post_ids.shape, hasher.config.num_actions):
        raise InputError(
            f"actions: expected shape {[*post_ids.shape, hasher.config.num_actions]}, "
            f"got {list(actions.shape)}"
        )
    pad = post_ids == 0
    return {
        "user_hash": hasher.users(np.asarray(user_ids, dtype=np.int64)),
        "history_post_hash": hasher.posts(post_ids),
        "history_author_hash": hasher.authors(np.where(pad, 0, author_ids)),
        "history_actions": np.where(pad[..., None], 0, actions).astype(np.float32),
        "history_surface": np.where(pad, 0, surfaces),
    }


def pack_candidates(
    hasher: IdHasher, post_ids: npt.ArrayLike, author_ids: npt.ArrayLike, surfaces: npt.ArrayLike
) -> Arrays:
    """Candidate features, any leading shape ([C] for one viewer, [B, C] for a batch)."""
    post_ids = np.asarray(post_ids, dtype=np.int64)
    author_ids = np.asarray(author_ids, dtype=np.int64)
    surfaces = np.asarray(surfaces, dtype=np.int64)
    for name, arr in (("author_ids", author_ids), ("surfaces", surfaces)):
        if arr.shape != post_ids.shape:
            raise InputError(
                f"{name}: expected shape {list(post_ids.shape)}, got {list(arr.shape)}"
            )
    pad = post_ids == 0
    return {
        "candidate_post_hash": hasher.posts(post_ids),
        "candidate_author_hash": hasher.authors(np.where(pad, 0, author_ids)),
        "candidate_surface": np.where(pad, 0, surfaces),
    }
