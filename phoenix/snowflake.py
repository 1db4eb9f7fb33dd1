"""Snowflake ids: the creation time lives in the top bits (docs/DESIGN.md §7).

`created_ms = (id >> 22) + TWITTER_EPOCH_MS`; the low 22 bits hold a worker and sequence number.
Post ages (the 48 h retention and filter) are computed from the id alone.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from phoenix.errors import InputError

#: 2010-11-04T01:42:54.657Z, the epoch of Twitter's snowflake ids.
TWITTER_EPOCH_MS = 1288834974657
SEQUENCE_BITS = 22
_MAX_SEQUENCE = (1 << SEQUENCE_BITS) - 1
#: 41 bits of milliseconds after the epoch fit a positive int64 id (until the year 2080).
_MAX_OFFSET_MS = (1 << 41) - 1


def created_ms(ids: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Creation time in Unix milliseconds of each snowflake id."""
    arr = np.asarray(ids, dtype=np.int64)
    return (arr >> SEQUENCE_BITS) + TWITTER_EPOCH_MS


def snowflake_id(
    created_at_ms: npt.ArrayLike, sequence: npt.ArrayLike = 0
) -> npt.NDArray[np.int64]:
    """The id created at `created_at_ms` (Unix ms) with the given low 22 bits."""
    ms = np.asarray(created_at_ms, dtype=np.int64)
    seq = np.asarray(sequence, dtype=np.int64)
    if np.any(ms < TWITTER_EPOCH_MS):
        raise InputError("created_at_ms: before the snowflake epoch (2010-11-04)")
    if np.any(ms - TWITTER_EPOCH_MS > _MAX_OFFSET_MS):
        raise InputError("created_at_ms: beyond the 41-bit snowflake time range (year 2080)")
    if np.any((seq < 0) | (seq > _MAX_SEQUENCE)):
        raise InputError(f"sequence: must be in [0, {_MAX_SEQUENCE}]")
    return ((ms - TWITTER_EPOCH_MS) << SEQUENCE_BITS) | seq


def age_ms(ids: npt.ArrayLike, now_ms: int) -> npt.NDArray[np.int64]:
    """Age of each id at `now_ms`, in milliseconds."""
    return np.int64(now_ms) - created_ms(ids)
