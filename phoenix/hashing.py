"""Hashing 64-bit ids to rows of the shared embedding table (DESIGN.md 4.1).

Each entity kind (user, post, author, IP address) has two hash functions into its own block of
the table:

    h_j(id) = 0                                              if id == 0
            = ((id * s_j + b_j) mod M) mod (N - 1) + 1 + offset   otherwise

with 64-bit two's-complement wrap-around on the arithmetic and a non-negative `mod M`. The
orchestrator hashes (cheap NumPy); the models only ever see row indices.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np
import numpy.typing as npt

from phoenix.config import ModelConfig
from phoenix.errors import InputError


class Entity(str, Enum):
    USER = "user"
    POST = "post"
    AUTHOR = "author"
    IP = "ip"


@dataclass(frozen=True)
class HashParams:
    """Scales, biases and modulus of the two hash functions of one entity kind."""

    scales: tuple[int, int]
    biases: tuple[int, int]
    modulus: int


#: The August 2026 release's parameters.
HASH_PARAMS: dict[Entity, HashParams] = {
    Entity.USER: HashParams((196742702, 1852108266), (1935840681, 167407236), 2859568897),
    Entity.POST: HashParams((2161410491, 1754358832), (1935840681, 167407236), 2361375383),
    Entity.AUTHOR: HashParams((371965780, 328930218), (139686260, 37755056), 631860353),
    Entity.IP: HashParams((529482163, 1327604891), (742961053, 318205477), 1073741789),
}


def _as_id_array(ids: npt.ArrayLike) -> npt.NDArray[np.int64]:
    arr = np.asarray(ids)
    if arr.dtype == np.uint64:
        return arr.view(np.int64)
    if arr.dtype == object:  # Python ints beyond int64 range
        raise InputError("ids must fit in 64 bits (int64 or uint64)")
    if not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"ids must be integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def hash_rows(
    ids: npt.ArrayLike, entity: Entity, num_rows: int, offset: int
) -> npt.NDArray[np.int64]:
    """Rows of `ids` under both hash functions: shape `ids.shape + (2,)`, 0 where id == 0."""
    if num_rows < 2:
        raise InputError(f"num_rows must be at least 2, got {num_rows}")
    params = HASH_PARAMS[Entity(entity)]
    as_unsigned = _as_id_array(ids).view(np.uint64)
    out = np.empty((*as_unsigned.shape, 2), dtype=np.int64)
    for j in range(2):
        # uint64 arithmetic wraps modulo 2**64; viewing the bits as int64 gives the signed wrapped
        # value, and np.mod with a positive divisor is non-negative. The wrap-around is intended:
        # silence the overflow warning NumPy's scalar arithmetic gives for 0-d (single id) inputs.
        with np.errstate(over="ignore"):
            mixed = as_unsigned * np.uint64(params.scales[j]) + np.uint64(params.biases[j])
        mixed = np.asarray(mixed).view(np.int64)
        out[..., j] = np.mod(mixed, np.int64(params.modulus)) % (num_rows - 1) + 1 + offset
    out[as_unsigned == 0] = 0
    return out


class IdHasher:
    """Hashes users, posts, authors and IPs into the table laid out by one `ModelConfig`."""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config

    def users(self, ids: npt.ArrayLike) -> npt.NDArray[np.int64]:
        return hash_rows(ids, Entity.USER, self.config.num_user_rows, self.config.user_offset)

    def posts(self, ids: npt.ArrayLike) -> npt.NDArray[np.int64]:
        return hash_rows(ids, Entity.POST, self.config.num_post_rows, self.config.post_offset)

    def authors(self, ids: npt.ArrayLike) -> npt.NDArray[np.int64]:
        return hash_rows(ids, Entity.AUTHOR, self.config.num_author_rows, self.config.author_offset)

    def ips(self, ids: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """IP rows; all zero when the config has no IP block (X's rule for an entity turned off)."""
        if not self.config.num_ip_rows:
            return np.zeros((*np.shape(_as_id_array(ids)), 2), dtype=np.int64)
        return hash_rows(ids, Entity.IP, self.config.num_ip_rows, self.config.ip_offset)
