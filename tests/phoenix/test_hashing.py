"""`phoenix.hashing` against the formula of docs/DESIGN.md §4.1, evaluated here with Python ints,
and against the hashes X's own code computed for the ids of its golden batches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from phoenix.config import PRESETS
from phoenix.errors import ConfigError, InputError
from phoenix.hashing import Entity, HashLayout, IdHasher, hash_rows

X_REFERENCE = Path(__file__).parents[1] / "data" / "x_reference"

# docs/DESIGN.md §4.1, copied by hand: (s_1, s_2), (b_1, b_2), M.
DESIGN_PARAMS = {
    Entity.USER: ((196742702, 1852108266), (1935840681, 167407236), 2859568897),
    Entity.POST: ((2161410491, 1754358832), (1935840681, 167407236), 2361375383),
    Entity.AUTHOR: ((371965780, 328930218), (139686260, 37755056), 631860353),
    # X's HashKeys (phoenix/xrex/models/recsys_embedding.py), copied by hand.
    Entity.IP: ((529482163, 1327604891), (742961053, 318205477), 1073741789),
}

# ids as Python ints; uint64 values above 2**63 are the same bits as negative int64 ids.
INT64_IDS = [
    0,
    1,
    2,
    7,
    12345,
    2**31 - 1,
    2**32 + 3,
    1_445_078_208_190_291_968,  # real-looking snowflake ids (2021, 2026)
    1_800_000_000_000_000_123,
    2**62 + 11,
    2**63 - 2,
    2**63 - 1,
    -1,
    -2,
    -12345,
    -(2**63),
    -(2**63) + 1,
]


def expected_row(entity: Entity, j: int, ident: int, num_rows: int, offset: int) -> int:
    """h_j(id) with 64-bit two's-complement wrap-around, in Python big ints."""
    if ident % 2**64 == 0:
        return 0
    scales, biases, modulus = DESIGN_PARAMS[entity]
    mixed = (ident * scales[j] + biases[j]) % 2**64
    if mixed >= 2**63:  # reinterpret as signed 64-bit
        mixed -= 2**64
    return (mixed % modulus) % (num_rows - 1) + 1 + offset  # Python % is non-negative


@pytest.mark.parametrize("entity", list(Entity))
@pytest.mark.parametrize(("num_rows", "offset"), [(2, 0), (1000, 64), (100_000, 1_000_064)])
def test_hash_rows_matches_the_formula_for_every_entity(
    entity: Entity, num_rows: int, offset: int
) -> None:
    ids = np.array(INT64_IDS, dtype=np.int64)
    got = hash_rows(ids, entity, num_rows, offset)
    assert got.shape == (len(INT64_IDS), 2)
    assert got.dtype == np.int64
    want = [[expected_row(entity, j, i, num_rows, offset) for j in range(2)] for i in INT64_IDS]
    assert got.tolist() == want


def test_the_wrap_around_matters_for_these_ids() -> None:
    # Guard against a vacuous test: without the 64-bit wrap-around some rows would differ.
    scales, biases, modulus = DESIGN_PARAMS[Entity.POST]
    big = 2**63 - 1
    unwrapped = (big * scales[0] + biases[0]) % modulus % 999 + 1
    assert expected_row(Entity.POST, 0, big, 1000, 0) != unwrapped


@pytest.mark.parametrize("entity", list(Entity))
def test_uint64_input_hashes_like_the_same_bits_as_int64(entity: Entity) -> None:
    unsigned = [0, 1, 2**63 - 1, 2**63, 2**63 + 5, 2**64 - 2, 2**64 - 1]
    got = hash_rows(np.array(unsigned, dtype=np.uint64), entity, 5000, 64)
    want = [[expected_row(entity, j, i, 5000, 64) for j in range(2)] for i in unsigned]
    assert got.tolist() == want
    as_signed = np.array(unsigned, dtype=np.uint64).view(np.int64)
    np.testing.assert_array_equal(got, hash_rows(as_signed, entity, 5000, 64))


def test_python_ints_and_small_int_dtypes_are_accepted() -> None:
    ids = [0, 3, 2**63 - 1]
    want = [[expected_row(Entity.USER, j, i, 777, 64) for j in range(2)] for i in ids]
    assert hash_rows(ids, Entity.USER, 777, 64).tolist() == want
    assert hash_rows([2**63 + 1], "post", 777, 64).tolist() == [
        [expected_row(Entity.POST, j, 2**63 + 1, 777, 64) for j in range(2)]
    ]
    small = np.array([0, 5, -5], dtype=np.int32)
    want_small = [[expected_row(Entity.AUTHOR, j, int(i), 50, 9) for j in range(2)] for i in small]
    assert hash_rows(small, Entity.AUTHOR, 50, 9).tolist() == want_small


