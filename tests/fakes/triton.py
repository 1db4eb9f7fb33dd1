"""A fake Triton for unit tests: the orchestrator's real `PhoenixTriton` over an in-process stand-in
for its gRPC connection.

Everything of the client is the real one (the served config read from config.pbtxt parameters,
the newest complete version, pinned sets, buckets, splitting, the breaker, metrics, the calls a
feed records); only the network is replaced. `FakeServer` answers as tritonserver would: it
refuses (INVALID_ARGUMENT) a request whose inputs are not those the served model takes, and is
UNAVAILABLE while `down`. Its answers are deterministic functions of the request, of the shapes
the real models give:

- candidate tower: post hash h -> the unit vector `post_vector(h)`;
- user tower: a viewer -> the normalised sum of its history posts' vectors, so that retrieval
  finds the posts a viewer engaged with (and those like them) first;
- ranker: candidate hash h -> probability `probability(h, column)` in every action column
  (sent as log-probabilities, as X's ranker does) and `dwell_s(h)` in the continuous outputs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

from orchestrator.triton_client import PhoenixTriton
from phoenix.config import ModelConfig, get_config
from phoenix.serving import (
    CANDIDATE_BUCKETS_PARAMETER,
    CANDIDATE_TOWER,
    MAX_CANDIDATES_PARAMETER,
    MODEL_CONFIG_PARAMETER,
    MODEL_NAMES,
    RANKER,
    USER_TOWER,
)
from phoenix.triton.requests import (
    MODEL_OUTPUTS,
    random_history,
    random_posts_request,
    random_ranker_request,
)

INVALID_ARGUMENT = "StatusCode.INVALID_ARGUMENT"
UNAVAILABLE = "StatusCode.UNAVAILABLE"


def post_vector(post_hash: npt.ArrayLike, dim: int) -> npt.NDArray[np.float32]:
    """The candidate tower's embedding [N, dim] of posts by their first post-hash row [N]."""
    h = np.asarray(post_hash, np.float64)[:, None]
    v = np.cos(h * (np.arange(dim) + 1) * 0.618034 + h)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def probability(post_hash: npt.ArrayLike, columns: int) -> npt.NDArray[np.float32]:
    """The ranker's probabilities [C, columns] of candidates by their first post-hash row [C],
    strictly inside (0, 1)."""
    h = np.asarray(post_hash, np.int64)[:, None]
    return ((h * (np.arange(columns) + 7)) % 997 + 1).astype(np.float32) / 999


