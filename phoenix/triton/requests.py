"""Requests to the three served Phoenix models, and what Triton serves: the one place every client
of Triton builds its tensors and reads the served config.

The clients are the orchestrator (asyncio gRPC, `orchestrator.triton_client`), the Locust load
test (HTTP), `phoenix bench triton` (HTTP, gRPC and in-process) and `phoenix triton --check`
(HTTP and gRPC). A request's arrays come from `phoenix.features`, as the orchestrator packs a real
viewer, and the random requests of the load test and the benchmark are packed the same way; the
check alone builds requests from a version's io.json, so it can call any exported model.

What the served models expect is read from Triton: each model's `ModelConfig`, the ranker's
candidate limit and the candidate counts its requests are padded to from the config.pbtxt
parameters the exporter writes for its target (`phoenix.serving`), and the version from the
repository index: the newest version all three models have ready.

NumPy only. The tritonclient protocol module (`tritonclient.http`, `tritonclient.grpc` or
`tritonclient.grpc.aio`) is given by the caller, so this module imports no client.
"""

from __future__ import annotations

import functools
import json
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from phoenix.actions import NUM_ACTIONS
from phoenix.config import ModelConfig
from phoenix.errors import ServingError, TritonUnavailable
from phoenix.features import (
    Arrays,
    PostFacts,
    UserProfile,
    pack_candidates,
    pack_history,
    pack_posts,
    pack_user,
)
from phoenix.hashing import IdHasher
from phoenix.serving import (
    CANDIDATE_BUCKETS,
    CANDIDATE_BUCKETS_PARAMETER,
    CANDIDATE_TOWER,
    MAX_CANDIDATES_PARAMETER,
    MODEL_CONFIG_PARAMETER,
    MODEL_NAMES,
    RANKER,
    USER_TOWER,
    parse_buckets,
)

#: What each model answers. The ranker's are X's serving outputs: `action_log_probs` [C, 64]
#: (log sigmoid, column i = X's ActionName i) and `continuous` [C, 8] (column 1: dwell seconds).
MODEL_OUTPUTS: dict[str, tuple[str, ...]] = {
    RANKER: ("action_log_probs", "continuous"),
    USER_TOWER: ("user_embedding",),
    CANDIDATE_TOWER: ("post_embedding",),
}
RANKER_OUTPUTS = MODEL_OUTPUTS[RANKER]

#: Random requests are stamped at a fixed time; their histories reach back a week.
_NOW_S = 1_780_000_000
_WEEK_S = 7 * 24 * 3600


# ------------------------------------------------------------------------------------- tensors


def infer_inputs(protocol: ModuleType, arrays: Mapping[str, npt.NDArray]) -> list[Any]:
    """The `protocol.InferInput` tensors of `arrays` (C-contiguous, dtype named as Triton does;
    HTTP sends them as binary data, its default)."""
    from tritonclient.utils import np_to_triton_dtype

    inputs = []
    for name, array in arrays.items():
        array = np.ascontiguousarray(array)
        tensor = protocol.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def requested_outputs(protocol: ModuleType, names: Iterable[str]) -> list[Any]:
    """`protocol.InferRequestedOutput` for each name (binary data over HTTP, its default)."""
    return [protocol.InferRequestedOutput(name) for name in names]


def infer(
    client: Any,
    protocol: ModuleType,
    model: str,
    arrays: Mapping[str, npt.NDArray],
    outputs: Sequence[str] | None = None,
    **options: Any,
) -> dict[str, npt.NDArray]:
    """One request with a blocking `protocol` client (`options`: the client's own, such as
    `model_version` or gRPC's `client_timeout`); the outputs by name (None: all of the model's)."""
    names = MODEL_OUTPUTS[model] if outputs is None else outputs
    result = client.infer(
        model,
        infer_inputs(protocol, arrays),
        outputs=requested_outputs(protocol, names),
        **options,
    )
    return {name: result.as_numpy(name) for name in names}


# ------------------------------------------------------------------------ shaping the requests


def bucket(count: int, buckets: Sequence[int], limit: int) -> int:
    """The candidate count a ranker request of `count` candidates is padded to: the smallest of
    `buckets` (sorted) that holds it, the model's `limit` above them."""
    sizes = [b for b in buckets if b < limit] + [limit]
    return sizes[min(bisect_left(sizes, count), len(sizes) - 1)]


def ranker_requests(
    viewer: Arrays, candidates: Arrays, limit: int, pad_to: Callable[[int], int]
) -> list[tuple[Arrays, int]]:
    """(request, real candidates) for one viewer (`user_*` and `history_*`, batch 1) and C
    candidates ([C, ...] arrays): at most `limit` candidates a request, each padded with zero
    rows (id 0: padding to the model) to `pad_to(its count)` (a `bucket`) and given a batch
    axis. Candidate
    isolation means the padding changes no one's scores, and equal shapes let Triton's dynamic
    batcher run several viewers' requests in one execution."""
    count = len(candidates["candidate_surface"])
    parts = []
    for start in range(0, count, limit):
        part = {k: v[start : start + limit] for k, v in candidates.items()}
        size = len(part["candidate_surface"])
        padded = pad_to(size)
        parts.append(({**viewer, **{k: pad_rows(v, padded)[None] for k, v in part.items()}}, size))
    return parts