@pytest.mark.parametrize("ident", [5, -5, 2**63 - 1, np.int64(-7), np.uint64(2**64 - 1)])
def test_a_scalar_id_gives_shape_2_without_warnings(ident: object) -> None:
    # Scalar (0-d) inputs take NumPy's scalar arithmetic, which warns on the intended wrap-around;
    # with warnings as errors that must not surface.
    got = hash_rows(ident, Entity.USER, 1000, 64)
    assert got.shape == (2,)
    assert got.tolist() == [expected_row(Entity.USER, j, int(ident), 1000, 64) for j in range(2)]


def test_vectorised_over_2d_arrays() -> None:
    rng = np.random.default_rng(0)
    ids = rng.integers(-(2**63), 2**63 - 1, size=(5, 7), dtype=np.int64, endpoint=True)
    ids[1, 3] = 0
    ids[4, 0] = 2**63 - 1
    got = hash_rows(ids, Entity.POST, 32_768, 8_255)
    assert got.shape == (5, 7, 2)
    for (r, c), ident in np.ndenumerate(ids):
        for j in range(2):
            assert got[r, c, j] == expected_row(Entity.POST, j, int(ident), 32_768, 8_255)
    assert got[1, 3].tolist() == [0, 0]


def test_empty_input_keeps_its_shape() -> None:
    assert hash_rows(np.zeros((0, 3), dtype=np.int64), Entity.USER, 10, 0).shape == (0, 3, 2)


