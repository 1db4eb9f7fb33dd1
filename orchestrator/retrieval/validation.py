"""Argument checks shared by every index backend.

Each check returns the argument in the one layout the backends compute on (int64 ids, C-contiguous
float32 rows) or raises `InputError` naming the argument, so a bad call fails the same way on NumPy,
faiss and cuVS instead of deep inside a C++ library.
"""

from __future__ import annotations

import numbers

import numpy as np
import numpy.typing as npt

from phoenix.errors import InputError

Ids = npt.NDArray[np.int64]
Vectors = npt.NDArray[np.float32]


def check_ids(ids: object, name: str = "ids") -> Ids:
    """A 1-D int64 array of post ids. Ids are positive: 0 means "no post" in this project and
    negative ids would collide with the libraries' own "no result" marker (-1)."""
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise InputError(f"{name}: expected a 1-D array of post ids, got shape {arr.shape}")
    if arr.size == 0:
        return np.empty(0, np.int64)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"{name}: expected integer post ids, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.unsignedinteger) and int(arr.max()) > np.iinfo(np.int64).max:
        raise InputError(f"{name}: id {int(arr.max())} does not fit in int64")
    out = arr.astype(np.int64, copy=False)
    bad = out < 1
    if bad.any():
        first = int(out[bad.argmax()])
        why = "0 means 'no post'" if first == 0 else "post ids are positive"
        raise InputError(f"{name}: got id {first}; {why}")
    return out


def check_rows(x: object, dim: int, name: str, rows: int | None = None) -> Vectors:
    """A C-contiguous float32 [N, dim] matrix of finite values. Other float dtypes are converted
    (the towers may hand over float16); integers and booleans are refused as likely mistakes."""
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise InputError(f"{name}: expected a 2-D array [N, {dim}], got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise InputError(f"{name}: expected floating-point values, got dtype {arr.dtype}")
    if arr.shape[1] != dim:
        raise InputError(f"{name}: expected {dim} columns (the index's dim), got {arr.shape[1]}")
    if rows is not None and arr.shape[0] != rows:
        raise InputError(f"{name}: expected {rows} rows (one per id), got {arr.shape[0]}")
    out = np.ascontiguousarray(arr, dtype=np.float32)
    finite = np.isfinite(out).all(axis=1)
    if not finite.all():
        row = int(np.argmin(finite))
        raise InputError(f"{name}: row {row} has NaN or infinite values")
    return out


def check_k(k: object) -> int:
    """A positive integer (bools are refused even though they are ints)."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise InputError(f"k: expected a positive integer, got {k!r}")
    if k < 1:
        raise InputError(f"k: expected a positive integer, got {k}")
    return int(k)


def last_wins(ids: Ids, vectors: Vectors) -> tuple[Ids, Vectors]:
    """Keep the last occurrence of each id in one add() call, as if the rows were added one by one
    (a re-added id replaces its vector)."""
    if len(ids) < 2:
        return ids, vectors
    reversed_ids = ids[::-1]
    _, first_in_reversed = np.unique(reversed_ids, return_index=True)
    if len(first_in_reversed) == len(ids):
        return ids, vectors
    keep = np.sort(len(ids) - 1 - first_in_reversed)
    return ids[keep], vectors[keep]


def as_id(value: object) -> int | None:
    """`value` as a post id for a membership test, or None when it cannot be one."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return None
    return int(value) if value > 0 else None
