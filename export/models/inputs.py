"""Typed model inputs and their validation: X's `RecsysFeaturesBatch`, in the project's names.

Shapes (B = viewers in the batch, S = history length <= config.history_len, C = candidates).
Hash tensors hold rows of the shared embedding table (`phoenix.hashing`), row 0 meaning "nothing
here": a history slot or candidate whose first post row is 0 is padding. History is left-aligned
and oldest first (the newest engagement is the last valid slot), as X's engine fills it.

The viewer (`UserInputs`):
    user_hash              [B, 2]      int   user rows
    user_ip_hash           [B, 2]      int   IP rows (0 = unknown)
    user_categorical       [B, 7]      int   0 language, 1 country, 3 gender, 4 age bracket,
                                             6 inferred gender (X's UserCategoricalFeature)
    user_float             [B, 4]      float 0 longitude, 1 latitude, 2 inferred-gender score,
                                             3 age in years
    user_apps              [B, N_app]  float installed-apps multi-hot (0/1)

A sequence of posts (`HistoryInputs` with prefix `history_`, `CandidateInputs` with `candidate_`):
    *_post_hash            [B, L, 2]   int   post rows
    *_author_hash          [B, L, 2]   int   author rows
    *_surface              [B, L]      int   product surface
    *_time                 [B, L, 2]   int   (impression time, post creation time), Unix seconds;
                                             0 = unknown
    *_context              [B, L, 3]   int   (timezone, local hour, day of week) at the impression
    *_follow               [B, L, 2]   int   (viewer follows the author, author follows the viewer)
    *_counts               [B, L, N_c] int   the post's favorite, reply, repost, quote, view counts
    *_sids                 [B, L, K]   int   semantic-id codes 1..sid_codes per level; 0 = missing
history only:
    history_actions        [B, S, N_a] float multi-hot over X's action columns (0/1)
    history_dwell          [B, S]      float dwell time in seconds
candidates only:
    candidate_stale        [B, C]      int   1 if the post is older than 14 days

Validation runs eagerly and raises `InputError` naming the field; it is skipped while tracing for
export or capturing a CUDA graph, where the shapes are fixed by the wrapper.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

from phoenix.config import ModelConfig
from phoenix.errors import InputError

# Columns of `user_categorical` and `user_float` (X's UserCategoricalFeature and
# UserFloatFeature): defined once, beside the NumPy packing that fills them; re-exported here.
from phoenix.features import (
    NUM_USER_CATEGORICAL as NUM_USER_CATEGORICAL,
)
from phoenix.features import (
    NUM_USER_FLOAT as NUM_USER_FLOAT,
)
from phoenix.features import (
    USER_AGE_BRACKET as USER_AGE_BRACKET,
)
from phoenix.features import (
    USER_AGE_YEARS as USER_AGE_YEARS,
)
from phoenix.features import (
    USER_COUNTRY as USER_COUNTRY,
)
from phoenix.features import (
    USER_GENDER as USER_GENDER,
)
from phoenix.features import (
    USER_INFERRED_GENDER as USER_INFERRED_GENDER,
)
from phoenix.features import (
    USER_INFERRED_GENDER_SCORE as USER_INFERRED_GENDER_SCORE,
)
from phoenix.features import (
    USER_LANGUAGE as USER_LANGUAGE,
)
from phoenix.features import (
    USER_LATITUDE as USER_LATITUDE,
)
from phoenix.features import (
    USER_LONGITUDE as USER_LONGITUDE,
)

INT_DTYPES = (torch.int64, torch.int32)

#: Columns of `*_time`, `*_context` and `*_follow`.
IMPRESSION_TS, CREATION_TS = 0, 1
TIMEZONE, LOCAL_HOUR, DAY_OF_WEEK = 0, 1, 2
FOLLOWED_BY_VIEWER, FOLLOWING_VIEWER = 0, 1

#: The per-post fields shared by history and candidates, without their prefix.
SEQUENCE_FIELDS = (
    "post_hash",
    "author_hash",
    "surface",
    "time",
    "context",
    "follow",
    "counts",
    "sids",
)


def _inputs_cls(cls):  # type: ignore[no-untyped-def]
    """Frozen dataclass whose tensors can be listed and moved together."""
    cls = dataclass(frozen=True)(cls)
    cls.tensors = lambda self: {f.name: getattr(self, f.name) for f in fields(self)}
    return cls


@_inputs_cls
class UserInputs:
    """The viewer: hashed ids and the user-features token's fields."""

    user_hash: Tensor
    user_ip_hash: Tensor
    user_categorical: Tensor
    user_float: Tensor
    user_apps: Tensor

    def validate(self, config: ModelConfig) -> int:
        """Check every field; returns the batch size."""
        check_tensor(self.user_hash, "user_hash", (None, 2), INT_DTYPES)
        b = self.user_hash.shape[0]
        check_tensor(self.user_ip_hash, "user_ip_hash", (b, 2), INT_DTYPES)
        check_tensor(
            self.user_categorical, "user_categorical", (b, NUM_USER_CATEGORICAL), INT_DTYPES
        )
        check_tensor(self.user_float, "user_float", (b, NUM_USER_FLOAT), None)
        check_tensor(self.user_apps, "user_apps", (b, config.num_apps), None)
        check_rows(self.user_hash, "user_hash", config.rows("user"))
        check_rows(self.user_ip_hash, "user_ip_hash", config.rows("ip"))
        check_nonnegative(self.user_categorical, "user_categorical")
        check_float(self.user_float, "user_float")
        age = self.user_float[:, USER_AGE_YEARS]
        if age.numel() and age.min() < 0:  # log1p of an age below -1 is NaN (X does not check)
            raise InputError(f"user_float: age (column {USER_AGE_YEARS}) must be >= 0")
        check_float(self.user_apps, "user_apps")
        check_binary(self.user_apps, "user_apps")
        return b