def test_id_hasher_uses_each_entitys_block_of_the_config() -> None:
    config = PRESETS["tiny"]
    hasher = IdHasher(config)
    rng = np.random.default_rng(1)
    ids = np.concatenate(
        [rng.integers(1, 2**63 - 1, size=2000, dtype=np.int64), -np.arange(1, 50), [2**63 - 1]]
    )
    # Blocks by hand from X's layout (docs/FIDELITY.md, "Hashing"): row 0 padding, rows 1..64
    # reserved, then blocks of N rows at offsets 65 (users), posts, authors, IPs; an entity
    # hashes to offset + 1 .. offset + N - 1.
    n_u, n_p, n_a, n_ip = (
        config.num_user_rows,
        config.num_post_rows,
        config.num_author_rows,
        config.num_ip_rows,
    )
    user_off, post_off = 65, 65 + n_u
    author_off, ip_off = post_off + n_p, post_off + n_p + n_a
    cases = [
        (hasher.users, Entity.USER, n_u, user_off),
        (hasher.posts, Entity.POST, n_p, post_off),
        (hasher.authors, Entity.AUTHOR, n_a, author_off),
        (hasher.ips, Entity.IP, n_ip, ip_off),
    ]
    for method, entity, num_rows, offset in cases:
        rows = method(ids)
        assert rows.shape == (len(ids), 2)
        assert rows.min() >= offset + 1 and rows.max() <= offset + num_rows - 1, entity
        assert len(np.unique(rows)) > min(num_rows - 1, 2000) // 2  # spread over the block
        for i in (0, 1, 2, len(ids) - 1):
            want = [expected_row(entity, j, int(ids[i]), num_rows, offset) for j in range(2)]
            assert rows[i].tolist() == want
        assert method([0]).tolist() == [[0, 0]]
    # X's table: the blocks plus the 65 leading rows, rounded up to a multiple of 512.
    assert config.table_rows == -(-(ip_off + n_ip) // 512) * 512


def test_the_two_hash_functions_differ() -> None:
    rows = IdHasher(PRESETS["tiny"]).posts(np.arange(1, 1000))
    assert (rows[:, 0] != rows[:, 1]).mean() > 0.9


@pytest.mark.parametrize(
    "ids",
    [
        np.array([1.0, 2.0]),
        [1.5],
        np.array([True, False]),
        np.array(["1", "2"]),
        [2**64],  # does not fit in 64 bits
        [-1, 2**63],  # mixed signed/unsigned beyond int64
        -(2**63) - 1,
    ],
)
def test_non_integer_or_oversized_ids_raise_input_error(ids: object) -> None:
    with pytest.raises(InputError, match=r"^ids must"):
        hash_rows(ids, Entity.USER, 100, 64)


def test_a_table_of_fewer_than_two_rows_is_refused() -> None:
    with pytest.raises(InputError, match=r"^num_rows"):
        hash_rows([1], Entity.USER, 1, 64)


def test_unknown_entity_is_refused() -> None:
    with pytest.raises(ValueError, match="tweet"):
        hash_rows([1], "tweet", 100, 64)  # type: ignore[arg-type]


# X's layout -------------------------------------------------------------------------------------

#: Table sizes of X's presets, copied by hand from phoenix/xrex/configs (`_make_cfg` arguments);
#: a golden file's `meta/json` overrides some of them.
X_PRESET_SIZES = {
    "home_direct_packed_nano_offline_kafka_dump": {
        "user_id_table_size": 100_000,
        "item_id_table_size": 100_000,
        "author_id_table_size": 30_000,
        "ip_id_table_size": 10_000,
        "item_hash_vocab_size": 0,
    },
    "xrecsys_two_tower_nano_offline_kafka_dump": {
        "user_id_table_size": 0,
        "item_id_table_size": 0,
        "author_id_table_size": 30_000,
        "ip_id_table_size": 0,
        "item_hash_vocab_size": 100_000,
    },
}


def _golden_layout(golden: np.lib.npyio.NpzFile) -> HashLayout:
    meta = json.loads(str(golden["meta/json"]))
    sizes = dict(X_PRESET_SIZES[meta["base_config"]])
    for override in meta["overrides"]:
        key, value = override.split("=", 1)
        if key in sizes:
            sizes[key] = int(value)
    return HashLayout(
        user_rows=sizes["user_id_table_size"],
        item_rows=sizes["item_id_table_size"],
        author_rows=sizes["author_id_table_size"],
        ip_rows=sizes["ip_id_table_size"],
        item_hash_rows=sizes["item_hash_vocab_size"],
    )


@pytest.mark.parametrize(
    "name",
    [
        "ranker_golden_full",
        "ranker_golden_padded",
        "two_tower_golden_full",
        "two_tower_golden_padded",
    ],
)
def test_the_hashes_of_xs_golden_batches_are_reproduced(name: str) -> None:
    with np.load(X_REFERENCE / f"{name}.npz", allow_pickle=False) as golden:
        hasher = IdHasher(_golden_layout(golden))
        pairs = [
            (hasher.users(golden["ids/user_ids"]), golden["input/user_hashes"]),
            (hasher.ips(golden["ids/user_ip_ids"]), golden["input/user_ip_hashes"]),
        ]
        for seq in ("history_seq", "candidate_seq"):
            pairs.append(
                (hasher.posts(golden[f"ids/{seq}_post_ids"]), golden[f"input/{seq}/post_hashes"])
            )
            pairs.append(
                (
                    hasher.authors(golden[f"ids/{seq}_author_ids"]),
                    golden[f"input/{seq}/auth_hashes"],
                )
            )
    for got, want in pairs:
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    # Not vacuous: real rows, not only zeros.
    assert all(np.count_nonzero(want) for _, want in pairs[2:])


def test_xs_offsets_follow_the_block_sizes() -> None:
    layout = HashLayout(user_rows=1000, item_rows=2000, author_rows=500, ip_rows=100)
    assert (layout.user_offset, layout.item_offset, layout.author_offset, layout.ip_offset) == (
        65,
        1065,
        3065,
        3565,
    )
    assert layout.rows(Entity.USER) == range(66, 1065)
    assert layout.rows("post") == range(1066, 3065)
    assert layout.rows(Entity.AUTHOR) == range(3066, 3565)
    assert layout.rows(Entity.IP) == range(3566, 3665)


# ids near 2**63 and beyond (as uint64), where the 64-bit wrap-around decides the row.
BIG_IDS = [1, 2**31 - 1, 2**31, 2**62 + 11, 2**63 - 2, 2**63 - 1, 2**63, 2**63 + 5, 2**64 - 1]


@pytest.mark.parametrize("entity", list(Entity))
def test_x_layout_rows_by_hand_including_wrap_around(entity: Entity) -> None:
    layout = HashLayout(user_rows=1000, item_rows=2000, author_rows=500, ip_rows=100)
    offsets = {Entity.USER: 65, Entity.POST: 1065, Entity.AUTHOR: 3065, Entity.IP: 3565}
    sizes = {Entity.USER: 1000, Entity.POST: 2000, Entity.AUTHOR: 500, Entity.IP: 100}
    method = {
        Entity.USER: "users",
        Entity.POST: "posts",
        Entity.AUTHOR: "authors",
        Entity.IP: "ips",
    }[entity]
    hasher = IdHasher(layout)
    got = getattr(hasher, method)(np.array([0, *BIG_IDS], dtype=np.uint64))
    want = [
        [expected_row(entity, j, i, sizes[entity], offsets[entity]) for j in range(2)]
        for i in [0, *BIG_IDS]
    ]
    assert got.tolist() == want
    assert got[0].tolist() == [0, 0]
    assert got.dtype == np.int64
    signed = np.array([0, *BIG_IDS], dtype=np.uint64).view(np.int64)
    np.testing.assert_array_equal(getattr(hasher, method)(signed), got)


def test_a_user_block_of_zero_rows_keeps_a_presence_bit_and_no_ip_block_gives_zeros() -> None:
    hasher = IdHasher(HashLayout(user_rows=0, item_rows=300, author_rows=50))
    assert hasher.users([0, 7, 2**63 - 1]).tolist() == [[0, 0], [1, 0], [1, 0]]
    assert hasher.ips([0, 7, 123456789]).tolist() == [[0, 0]] * 3
    # The post block starts right after the reserved rows when users have no block.
    assert hasher.posts([7]).tolist() == [
        [expected_row(Entity.POST, j, 7, 300, 65) for j in range(2)]
    ]


def test_item_hash_rows_set_the_post_buckets_but_not_the_author_offset() -> None:
    layout = HashLayout(user_rows=0, item_rows=0, author_rows=500, item_hash_rows=2000)
    assert layout.item_buckets == 2000 and layout.author_offset == 65
    hasher = IdHasher(layout)
    ids = [3, 2**40 + 1]
    assert hasher.posts(ids).tolist() == [
        [expected_row(Entity.POST, j, i, 2000, 65) for j in range(2)] for i in ids
    ]
    assert hasher.authors(ids).tolist() == [
        [expected_row(Entity.AUTHOR, j, i, 500, 65) for j in range(2)] for i in ids
    ]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"user_rows": 1}, "user_rows"),
        ({"user_rows": -5}, "user_rows"),
        ({"item_rows": 1}, "item_rows=1"),
        ({"item_rows": 0}, "item_rows=0"),
        ({"author_rows": 1}, "author_rows"),
        ({"ip_rows": 1}, "ip_rows"),
        ({"item_hash_rows": 1}, "item_hash_rows"),
        ({"author_rows": 2.5}, "author_rows"),
        ({"ip_rows": True}, "ip_rows"),
    ],
)
def test_an_impossible_layout_is_refused_naming_the_field(kwargs: dict, field: str) -> None:
    sizes = {"user_rows": 100, "item_rows": 200, "author_rows": 50} | kwargs
    with pytest.raises(ConfigError, match=field):
        HashLayout(**sizes)


def test_numpy_sizes_are_accepted_as_ints() -> None:
    layout = HashLayout(np.int64(10), np.int32(20), np.int64(30))
    assert type(layout.item_offset) is int and layout.author_offset == 65 + 10 + 20


def test_a_model_config_keeps_its_own_layout_and_its_ip_block() -> None:
    config = PRESETS["tiny"]
    assert config.num_ip_rows > 0  # X's ranker hashes IP addresses onto the user token
    hasher = IdHasher(config)
    assert hasher.config is config
    ids = [5, 2**63 - 1]
    assert hasher.users(ids).tolist() == [
        [expected_row(Entity.USER, j, i, config.num_user_rows, 65) for j in range(2)] for i in ids
    ]
    ip_offset = 65 + config.num_user_rows + config.num_post_rows + config.num_author_rows
    assert hasher.ips(ids).tolist() == [
        [expected_row(Entity.IP, j, i, config.num_ip_rows, ip_offset) for j in range(2)]
        for i in ids
    ]
    # Without an IP block (num_ip_rows=0) every IP address hashes to 0, as in X.
    no_ip = IdHasher(config.with_overrides(num_ip_rows=0))
    assert no_ip.ips(ids).tolist() == [[0, 0], [0, 0]]
