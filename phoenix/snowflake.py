"""Snowflake ids: the creation time lives in the top bits (docs/DESIGN.md §7).

`created_ms = (id >> 22) + TWITTER_EPOCH_MS`; the low 22 bits hold a worker and sequence number.
Post ages (the 48 h retention and filter) are computed from the id alone.
"""

from __future__ import annotations

import threading

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


#: Bits of the low 22 naming the worker (an orchestrator replica) that made the id; the other 12
#: count the ids the worker made within one millisecond.
WORKER_BITS = 10


class SnowflakeIds:
    """Unique, increasing ids of one worker: its number in the high `worker_bits` of the low 22
    bits, a count that restarts every millisecond below it. Workers with different numbers never
    make the same id; a worker that makes more ids in one millisecond than the count holds dates
    the next ones a millisecond later (an id is never reused, its time runs that much ahead)."""

    def __init__(self, worker: int = 0, worker_bits: int = WORKER_BITS) -> None:
        if not 0 <= worker_bits < SEQUENCE_BITS:
            raise InputError(f"worker_bits: must be in [0, {SEQUENCE_BITS})")
        if not 0 <= worker < 1 << worker_bits:
            raise InputError(f"worker: must be in [0, {(1 << worker_bits) - 1}]")
        self.worker = worker
        self._count_bits = SEQUENCE_BITS - worker_bits
        self._last_ms = -1
        self._count = 0
        self._lock = threading.Lock()

    def next_id(self, now_ms: int) -> int:
        with self._lock:
            ms = max(now_ms, self._last_ms)
            if ms == self._last_ms:
                self._count += 1
                if self._count >> self._count_bits:
                    ms, self._count = ms + 1, 0
            else:
                self._count = 0
            self._last_ms = ms
            return int(snowflake_id(ms, (self.worker << self._count_bits) | self._count))