@_inputs_cls
class HistoryInputs:
    """The viewer's engagement history, oldest first, left-aligned."""

    history_post_hash: Tensor
    history_author_hash: Tensor
    history_surface: Tensor
    history_time: Tensor
    history_context: Tensor
    history_follow: Tensor
    history_counts: Tensor
    history_sids: Tensor
    history_actions: Tensor
    history_dwell: Tensor

    def validate(self, config: ModelConfig, batch: int) -> None:
        check_tensor(self.history_post_hash, "history_post_hash", (batch, None, 2), INT_DTYPES)
        s = self.history_post_hash.shape[1]
        if s > config.history_len:
            raise InputError(
                f"history_post_hash: history length {s} exceeds the config's {config.history_len}"
            )
        check_sequence(self, "history", config, batch, s)
        check_tensor(
            self.history_actions, "history_actions", (batch, s, config.num_action_columns), None
        )
        check_float(self.history_actions, "history_actions")
        check_binary(self.history_actions, "history_actions")
        check_tensor(self.history_dwell, "history_dwell", (batch, s), None)
        check_float(self.history_dwell, "history_dwell")
        check_nonnegative(self.history_dwell, "history_dwell")


@_inputs_cls
class CandidateInputs:
    """The posts to score for each viewer."""

    candidate_post_hash: Tensor
    candidate_author_hash: Tensor
    candidate_surface: Tensor
    candidate_time: Tensor
    candidate_context: Tensor
    candidate_follow: Tensor
    candidate_counts: Tensor
    candidate_sids: Tensor
    candidate_stale: Tensor

    def validate(self, config: ModelConfig, batch: int) -> None:
        check_tensor(self.candidate_post_hash, "candidate_post_hash", (batch, None, 2), INT_DTYPES)
        c = self.candidate_post_hash.shape[1]
        if c > config.max_candidates:
            raise InputError(
                f"candidate_post_hash: {c} candidates exceed max_candidates={config.max_candidates}"
            )
        check_sequence(self, "candidate", config, batch, c)
        check_tensor(self.candidate_stale, "candidate_stale", (batch, c), INT_DTYPES)
        check_binary(self.candidate_stale, "candidate_stale")


@dataclass(frozen=True)
class ViewerInputs:
    """What the user tower reads: the viewer and the history."""

    user: UserInputs
    history: HistoryInputs

    def validate(self, config: ModelConfig) -> None:
        if is_building_graph():
            return
        self.history.validate(config, self.user.validate(config))

    def to(self, device: torch.device | str) -> ViewerInputs:
        return ViewerInputs(_move(self.user, device), _move(self.history, device))


@dataclass(frozen=True)
class RankerInputs:
    """A viewer's features and history plus the candidates to score, batched over viewers."""

    user: UserInputs
    history: HistoryInputs
    candidates: CandidateInputs

    def validate(self, config: ModelConfig) -> None:
        if is_building_graph():
            return
        b = self.user.validate(config)
        self.history.validate(config, b)
        self.candidates.validate(config, b)

    @property
    def viewer(self) -> ViewerInputs:
        return ViewerInputs(self.user, self.history)

    def to(self, device: torch.device | str) -> RankerInputs:
        return RankerInputs(
            _move(self.user, device), _move(self.history, device), _move(self.candidates, device)
        )

    def tensors(self) -> dict[str, Tensor]:
        return self.user.tensors() | self.history.tensors() | self.candidates.tensors()

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor]) -> RankerInputs:
        """Build from a flat name -> tensor mapping (the Triton / ONNX tensor names)."""
        return cls(
            UserInputs(**_pick(tensors, UserInputs)),
            HistoryInputs(**_pick(tensors, HistoryInputs)),
            CandidateInputs(**_pick(tensors, CandidateInputs)),
        )


