"""One ranker request for the served model, and sending it with tritonclient's HTTP client (the
gevent-native one Locust users can share a process with).

The request is a random viewer with a full history and `candidates` random candidates, hashed with
the served model's own config (read from Triton, see `phoenix.serving`)."""

from __future__ import annotations

import json

import numpy as np
import numpy.typing as npt

from phoenix.actions import NUM_ACTIONS
from phoenix.config import ModelConfig
from phoenix.features import (
    Arrays,
    PostFacts,
    UserProfile,
    pack_candidates,
    pack_history,
    pack_user,
)
from phoenix.hashing import IdHasher
from phoenix.serving import MAX_CANDIDATES_PARAMETER, MODEL_CONFIG_PARAMETER, RANKER

#: X's serving outputs: log sigmoid of the 64 action logits, and the continuous outputs.
OUTPUTS = ("action_log_probs", "continuous")
_TRITON_DTYPES = {np.dtype(np.int64): "INT64", np.dtype(np.float32): "FP32"}
#: Requests are stamped at a fixed time; histories reach back a week.
_NOW_S = 1_780_000_000
_WEEK_S = 7 * 24 * 3600


def served_ranker(client) -> tuple[ModelConfig, int]:  # type: ignore[no-untyped-def]
    """(model config, candidate limit) of the served ranker, from its config.pbtxt parameters."""
    params = client.get_model_config(RANKER)["parameters"]
    config = ModelConfig.from_dict(json.loads(params[MODEL_CONFIG_PARAMETER]["string_value"]))
    return config, int(params[MAX_CANDIDATES_PARAMETER]["string_value"])


def _posts(config: ModelConfig, shape: tuple[int, ...], rng: np.random.Generator) -> PostFacts:
    ids = rng.integers(1, 2**62, size=shape, dtype=np.int64)
    impression = _NOW_S - rng.integers(0, _WEEK_S, size=shape)
    return PostFacts(
        post_ids=ids,
        author_ids=rng.integers(1, 2**62, size=shape, dtype=np.int64),
        surface=rng.integers(0, config.num_surfaces, size=shape),
        impression_s=impression,
        created_s=impression - rng.integers(0, 3 * 24 * 3600, size=shape),
        followed_by_viewer=rng.random(shape) < 0.5,
        following_viewer=rng.random(shape) < 0.1,
        counts=rng.integers(0, 10_000, size=(*shape, config.num_counts)),
        sids=rng.integers(0, config.sid_codes + 1, size=(*shape, config.sid_levels)),
    )


def ranker_request(config: ModelConfig, candidates: int, rng: np.random.Generator) -> Arrays:
    """A batch-1 request: a random viewer with a full history and `candidates` candidates, packed
    by `phoenix.features` exactly as the orchestrator packs a real one."""
    s = config.history_len
    hasher = IdHasher(config)
    profile = UserProfile.unknown(1)
    user = pack_user(hasher, rng.integers(1, 2**62, size=1, dtype=np.int64), profile)
    history = pack_history(
        hasher,
        _posts(config, (s,), rng),
        rng.random((s, NUM_ACTIONS)) < 0.2,
        rng.random(s).astype(np.float32) * 30,
        np.zeros(s, np.int64),
        np.zeros(1, np.int64),
    )
    cands = pack_candidates(
        hasher, _posts(config, (1, candidates), rng), np.zeros((1, 1), np.int64)
    )
    return {**user, **history, **cands}


def infer_ranker(client, arrays: Arrays) -> dict[str, npt.NDArray[np.float32]]:  # type: ignore[no-untyped-def]
    """Send one request with a `tritonclient.http` client; the outputs by name."""
    import tritonclient.http as httpclient

    inputs = []
    for name, array in arrays.items():
        array = np.ascontiguousarray(array)
        tensor = httpclient.InferInput(name, list(array.shape), _TRITON_DTYPES[array.dtype])
        tensor.set_data_from_numpy(array, binary_data=True)
        inputs.append(tensor)
    outputs = [httpclient.InferRequestedOutput(name, binary_data=True) for name in OUTPUTS]
    result = client.infer(RANKER, inputs, outputs=outputs)
    return {name: result.as_numpy(name) for name in OUTPUTS}