def tower_requests(arrays: Arrays, max_batch: int) -> list[Arrays]:
    """`arrays` ([N, ...], the rows of one tower's batch axis) cut into requests of at most
    the model's `max_batch` rows."""
    count = len(next(iter(arrays.values()))) if arrays else 0
    return [
        {k: v[i : i + max_batch] for k, v in arrays.items()} for i in range(0, count, max_batch)
    ]


def pad_rows(array: npt.NDArray, rows: int) -> npt.NDArray:
    """`array` with zero rows appended up to `rows` (zero ids are padding to the model)."""
    if len(array) == rows:
        return array
    pad = np.zeros((rows - len(array), *array.shape[1:]), array.dtype)
    return np.concatenate([array, pad])


# ------------------------------------------------------------------------------ random requests


def random_posts(
    config: ModelConfig, shape: tuple[int, ...], rng: np.random.Generator
) -> PostFacts:
    """Random posts of `shape`, every one real (no id 0), seen within the last week."""
    impression = _NOW_S - rng.integers(0, _WEEK_S, size=shape)
    return PostFacts(
        post_ids=rng.integers(1, 2**62, size=shape, dtype=np.int64),
        author_ids=rng.integers(1, 2**62, size=shape, dtype=np.int64),
        surface=rng.integers(0, config.num_surfaces, size=shape),
        impression_s=impression,
        created_s=impression - rng.integers(0, 3 * 24 * 3600, size=shape),
        followed_by_viewer=rng.random(shape) < 0.5,
        following_viewer=rng.random(shape) < 0.1,
        counts=rng.integers(0, 10_000, size=(*shape, config.num_counts)),
        sids=rng.integers(0, config.sid_codes + 1, size=(*shape, config.sid_levels)),
    )


def random_history(config: ModelConfig, rng: np.random.Generator) -> Arrays:
    """The `history_*` arrays of one viewer with a full history of random engagements: the user
    tower's request."""
    s = config.history_len
    return pack_history(
        IdHasher(config),
        random_posts(config, (s,), rng),
        rng.random((s, NUM_ACTIONS)) < 0.2,
        rng.random(s).astype(np.float32) * 30,
        np.zeros(s, np.int64),
        np.zeros(1, np.int64),
    )


def random_ranker_request(config: ModelConfig, candidates: int, rng: np.random.Generator) -> Arrays:
    """A batch-1 ranker request: a random viewer with a full history and `candidates` random
    candidates, packed by `phoenix.features` as the orchestrator packs a real one."""
    hasher = IdHasher(config)
    user = pack_user(hasher, rng.integers(1, 2**62, size=1, dtype=np.int64), UserProfile.unknown(1))
    history = random_history(config, rng)
    posts = random_posts(config, (1, candidates), rng)
    return {**user, **history, **pack_candidates(hasher, posts, np.zeros((1, 1), np.int64))}


def random_posts_request(config: ModelConfig, count: int, rng: np.random.Generator) -> Arrays:
    """The candidate tower's request for `count` random posts."""
    posts = random_posts(config, (count,), rng)
    return pack_posts(IdHasher(config), posts.post_ids, posts.author_ids, posts.sids)


def request_from_io(
    io: Mapping[str, Any], rng: np.random.Generator, candidates: int
) -> dict[str, npt.NDArray]:
    """A valid batch-1 request for any exported model from its io.json: rows inside their
    blocks, codes in range, 0/1 flags, and `candidates` candidates (at most the model's
    limit) where a dimension is variable."""
    candidates = min(candidates, io.get("max_candidates") or candidates)
    arrays = {}
    for spec in io["inputs"]:
        shape = [1, *(candidates if d == -1 else d for d in spec["shape"])]
        if "rows" in spec:
            low, high = spec["rows"]  # an empty block (no IP rows, say) admits only 0
            array = rng.integers(low, high + 1, size=shape) if low <= high else np.zeros(shape)
        elif "below" in spec:
            array = rng.integers(0, spec["below"], size=shape)
        elif spec.get("binary"):
            array = (rng.random(shape) < 0.2).astype(np.float32)
        else:
            array = rng.random(shape)
        arrays[spec["name"]] = array.astype(spec["dtype"])
    return arrays


# ------------------------------------------------------------------------- the served config