def viewer_from_tensors(tensors: dict[str, Tensor]) -> ViewerInputs:
    return ViewerInputs(
        UserInputs(**_pick(tensors, UserInputs)), HistoryInputs(**_pick(tensors, HistoryInputs))
    )


def input_names(cls: type) -> tuple[str, ...]:
    """The tensor names of one inputs class, in declaration order."""
    return tuple(f.name for f in fields(cls))


def _pick(tensors: dict[str, Tensor], cls: type) -> dict[str, Tensor]:
    names = input_names(cls)
    missing = [n for n in names if n not in tensors]
    if missing:
        raise InputError(f"missing inputs: {', '.join(missing)}")
    return {n: tensors[n] for n in names}


def _move(obj, device):  # type: ignore[no-untyped-def]
    return type(obj)(**{f.name: getattr(obj, f.name).to(device) for f in fields(obj)})


def check_sequence(obj: object, prefix: str, config: ModelConfig, b: int, n: int) -> None:
    """The per-post fields shared by history and candidates."""

    def get(name: str) -> Tensor:
        return getattr(obj, f"{prefix}_{name}")

    shapes: dict[str, tuple[int | None, ...]] = {
        "author_hash": (b, n, 2),
        "surface": (b, n),
        "time": (b, n, 2),
        "context": (b, n, 3),
        "follow": (b, n, 2),
        "counts": (b, n, config.num_counts),
        "sids": (b, n, config.sid_levels),
    }
    for name, shape in shapes.items():
        check_tensor(get(name), f"{prefix}_{name}", shape, INT_DTYPES)
    check_rows(get("post_hash"), f"{prefix}_post_hash", config.rows("post"))
    check_rows(get("author_hash"), f"{prefix}_author_hash", config.rows("author"))
    for name in ("surface", "time", "context", "follow", "counts"):
        check_nonnegative(get(name), f"{prefix}_{name}")
    check_binary(get("follow"), f"{prefix}_follow")
    check_range(get("sids"), f"{prefix}_sids", config.sid_codes + 1)


def is_building_graph() -> bool:
    """True while the forward is traced, exported, compiled or captured into a CUDA graph.

    The checks read tensor values (a device-to-host sync), which a traced graph cannot hold and a
    CUDA-graph capture forbids; the served shapes and values are checked before they get there.
    """
    return (
        torch.jit.is_tracing()
        or torch.onnx.is_in_onnx_export()
        or torch.compiler.is_compiling()
        or (torch.cuda.is_available() and torch.cuda.is_current_stream_capturing())
    )


def check_tensor(
    t: object,
    name: str,
    shape: tuple[int | None, ...],
    dtypes: tuple[torch.dtype, ...] | None,
) -> None:
    if not isinstance(t, Tensor):
        raise InputError(f"{name}: expected a tensor, got {type(t).__name__}")
    if t.dim() != len(shape) or any(
        want is not None and got != want for got, want in zip(t.shape, shape, strict=True)
    ):
        want_str = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
        raise InputError(f"{name}: expected shape {want_str}, got {list(t.shape)}")
    if dtypes is not None and t.dtype not in dtypes:
        raise InputError(f"{name}: expected an integer tensor (int64), got {t.dtype}")


def check_rows(t: Tensor, name: str, rows: range) -> None:
    """Non-zero rows must fall inside the entity's block (`ModelConfig.rows`)."""
    if t.numel() == 0:
        return
    nonzero = t[t != 0]
    if not nonzero.numel():
        return
    if not rows:
        raise InputError(f"{name}: this model has no rows for it; send zeros")
    if nonzero.min() < rows.start or nonzero.max() >= rows.stop:
        raise InputError(
            f"{name}: rows must be 0 (padding) or in [{rows.start}, {rows.stop - 1}], "
            f"got values in [{int(nonzero.min())}, {int(nonzero.max())}]"
        )


def check_range(t: Tensor, name: str, upper: int) -> None:
    if t.numel() and (t.min() < 0 or t.max() >= upper):
        raise InputError(
            f"{name}: values must be in [0, {upper}), got [{int(t.min())}, {int(t.max())}]"
        )


def check_nonnegative(t: Tensor, name: str) -> None:
    if t.numel() and t.min() < 0:
        raise InputError(f"{name}: values must be >= 0, got {t.min().item()}")


def check_float(t: Tensor, name: str) -> None:
    if not torch.is_floating_point(t):
        raise InputError(f"{name}: expected a float tensor, got {t.dtype}")
    if t.numel() and not bool(torch.isfinite(t).all()):
        raise InputError(f"{name}: values must be finite")


def check_binary(t: Tensor, name: str) -> None:
    if t.numel() and bool(((t != 0) & (t != 1)).any()):
        raise InputError(f"{name}: values must be 0 or 1")
