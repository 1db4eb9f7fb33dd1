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
from phoenix.features import Arrays, pack_candidates, pack_history
from phoenix.hashing import IdHasher
from phoenix.serving import MAX_CANDIDATES_PARAMETER, MODEL_CONFIG_PARAMETER, RANKER

OUTPUTS = ("action_probs", "dwell_time")
_TRITON_DTYPES = {np.dtype(np.int64): "INT64", np.dtype(np.float32): "FP32"}


def served_ranker(client) -> tuple[ModelConfig, int]:  # type: ignore[no-untyped-def]
    """(model config, candidate limit) of the served ranker, from its config.pbtxt parameters."""
    params = client.get_model_config(RANKER)["parameters"]
    config = ModelConfig.from_dict(json.loads(params[MODEL_CONFIG_PARAMETER]["string_value"]))
    return config, int(params[MAX_CANDIDATES_PARAMETER]["string_value"])


def ranker_request(config: ModelConfig, candidates: int, rng: np.random.Generator) -> Arrays:
    """A batch-1 request: random ids for the viewer, a full history and the candidates."""
    s = config.history_len
    ids = lambda *shape: rng.integers(1, 2**62, size=shape, dtype=np.int64)  # noqa: E731
    hasher = IdHasher(config)
    history = pack_history(
        hasher,
        ids(1),
        ids(1, s),
        ids(1, s),
        rng.random((1, s, NUM_ACTIONS)) < 0.2,
        rng.integers(0, config.num_surfaces, size=(1, s)),
    )
    cands = pack_candidates(
        hasher, ids(1, candidates), ids(1, candidates), np.zeros((1, candidates), np.int64)
    )
    return {**history, **cands}


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