@dataclass(frozen=True)
class ServedModels:
    """What the served models expect, as read from their config.pbtxt, and the version of the
    set ("": whatever Triton serves as latest). `config` is the ranker's; `configs` holds each
    model's own (a model missing there is served with the ranker's): the towers have X's
    two-tower geometry, so each model's inputs are hashed with its own config."""

    config: ModelConfig
    max_candidates: int
    max_batch: dict[str, int]
    version: str = ""
    configs: dict[str, ModelConfig] = field(default_factory=dict)
    #: The counts ranker requests are padded to (`bucket`), as the exporter chose for its target.
    candidate_buckets: tuple[int, ...] = CANDIDATE_BUCKETS

    def config_of(self, model: str) -> ModelConfig:
        return self.configs.get(model, self.config)

    @functools.cached_property
    def _hashers(self) -> dict[str, IdHasher]:
        return {name: IdHasher(self.config_of(name)) for name in MODEL_NAMES}

    def hasher_of(self, model: str) -> IdHasher:
        """The id hasher of `model`'s inputs (built once per model set)."""
        return self._hashers[model]

    @property
    def hasher(self) -> IdHasher:
        """The ranker's."""
        return self.hasher_of(RANKER)

    def embedding_dim(self, model: str) -> int:
        """The width of a tower's embeddings."""
        return self.config_of(model).emb_dim


def newest_complete_version(index: Iterable[Mapping[str, Any]], where: str) -> str:
    """The newest version that all three models have READY in Triton's repository `index`
    (its entries: name, version, state); TritonUnavailable naming `where` if there is none."""
    ready: dict[str, set[int]] = {name: set() for name in MODEL_NAMES}
    for entry in index:
        version = str(entry.get("version", ""))
        if entry.get("name") in ready and entry.get("state") == "READY" and version.isdigit():
            ready[entry["name"]].add(int(version))
    common = set.intersection(*ready.values())
    if not common:
        found = "; ".join(f"{n}: {sorted(v) or 'none'}" for n, v in ready.items())
        raise TritonUnavailable(
            f"no version is ready in all three models at {where} ({found}); "
            "phoenix export publishes the three under one version"
        )
    return str(max(common))


def read_model_config(config: Mapping[str, Any], model: str, where: str) -> tuple[ModelConfig, int]:
    """(the `ModelConfig` its inputs are hashed with, its candidate limit; 0 for the towers) of
    `model` from its config.pbtxt as JSON (what Triton's model-config call answers);
    TritonUnavailable naming `where` if the exporter's parameters are missing or unusable."""
    params = config.get("parameters", {})
    try:
        model_config = ModelConfig.from_dict(
            json.loads(params[MODEL_CONFIG_PARAMETER]["string_value"])
        )
        limit = int(params[MAX_CANDIDATES_PARAMETER]["string_value"]) if model == RANKER else 0
    except (KeyError, TypeError, ValueError) as exc:
        raise TritonUnavailable(
            f"{model} at {where} has no usable {MODEL_CONFIG_PARAMETER!r}"
            + (f" or {MAX_CANDIDATES_PARAMETER!r}" if model == RANKER else "")
            + f" parameter ({exc}); re-export it with phoenix export"
        ) from exc
    return model_config, limit


def served_models(
    configs: Mapping[str, Mapping[str, Any]], version: str, where: str
) -> ServedModels:
    """The `ServedModels` of `version` from the three models' config.pbtxt (as JSON, by name)."""
    read = {name: read_model_config(configs[name], name, where) for name in MODEL_NAMES}
    return ServedModels(
        config=read[RANKER][0],
        max_candidates=read[RANKER][1],
        max_batch={name: int(configs[name].get("max_batch_size", 1)) for name in MODEL_NAMES},
        version=version,
        configs={name: model_config for name, (model_config, _) in read.items()},
        candidate_buckets=read_candidate_buckets(configs[RANKER], where),
    )


def read_candidate_buckets(config: Mapping[str, Any], where: str) -> tuple[int, ...]:
    """The candidate counts the ranker of `config` (its config.pbtxt as JSON) wants requests
    padded to; `CANDIDATE_BUCKETS` for a ranker exported before the exporter wrote them, and
    TritonUnavailable naming `where` if the parameter is there but unusable."""
    param = config.get("parameters", {}).get(CANDIDATE_BUCKETS_PARAMETER)
    if param is None:
        return CANDIDATE_BUCKETS
    try:
        return parse_buckets(param["string_value"])
    except (KeyError, TypeError, ValueError) as exc:
        raise TritonUnavailable(
            f"{RANKER} at {where} has no usable {CANDIDATE_BUCKETS_PARAMETER!r} parameter "
            f"({exc}); re-export it with phoenix export"
        ) from exc


def served_ranker(client: Any, where: str) -> tuple[ModelConfig, int]:
    """(model config, candidate limit) of the ranker Triton serves as latest, asked with a
    blocking `tritonclient.http` client of the Triton at `where`."""
    return read_model_config(client.get_model_config(RANKER), RANKER, where)


def latest_io(repository: Path, model: str) -> tuple[str, dict[str, Any]]:
    """(version, io.json document) of the newest version of `model` in a model repository that
    has an io.json (written by `phoenix export` next to every version)."""
    model_dir = repository / model
    versions = sorted(
        (int(p.name) for p in model_dir.iterdir() if p.name.isdigit() and p.is_dir()),
        reverse=True,
    )
    for version in versions:
        path = model_dir / str(version) / "io.json"
        if path.is_file():
            return str(version), json.loads(path.read_text())
    raise ServingError(f"{model}: no version under {model_dir} has an io.json (not an export?)")
