"""Hashing 64-bit ids to rows of the shared embedding table (docs/DESIGN.md §4.1).

Each entity kind (user, post, author, IP address) has two hash functions into its own block of
the table:

    h_j(id) = 0                                              if id == 0
            = ((id * s_j + b_j) mod M) mod (N - 1) + 1 + offset   otherwise

with 64-bit two's-complement wrap-around on the arithmetic and a non-negative `mod M`. The
orchestrator hashes (cheap NumPy); the models only ever see row indices.

`HashLayout` is the layout of X's trainer and serving engine (xai-org/x-algorithm: `HashTable` in
`phoenix/xrex/models/recsys_embedding.py`, `HashTableConfig` in the Rust `xai-recsys` crate): row 0
is padding, rows 1..64 are reserved, and the blocks of N rows each start at offsets 65 (users),
65 + N_user (posts), then authors, then IP addresses. A block of 0 rows is X's way of turning an
entity off: users then all hash to row 1 (first function) and 0 (second), IP addresses to 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np
import numpy.typing as npt

from phoenix.config import ModelConfig
from phoenix.errors import ConfigError, InputError


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

#: X's first block offset: row 0 is padding and rows 1..64 are reserved.
X_FIRST_OFFSET = 1 + 64


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


@dataclass(frozen=True)
class HashLayout:
    """X's table layout: the rows of each entity's block, with offsets derived as X derives them.

    `item_hash_rows` is X's `item_hash_vocab_size`: when non-zero, posts hash into that many rows
    instead of `item_rows`, while the author block still starts `item_rows` after the post block
    (X's two-tower model sets `item_rows` to 0, so post and author rows overlap there; it only
    uses post rows as a mask and a semantic-ID hash level, never to look up the table).
    """

    user_rows: int
    item_rows: int
    author_rows: int
    ip_rows: int = 0
    item_hash_rows: int = 0

    def __post_init__(self) -> None:
        for name in ("user_rows", "item_rows", "author_rows", "ip_rows", "item_hash_rows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ConfigError(f"{name} must be a non-negative integer, got {value!r}")
            object.__setattr__(self, name, int(value))  # NumPy integers from array shapes
        for name in ("user_rows", "ip_rows", "item_hash_rows"):
            if getattr(self, name) == 1:
                raise ConfigError(f"{name} must be 0 (off) or at least 2, got 1")
        if self.item_buckets < 2:
            raise ConfigError(
                f"posts need at least 2 rows: item_rows={self.item_rows}, "
                f"item_hash_rows={self.item_hash_rows}"
            )
        if self.author_rows < 2:
            raise ConfigError(f"author_rows must be at least 2, got {self.author_rows}")

    @property
    def item_buckets(self) -> int:
        """Rows posts hash into."""
        return self.item_hash_rows or self.item_rows

    @property
    def user_offset(self) -> int:
        return X_FIRST_OFFSET

    @property
    def item_offset(self) -> int:
        return self.user_offset + self.user_rows

    @property
    def author_offset(self) -> int:
        return self.item_offset + self.item_rows

    @property
    def ip_offset(self) -> int:
        return self.author_offset + self.author_rows

    def rows(self, entity: Entity | str) -> range:
        """The table rows that non-zero ids of `entity` can hash to."""
        buckets, offset = self._block(Entity(entity))
        if buckets == 0:
            return range(1, 2) if Entity(entity) is Entity.USER else range(0)
        return range(offset + 1, offset + buckets)

    def _block(self, entity: Entity) -> tuple[int, int]:
        return {
            Entity.USER: (self.user_rows, self.user_offset),
            Entity.POST: (self.item_buckets, self.item_offset),
            Entity.AUTHOR: (self.author_rows, self.author_offset),
            Entity.IP: (self.ip_rows, self.ip_offset),
        }[entity]


class IdHasher:
    """Hashes users, posts, authors and IP addresses into X's table layout.

    Given a `ModelConfig`, the layout is the config's (`ModelConfig.hash_layout`), and `config`
    stays available to callers that size features from it.
    """

    def __init__(self, layout: HashLayout | ModelConfig) -> None:
        #: The model config hashed for, when given one (callers read its history length).
        self.config: ModelConfig | None = None
        if not isinstance(layout, HashLayout):
            self.config = layout
            layout = layout.hash_layout
        self.layout = layout
        self.blocks = {e: layout._block(e) for e in Entity}

    def _hash(self, ids: npt.ArrayLike, entity: Entity) -> npt.NDArray[np.int64]:
        buckets, offset = self.blocks[entity]
        if buckets:
            return hash_rows(ids, entity, buckets, offset)
        # X's rule for an entity without a block: users keep a "present" bit, IPs vanish.
        present = _as_id_array(ids) != 0
        out = np.zeros((*present.shape, 2), dtype=np.int64)
        if entity is Entity.USER:
            out[..., 0] = present
        return out

    def users(self, ids: npt.ArrayLike) -> npt.NDArray[np.int64]:
        return self._hash(ids, Entity.USER)

    def posts(self, ids: npt.ArrayLike) -> npt.NDArray[np.int64]:
        return self._hash(ids, Entity.POST)

    def authors(self, ids: npt.ArrayLike) -> npt.NDArray[np.int64]:
        return self._hash(ids, Entity.AUTHOR)

    def ips(self, ids: npt.ArrayLike) -> npt.NDArray[np.int64]:
        return self._hash(ids, Entity.IP)