def dwell_s(post_hash: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """The ranker's dwell seconds [C] (continuous output column 1) by first post-hash row [C]."""
    return (np.asarray(post_hash, np.int64) % 60).astype(np.float32)


@dataclass
class ModelSet:
    """One exported version of the three models, as their config.pbtxt describe them."""

    ranker: ModelConfig
    towers: ModelConfig
    max_candidates: int = 64
    #: The ranker's `candidate_buckets` parameter (None: not written, as before the exporter did).
    candidate_buckets: str | None = None
    max_batch: dict[str, int] = field(
        default_factory=lambda: {RANKER: 8, USER_TOWER: 8, CANDIDATE_TOWER: 16}
    )
    _inputs: dict[str, dict[str, tuple[np.dtype, tuple[int, ...]]]] = field(
        default_factory=dict, repr=False
    )

    def config_of(self, model: str) -> ModelConfig:
        return self.ranker if model == RANKER else self.towers

    def pbtxt(self, model: str, version: str) -> dict[str, Any]:
        """`model`'s config.pbtxt as Triton's model-config call answers it (as JSON)."""
        params = {MODEL_CONFIG_PARAMETER: {"string_value": self.config_of(model).model_dump_json()}}
        if model == RANKER:
            params[MAX_CANDIDATES_PARAMETER] = {"string_value": str(self.max_candidates)}
            if self.candidate_buckets is not None:
                params[CANDIDATE_BUCKETS_PARAMETER] = {"string_value": self.candidate_buckets}
        return {
            "config": {
                "name": model,
                "max_batch_size": self.max_batch[model],
                "parameters": params,
                "version": version,
            }
        }

    def inputs(self, model: str) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
        """(dtype, shape after the batch axis; -1: the candidates) of each of `model`'s inputs:
        those of the requests every client packs (`phoenix.triton.requests`)."""
        if model not in self._inputs:
            self._inputs[model] = self._read_inputs(model)
        return self._inputs[model]

    def _read_inputs(self, model: str) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
        rng = np.random.default_rng(0)
        config = self.config_of(model)
        if model == RANKER:
            arrays = random_ranker_request(config, 1, rng)
            return {
                name: (
                    a.dtype,
                    (-1, *a.shape[2:]) if name.startswith("candidate_") else a.shape[1:],
                )
                for name, a in arrays.items()
            }
        arrays = (
            random_history(config, rng)
            if model == USER_TOWER
            else random_posts_request(config, 1, rng)
        )
        return {name: (a.dtype, a.shape[1:]) for name, a in arrays.items()}


def model_set(config: str | ModelConfig = "tiny", **kwargs: Any) -> ModelSet:
    """A model set of the named config, the towers with their own (X's two-tower) geometry."""
    ranker = get_config(config) if isinstance(config, str) else config
    return ModelSet(ranker, ranker.retrieval_config(), **kwargs)


@dataclass
class Request:
    """One inference the fake served: the model, the version asked for, its arrays."""

    model: str
    version: str
    arrays: dict[str, npt.NDArray]


class _Result:
    def __init__(self, outputs: Mapping[str, npt.NDArray]) -> None:
        self._outputs = outputs

    def as_numpy(self, name: str) -> npt.NDArray:
        return self._outputs[name]


class FakeServer:
    """Stands in for `tritonclient.grpc.aio.InferenceServerClient` connected to a tritonserver
    serving `versions` (version number -> model set); all of them READY unless `loading` names
    (model, version) pairs still loading. `down`: every call fails as a lost connection does."""

    def __init__(self, versions: Mapping[int, ModelSet] | None = None) -> None:
        self.versions: dict[int, ModelSet] = dict(versions or {1: model_set()})
        self.loading: set[tuple[str, int]] = set()
        self.down = False
        self.requests: list[Request] = []

    def publish(self, version: int, models: ModelSet) -> None:
        """A new export appears in the repository, all three models ready."""
        self.versions[version] = models

    # ------------------------------------------------------------ what the client calls

    def _reachable(self) -> None:
        if self.down:
            raise InferenceServerException("failed to connect to all addresses", UNAVAILABLE)

    async def get_model_repository_index(self, **_: Any) -> dict[str, Any]:
        self._reachable()
        return {
            "models": [
                {
                    "name": name,
                    "version": str(version),
                    "state": "LOADING" if (name, version) in self.loading else "READY",
                }
                for version in self.versions
                for name in MODEL_NAMES
            ]
        }

    async def get_model_config(self, name: str, model_version: str = "", **_: Any) -> dict:
        self._reachable()
        version = self._version(name, model_version)
        return self.versions[version].pbtxt(name, str(version))

    async def is_server_ready(self, **_: Any) -> bool:
        self._reachable()
        return True

    async def is_model_ready(self, name: str, model_version: str = "", **_: Any) -> bool:
        self._reachable()
        try:
            self._version(name, model_version)
        except InferenceServerException:
            return False
        return True

    async def infer(
        self,
        model_name: str,
        inputs: Sequence[Any],
        model_version: str = "",
        outputs: Iterable[Any] | None = None,
        **_: Any,
    ) -> _Result:
        self._reachable()
        version = self._version(model_name, model_version)
        models = self.versions[version]
        arrays = {
            i.name(): np.frombuffer(i._get_content(), triton_to_np_dtype(i.datatype())).reshape(
                list(i.shape())
            )
            for i in inputs
        }
        self._check(models, model_name, arrays)
        self.requests.append(Request(model_name, model_version, arrays))
        answers = self._answer(models, model_name, arrays)
        wanted = [o.name() for o in outputs] if outputs is not None else list(answers)
        return _Result({name: answers[name] for name in wanted})

    async def close(self) -> None:
        return None

    # ------------------------------------------------------------ the served models

    def _version(self, model: str, asked: str) -> int:
        ready = [v for v in self.versions if (model, v) not in self.loading]
        if model not in MODEL_NAMES or not ready:
            raise InferenceServerException(f"Request for unknown model: '{model}'", UNAVAILABLE)
        version = int(asked) if asked else max(ready)
        if version not in ready:
            raise InferenceServerException(
                f"Request for unknown model: '{model}' version {asked} is not ready", UNAVAILABLE
            )
        return version

    @staticmethod
    def _check(models: ModelSet, model: str, arrays: Mapping[str, npt.NDArray]) -> None:
        """Refuse what tritonserver or the model would: other inputs, dtypes or shapes, a batch
        over the model's max, candidates over its limit."""
        expected = models.inputs(model)
        if set(arrays) != set(expected):
            raise InferenceServerException(
                f"{model}: expected inputs {sorted(expected)}, got {sorted(arrays)}",
                INVALID_ARGUMENT,
            )
        batch = {len(a) for a in arrays.values()}
        candidates = {a.shape[1] for n, a in arrays.items() if expected[n][1][:1] == (-1,)}
        if len(batch) != 1 or len(candidates) > 1:
            raise InferenceServerException(f"{model}: inputs disagree on batch", INVALID_ARGUMENT)
        if batch.pop() > models.max_batch[model]:
            raise InferenceServerException(f"{model}: batch over max_batch_size", INVALID_ARGUMENT)
        if candidates and candidates.pop() > models.max_candidates:
            raise InferenceServerException(f"{model}: candidates over the limit", INVALID_ARGUMENT)
        for name, (dtype, shape) in expected.items():
            got = arrays[name]
            want = tuple(got.shape[1] if d == -1 else d for d in shape)
            if got.dtype != dtype or got.shape[1:] != want:
                raise InferenceServerException(
                    f"{model}: input {name} is {got.dtype}{list(got.shape)}, expected "
                    f"{dtype}[-1, {', '.join(map(str, shape))}]",
                    INVALID_ARGUMENT,
                )

    @staticmethod
    def _answer(
        models: ModelSet, model: str, arrays: Mapping[str, npt.NDArray]
    ) -> dict[str, npt.NDArray]:
        if model == CANDIDATE_TOWER:
            dim = models.towers.emb_dim
            return {MODEL_OUTPUTS[model][0]: post_vector(arrays["post_hash"][:, 0], dim)}
        if model == USER_TOWER:
            dim = models.towers.emb_dim
            history = arrays["history_post_hash"][..., 0]  # [B, S]
            b, s = history.shape
            vectors = post_vector(history.reshape(-1), dim).reshape(b, s, dim)
            summed = (vectors * (history != 0)[..., None]).sum(axis=1)
            norm = np.linalg.norm(summed, axis=1, keepdims=True)
            summed = np.where(norm > 0, summed / np.maximum(norm, 1e-12), 1 / np.sqrt(dim))
            return {MODEL_OUTPUTS[model][0]: summed.astype(np.float32)}
        config = models.ranker
        post = arrays["candidate_post_hash"][..., 0]  # [B, C]
        b, c = post.shape
        probs = probability(post.reshape(-1), config.num_action_columns)
        continuous = np.zeros((b * c, config.num_continuous), np.float32)
        continuous[:, 1] = dwell_s(post.reshape(-1))
        log_probs, continuous_out = MODEL_OUTPUTS[RANKER]
        return {
            log_probs: np.log(probs).reshape(b, c, -1),
            continuous_out: continuous.reshape(b, c, -1),
        }


class FakeTriton(PhoenixTriton):
    """The orchestrator's Triton client, connected to `server` (a fresh `FakeServer` serving
    version 1 of the tiny config by default) instead of a tritonserver."""

    def __init__(self, server: FakeServer | None = None, **kwargs: Any) -> None:
        super().__init__("fake-triton:8001", **kwargs)
        self.server = server or FakeServer()
        self._client = self.server  # type: ignore[assignment]

    async def close(self) -> None:
        """Nothing to close: the fake stays connected (a real client reconnects on next use)."""
