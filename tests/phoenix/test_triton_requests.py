"""Requests and the served config as every client of Triton builds and reads them
(`phoenix.triton.requests`), without a server."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from export.onnx.wrappers import model_io
from phoenix.config import get_config
from phoenix.errors import ServingError, TritonUnavailable
from phoenix.serving import (
    CANDIDATE_BUCKETS,
    CANDIDATE_TOWER,
    MODEL_CONFIG_PARAMETER,
    MODEL_NAMES,
    RANKER,
    USER_TOWER,
)
from phoenix.triton.check import CHECK_CANDIDATES
from phoenix.triton.requests import (
    MODEL_OUTPUTS,
    RANKER_OUTPUTS,
    bucket,
    infer_inputs,
    latest_io,
    newest_complete_version,
    random_history,
    random_posts_request,
    random_ranker_request,
    ranker_requests,
    read_model_config,
    request_from_io,
    requested_outputs,
    served_models,
    served_ranker,
)
from tests.fakes.triton import ModelSet

IO = {
    "inputs": [
        {"name": "user_hash", "dtype": "int64", "shape": [2], "rows": [65, 99]},
        {"name": "history_actions", "dtype": "float32", "shape": [5, 3], "binary": True},
        {"name": "history_surface", "dtype": "int64", "shape": [5], "below": 4},
        {"name": "candidate_post_hash", "dtype": "int64", "shape": [-1, 2], "rows": [100, 120]},
    ],
    "outputs": [{"name": "action_log_probs", "dtype": "float32", "shape": [-1, 3]}],
    "max_candidates": 1024,
}


def test_request_from_io_respects_every_declared_range() -> None:
    arrays = request_from_io(IO, np.random.default_rng(0), CHECK_CANDIDATES)
    assert list(arrays) == [spec["name"] for spec in IO["inputs"]]
    assert arrays["user_hash"].shape == (1, 2) and arrays["user_hash"].dtype == np.int64
    assert arrays["user_hash"].min() >= 65 and arrays["user_hash"].max() <= 99
    assert arrays["candidate_post_hash"].shape == (1, CHECK_CANDIDATES, 2)
    assert arrays["candidate_post_hash"].min() >= 100
    assert arrays["candidate_post_hash"].max() <= 120
    assert set(np.unique(arrays["history_actions"])) <= {0.0, 1.0}
    assert arrays["history_actions"].dtype == np.float32
    assert arrays["history_surface"].max() < 4 and arrays["history_surface"].min() >= 0


def test_request_from_io_stays_under_the_candidate_limit() -> None:
    arrays = request_from_io(
        {**IO, "max_candidates": 3}, np.random.default_rng(0), CHECK_CANDIDATES
    )
    assert arrays["candidate_post_hash"].shape == (1, 3, 2)


def _version(model_dir: Path, version: int, io: dict | None) -> None:
    (model_dir / str(version)).mkdir(parents=True)
    if io is not None:
        (model_dir / str(version) / "io.json").write_text(json.dumps(io))


def test_latest_io_reads_the_newest_exported_version(tmp_path: Path) -> None:
    model_dir = tmp_path / "phoenix_ranker"
    _version(model_dir, 2, IO)
    _version(model_dir, 10, {**IO, "max_candidates": 7})
    _version(model_dir, 11, None)  # e.g. written by hand: skipped
    version, io = latest_io(tmp_path, "phoenix_ranker")
    assert version == "10" and io["max_candidates"] == 7


def test_latest_io_names_the_model_without_an_export(tmp_path: Path) -> None:
    _version(tmp_path / "other", 1, None)
    with pytest.raises(ServingError, match="other: no version"):
        latest_io(tmp_path, "other")


# The served config, from what Triton answers ---------------------------------------------------

CONFIG = get_config("tiny")
TOWERS = CONFIG.retrieval_config()


def test_the_served_set_gives_each_model_its_own_config() -> None:
    batches = {RANKER: 4, USER_TOWER: 16, CANDIDATE_TOWER: 1024}
    models = ModelSet(CONFIG, TOWERS, max_candidates=512, max_batch=batches)
    configs = {name: models.pbtxt(name, "7")["config"] for name in MODEL_NAMES}
    served = served_models(configs, "7", "triton:8001")
    assert served.version == "7" and served.max_candidates == 512
    assert served.config == CONFIG and served.config_of(USER_TOWER) == TOWERS
    assert served.max_batch == {RANKER: 4, USER_TOWER: 16, CANDIDATE_TOWER: 1024}
    assert served.hasher_of(CANDIDATE_TOWER).config == TOWERS
    assert served.embedding_dim(USER_TOWER) == TOWERS.emb_dim


def test_the_ranker_names_the_candidate_counts_its_requests_are_padded_to() -> None:
    configs = {
        name: ModelSet(
            CONFIG, TOWERS, max_candidates=256, candidate_buckets="64,128,192,256"
        ).pbtxt(name, "3")["config"]
        for name in MODEL_NAMES
    }
    served = served_models(configs, "3", "triton:8001")
    assert served.candidate_buckets == (64, 128, 192, 256)
    assert [bucket(n, served.candidate_buckets, 256) for n in (1, 64, 65, 130, 256)] == [
        64,
        64,
        128,
        192,
        256,
    ]


def test_a_ranker_exported_before_the_buckets_parameter_gets_the_gpu_buckets() -> None:
    configs = {name: ModelSet(CONFIG, TOWERS).pbtxt(name, "3")["config"] for name in MODEL_NAMES}
    assert served_models(configs, "3", "triton:8001").candidate_buckets == CANDIDATE_BUCKETS


@pytest.mark.parametrize("value", ["", "64,x", "128,64", "0,64", "64,64"])
def test_unusable_candidate_buckets_are_named(value: str) -> None:
    configs = {
        name: ModelSet(CONFIG, TOWERS, candidate_buckets=value).pbtxt(name, "3")["config"]
        for name in MODEL_NAMES
    }
    with pytest.raises(
        TritonUnavailable, match=r"phoenix_ranker at triton:8001 .*candidate_buckets"
    ):
        served_models(configs, "3", "triton:8001")


@pytest.mark.parametrize(
    ("model", "config", "missing"),
    [
        (
            RANKER,
            {"parameters": {MODEL_CONFIG_PARAMETER: {"string_value": CONFIG.model_dump_json()}}},
            "max_candidates",
        ),
        (USER_TOWER, {"parameters": {}}, "phoenix_model_config"),
        (
            CANDIDATE_TOWER,
            {"parameters": {MODEL_CONFIG_PARAMETER: {"string_value": "{not json"}}},
            "phoenix_model_config",
        ),
    ],
)
def test_a_model_without_the_exporters_parameters_is_named(
    model: str, config: dict, missing: str
) -> None:
    with pytest.raises(TritonUnavailable, match=rf"{model} at triton:8001 .*{missing}"):
        read_model_config(config, model, "triton:8001")


def test_the_served_ranker_is_read_with_a_blocking_client() -> None:
    class Client:
        def get_model_config(self, model: str) -> dict:
            assert model == RANKER
            return ModelSet(CONFIG, TOWERS, max_candidates=96).pbtxt(RANKER, "1")["config"]

    assert served_ranker(Client(), "triton:8000") == (CONFIG, 96)


def _entry(name: str, version: int | str, state: str = "READY") -> dict:
    return {"name": name, "version": str(version), "state": state}


def test_the_newest_version_is_the_newest_all_three_have_ready() -> None:
    index = [
        *(_entry(name, v) for name in MODEL_NAMES for v in (2, 10)),
        _entry(RANKER, 11),  # the next export, half loaded
        _entry(USER_TOWER, 11),
        _entry(CANDIDATE_TOWER, 11, "LOADING"),
        _entry("some_other_model", 99),
    ]
    assert newest_complete_version(index, "triton:8001") == "10"  # numerically, not as text


def test_no_common_version_says_what_each_model_has() -> None:
    index = [_entry(RANKER, 3), _entry(USER_TOWER, 3), _entry(CANDIDATE_TOWER, 2)]
    with pytest.raises(TritonUnavailable, match=r"triton:8001 .*phoenix_candidate_tower: \[2\]"):
        newest_complete_version(index, "triton:8001")


# Requests --------------------------------------------------------------------------------------


def test_the_outputs_are_the_exported_models() -> None:
    for model in MODEL_NAMES:
        _, outputs = model_io(model, CONFIG)
        assert MODEL_OUTPUTS[model] == tuple(spec.name for spec in outputs)


def test_random_requests_are_each_models_inputs() -> None:
    rng = np.random.default_rng(3)
    ranker = random_ranker_request(CONFIG, 5, rng)
    inputs, _ = model_io(RANKER, CONFIG)
    assert list(ranker) == [spec.name for spec in inputs]
    for spec in inputs:
        want = (1, *(5 if d == -1 else d for d in spec.shape))
        assert ranker[spec.name].shape == want and ranker[spec.name].dtype == spec.dtype, spec.name
    assert ranker["history_post_hash"].all()  # a full history: no padding slot
    assert ranker["candidate_post_hash"].all()
    rows = [ranker[name] for name in ("user_hash", "history_post_hash", "candidate_post_hash")]
    assert all(r.min() >= 0 and r.max() < CONFIG.table_rows for r in rows)

    history = random_history(TOWERS, rng)
    inputs, _ = model_io(USER_TOWER, TOWERS)
    assert {k: (v.shape, v.dtype) for k, v in history.items()} == {
        s.name: ((1, *s.shape), np.dtype(s.dtype)) for s in inputs
    }
    posts = random_posts_request(TOWERS, 9, rng)
    inputs, _ = model_io(CANDIDATE_TOWER, TOWERS)
    assert {k: (v.shape, v.dtype) for k, v in posts.items()} == {
        s.name: ((9, *s.shape), np.dtype(s.dtype)) for s in inputs
    }


def test_ranker_requests_split_at_the_limit_and_pad_to_buckets() -> None:
    viewer = {"user_hash": np.ones((1, 2), np.int64)}
    ids = np.arange(1, 231, dtype=np.int64)
    candidates = {"candidate_post_hash": np.stack([ids, ids], 1), "candidate_surface": ids % 3}
    parts = ranker_requests(viewer, candidates, 100, lambda n: bucket(n, (16, 64, 256), 100))
    assert [size for _, size in parts] == [100, 100, 30]
    assert [r["candidate_surface"].shape for r, _ in parts] == [(1, 100), (1, 100), (1, 64)]
    last, _ = parts[-1]
    assert last["candidate_post_hash"][0, :30, 0].tolist() == list(range(201, 231))
    assert not last["candidate_post_hash"][0, 30:].any()  # padding: id 0
    assert all(r["user_hash"] is viewer["user_hash"] for r, _ in parts)
    assert [bucket(n, (16, 64, 256), 100) for n in (1, 16, 17, 65, 100)] == [16, 16, 64, 100, 100]


def test_inputs_are_named_shaped_and_typed_for_triton() -> None:
    import tritonclient.grpc as grpcclient

    columns = np.arange(12, dtype=np.int64).reshape(3, 4)[:, ::2]  # not C-contiguous
    inputs = infer_inputs(grpcclient, {"ids": columns, "dwell": np.zeros(2, np.float32)})
    assert [(t.name(), t.shape(), t.datatype()) for t in inputs] == [
        ("ids", [3, 2], "INT64"),
        ("dwell", [2], "FP32"),
    ]
    assert [o.name() for o in requested_outputs(grpcclient, RANKER_OUTPUTS)] == list(RANKER_OUTPUTS)
