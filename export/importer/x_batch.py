"""X's `RecsysFeaturesBatch` (the golden files' `input/...` arrays) -> the project's inputs.

X packs a post's context into wide columns (`categorical_features` [.., 15], `bool_features`
[.., 3], `int64_features` [.., 13], `continuous_actions` [.., 8]); the project's inputs name the
columns the models read (`export/models/inputs.py`). This is the one place that knows both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from export.models.inputs import CandidateInputs, HistoryInputs, RankerInputs, UserInputs
from phoenix.errors import InputError

#: Columns of X's per-post feature arrays that the models read.
X_TIMEZONE, X_LOCAL_HOUR, X_DAY_OF_WEEK = 5, 6, 7  # categorical_features
X_STALE_14D, X_FOLLOWED_BY_VIEWER, X_FOLLOWING_VIEWER = 0, 1, 2  # bool_features
X_COUNTS = slice(5, 10)  # int64_features: fav, reply, repost, quote, view counts
X_DWELL = 1  # continuous_actions


def _get(batch: Mapping[str, Any], key: str) -> npt.NDArray[Any]:
    try:
        return np.asarray(batch[key])
    except KeyError:
        raise InputError(f"X batch: missing array {key!r}") from None


def _t(a: npt.NDArray[Any], dtype: torch.dtype = torch.int64) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).to(dtype)


def _sequence(batch: Mapping[str, Any], x: str, ours: str) -> dict[str, torch.Tensor]:
    cat = _get(batch, f"{x}/categorical_features")
    flags = _get(batch, f"{x}/bool_features")
    time = np.stack([_get(batch, f"{x}/impr_ts"), _get(batch, f"{x}/post_creation_ts_sec")], -1)
    return {
        f"{ours}_post_hash": _t(_get(batch, f"{x}/post_hashes")),
        f"{ours}_author_hash": _t(_get(batch, f"{x}/auth_hashes")),
        f"{ours}_surface": _t(_get(batch, f"{x}/product_surface")),
        f"{ours}_time": _t(time),
        f"{ours}_context": _t(cat[..., [X_TIMEZONE, X_LOCAL_HOUR, X_DAY_OF_WEEK]]),
        f"{ours}_follow": _t(flags[..., [X_FOLLOWED_BY_VIEWER, X_FOLLOWING_VIEWER]]),
        f"{ours}_counts": _t(_get(batch, f"{x}/int64_features")[..., X_COUNTS]),
        f"{ours}_sids": _t(_get(batch, f"{x}/post_sids").astype(np.int64)),
    }


def ranker_inputs_from_x(batch: Mapping[str, Any], prefix: str = "input/") -> RankerInputs:
    """Convert X's batch arrays (keys as in the golden files, under `prefix`)."""
    b = {k.removeprefix(prefix): v for k, v in batch.items() if k.startswith(prefix)}
    user = UserInputs(
        user_hash=_t(_get(b, "user_hashes")),
        user_ip_hash=_t(_get(b, "user_ip_hashes")),
        user_categorical=_t(_get(b, "user_categorical_features")),
        user_float=_t(_get(b, "user_float_features"), torch.float32),
        user_apps=_t(_get(b, "user_installed_apps_multihot"), torch.float32),
    )
    history = _sequence(b, "history_seq", "history")
    history["history_actions"] = _t(_get(b, "history_seq/actions"), torch.float32)
    history["history_dwell"] = _t(
        _get(b, "history_seq/continuous_actions")[..., X_DWELL], torch.float32
    )
    candidates = _sequence(b, "candidate_seq", "candidate")
    candidates["candidate_stale"] = _t(_get(b, "candidate_seq/bool_features")[..., X_STALE_14D])
    return RankerInputs(user, HistoryInputs(**history), CandidateInputs(**candidates))
