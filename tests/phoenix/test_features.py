"""Feature packing: hashing id matrices and zeroing padded slots."""

from __future__ import annotations

import numpy as np
import pytest

from phoenix.config import PRESETS
from phoenix.errors import InputError
from phoenix.features import pack_candidates, pack_history
from phoenix.hashing import IdHasher

HASHER = IdHasher(PRESETS["tiny"])
A = PRESETS["tiny"].num_actions


def test_history_is_hashed_and_padding_is_zero() -> None:
    posts = np.array([[11, 12, 0], [13, 0, 0]])
    authors = np.array([[21, 22, 99], [23, 98, 97]])  # authors of padded slots must be ignored
    actions = np.ones((2, 3, A), dtype=bool)
    surfaces = np.array([[1, 2, 3], [4, 5, 6]])
    out = pack_history(HASHER, [5, 6], posts, authors, actions, surfaces)

    np.testing.assert_array_equal(out["user_hash"], HASHER.users([5, 6]))
    np.testing.assert_array_equal(out["history_post_hash"], HASHER.posts(posts))
    pad = posts == 0
    assert (out["history_post_hash"][pad] == 0).all()
    assert (out["history_author_hash"][pad] == 0).all()
    assert (out["history_actions"][pad] == 0).all()
    assert (out["history_surface"][pad] == 0).all()
    np.testing.assert_array_equal(out["history_author_hash"][~pad], HASHER.authors(authors[~pad]))
    assert out["history_actions"].dtype == np.float32
    assert (out["history_actions"][~pad] == 1).all()
    np.testing.assert_array_equal(out["history_surface"][~pad], surfaces[~pad])


def test_candidates_any_leading_shape() -> None:
    out = pack_candidates(HASHER, [[1, 0]], [[7, 8]], [[3, 4]])
    assert out["candidate_post_hash"].shape == (1, 2, 2)
    np.testing.assert_array_equal(out["candidate_author_hash"][0, 0], HASHER.authors(7))
    assert (out["candidate_author_hash"][0, 1] == 0).all()
    assert out["candidate_surface"].tolist() == [[3, 0]]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"post_ids": [1, 2]}, "post_ids"),
        ({"author_ids": [[1]]}, "author_ids"),
        ({"surfaces": [[1, 2, 3]]}, "surfaces"),
        ({"actions": np.zeros((1, 2, A + 1))}, "actions"),
    ],
)
def test_inconsistent_history_shapes_name_the_field(kwargs: dict, field: str) -> None:
    args = {
        "user_ids": [1],
        "post_ids": [[1, 2]],
        "author_ids": [[3, 4]],
        "actions": np.zeros((1, 2, A)),
        "surfaces": [[0, 0]],
    } | kwargs
    with pytest.raises(InputError, match=rf"^{field}:"):
        pack_history(HASHER, **args)


def test_inconsistent_candidate_shapes_name_the_field() -> None:
    with pytest.raises(InputError, match=r"^surfaces:"):
        pack_candidates(HASHER, [1, 2], [3, 4], [0])
