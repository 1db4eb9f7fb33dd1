"""The Triton client's request shaping (buckets, padding, splitting) with `_infer` replaced by an
echo; the calls against a real tritonserver are in tests/integration/test_feed_service.py."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from orchestrator.triton_client import PhoenixTriton, ServedModels, TritonUnavailable
from phoenix.config import get_config
from phoenix.serving import CANDIDATE_TOWER, RANKER, USER_TOWER

CONFIG = get_config("tiny")


def _client(max_candidates: int = 100, buckets: tuple[int, ...] = (16, 64, 256)) -> PhoenixTriton:
    client = PhoenixTriton("127.0.0.1:1")
    client._served = ServedModels(
        CONFIG,
        max_candidates,
        {RANKER: 8, USER_TOWER: 8, CANDIDATE_TOWER: 3},
        candidate_buckets=buckets,
    )
    return client


def test_buckets_stop_at_the_model_limit() -> None:
    client = _client(max_candidates=100)
    assert [client.bucket(n) for n in (1, 16, 17, 64, 65, 100)] == [16, 16, 64, 64, 100, 100]


def test_the_client_pads_as_the_served_ranker_asks() -> None:
    client = PhoenixTriton("127.0.0.1:1")
    client._served = ServedModels(
        CONFIG,
        300,
        {RANKER: 8, USER_TOWER: 8, CANDIDATE_TOWER: 3},
        candidate_buckets=(64, 128, 192, 256, 300),
    )
    assert [client.bucket(n) for n in (1, 65, 129, 200, 257, 300)] == [64, 128, 192, 256, 300, 300]


class Echo:
    """Stands in for Triton: the ranker's log probabilities are -column/100 and its continuous
    outputs carry each candidate's post hash (row, first column) in every column."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, np.ndarray]]] = []

    async def __call__(self, model, arrays, outputs):  # type: ignore[no-untyped-def]
        self.calls.append((model, arrays))
        if model == RANKER:
            assert tuple(outputs) == ("action_log_probs", "continuous")
            post = arrays["candidate_post_hash"][..., 0].astype(np.float32)
            columns = -np.arange(CONFIG.num_action_columns, dtype=np.float32) / 100
            log_probs = np.broadcast_to(columns, (*post.shape, len(columns)))
            return [log_probs, np.repeat(post[..., None], CONFIG.num_continuous, axis=-1)]
        post = arrays["post_hash"][:, 0].astype(np.float32)
        return [np.repeat(post[:, None], CONFIG.emb_dim, axis=1)]


def _candidates(n: int) -> dict[str, np.ndarray]:
    rows = np.arange(1, n + 1, dtype=np.int64)
    return {
        "candidate_post_hash": np.stack([rows, rows], axis=1),
        "candidate_author_hash": np.stack([rows, rows], axis=1),
        "candidate_surface": np.zeros(n, np.int64),
    }


def test_rank_pads_to_a_bucket_and_drops_the_padding() -> None:
    client, echo = _client(), Echo()
    client._infer = echo  # type: ignore[method-assign]
    probs, continuous = asyncio.run(
        client.rank({"user_hash": np.ones((1, 2), np.int64)}, _candidates(20))
    )
    assert probs.shape == (20, CONFIG.num_action_columns)
    want = np.exp(-np.arange(CONFIG.num_action_columns) / 100)
    np.testing.assert_allclose(probs[7], want, rtol=1e-6)
    assert continuous.shape == (20, CONFIG.num_continuous)
    assert continuous[:, 1].tolist() == list(range(1, 21))
    ((model, sent),) = echo.calls
    assert model == RANKER and sent["candidate_post_hash"].shape == (1, 64, 2)
    assert not sent["candidate_post_hash"][0, 20:].any()  # padding rows are id 0


def test_rank_splits_above_the_limit_and_keeps_the_order() -> None:
    client, echo = _client(max_candidates=100), Echo()
    client._infer = echo  # type: ignore[method-assign]
    _, continuous = asyncio.run(client.rank({}, _candidates(230)))
    assert continuous[:, 1].tolist() == list(range(1, 231))
    # 100 + 100 + 30, the last part padded to its bucket
    assert [sent["candidate_post_hash"].shape[1] for _, sent in echo.calls] == [100, 100, 64]


def test_post_embeddings_are_requested_in_max_batch_chunks() -> None:
    client, echo = _client(), Echo()
    client._infer = echo  # type: ignore[method-assign]
    rows = np.arange(1, 8, dtype=np.int64)
    hashes = np.stack([rows, rows], axis=1)
    sids = np.tile(rows[:, None], (1, CONFIG.sid_levels))
    embeddings = asyncio.run(
        client.embed_posts({"post_hash": hashes, "author_hash": hashes, "sids": sids})
    )
    assert embeddings[:, 0].tolist() == list(range(1, 8))
    assert [len(sent["post_hash"]) for _, sent in echo.calls] == [3, 3, 1]
    assert [sent["sids"][:, 0].tolist() for _, sent in echo.calls] == [[1, 2, 3], [4, 5, 6], [7]]
    empty = asyncio.run(
        client.embed_posts({"post_hash": hashes[:0], "author_hash": hashes[:0], "sids": sids[:0]})
    )
    assert empty.shape == (0, CONFIG.emb_dim)


def test_calls_before_connect_say_so() -> None:
    client = PhoenixTriton("127.0.0.1:1")
    with pytest.raises(TritonUnavailable, match="not connected"):
        client.bucket(10)


def test_connect_to_nothing_is_unavailable_not_a_crash() -> None:
    async def attempt() -> None:
        client = PhoenixTriton("127.0.0.1:1", timeout_s=0.5)
        try:
            await client.connect()
        finally:
            await client.close()

    with pytest.raises(TritonUnavailable, match=r"127\.0\.0\.1:1"):
        asyncio.run(attempt())
