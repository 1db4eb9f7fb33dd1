"""The orchestrator's calls to Triton over gRPC: user embeddings, post embeddings and ranking.

What the served models expect (each model's config behind its id hashing and history length, the
candidate limit, the batch limits) is read from Triton itself (`connect`), from the parameters the
exporter writes into each config.pbtxt, so features always match the served version. Requests
are built and the served config is read by `phoenix.triton.requests`, which the load test and
the checks use too; this module adds the connection, versions, timeouts, metrics and failures.

The ranker answers X's serving outputs (log-probabilities); `rank` returns probabilities.

The three models of one export share a version number (export.repository.build). `connect` and
`newest_set` pick the newest version all three have ready, and `pinned` gives a client bound to
that set: each of its calls names the version, so one feed never mixes two exports' models, even
while Triton serves the next set beside it.

Ranker requests are padded to the candidate-count buckets the served ranker names (a few on a
GPU, so that Triton's dynamic batcher can put several viewers' requests into one execution; every
multiple of 64 on a CPU, where padding costs and batching saves little;
`phoenix.triton.requests.ranker_requests`); above the model's candidate limit a request is split.

Two kinds of failure (phoenix.errors): TritonUnavailable (no answer, or too late: the feed
degrades; a circuit breaker, orchestrator.circuit, stops waiting for a Triton known to be down)
and TritonRefused (Triton answered INVALID_ARGUMENT: the orchestrator built a request the served
model does not accept, a bug on our side that is logged, counted and answered as an error, never
hidden in a degraded feed).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from collections.abc import Iterator, Sequence
from contextvars import ContextVar

import numpy as np
import numpy.typing as npt
import tritonclient.grpc.aio as grpcclient
from tritonclient.grpc import KeepAliveOptions
from tritonclient.utils import InferenceServerException

from orchestrator.circuit import CircuitBreaker
from orchestrator.metrics import Metrics
from phoenix.errors import TritonRefused, TritonUnavailable
from phoenix.features import Arrays
from phoenix.serving import CANDIDATE_TOWER, MODEL_NAMES, RANKER, USER_TOWER
from phoenix.triton.requests import (
    MODEL_OUTPUTS,
    ServedModels,
    bucket,
    infer_inputs,
    newest_complete_version,
    ranker_requests,
    requested_outputs,
    served_models,
    tower_requests,
)

__all__ = ["PhoenixTriton", "ServedModels", "TritonRefused", "TritonUnavailable", "recorded_calls"]

log = logging.getLogger(__name__)

#: gRPC statuses that mean Triton read the request and refused it (everything else: unavailable).
_REFUSED = {"StatusCode.INVALID_ARGUMENT", "StatusCode.OUT_OF_RANGE"}
#: gRPC reconnects quickly after Triton comes back (the default backoff grows to 120 s).
_RECONNECT_BACKOFF_MS = (250, 1000)


#: The (model, version) pairs called in the current context (a feed), when recorded.
_CALLS: ContextVar[set[tuple[str, str]] | None] = ContextVar("phoenix_triton_calls", default=None)


@contextlib.contextmanager
def recorded_calls() -> Iterator[set[tuple[str, str]]]:
    """Collect the (model, version) of every Triton call made inside (tasks started inside too)."""
    calls: set[tuple[str, str]] = set()
    token = _CALLS.set(calls)
    try:
        yield calls
    finally:
        _CALLS.reset(token)


class PhoenixTriton:
    """An asyncio gRPC client for the three Phoenix models, with metrics per call."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 2.0,
        metrics: Metrics | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.url = url.removeprefix("grpc://")
        self.timeout_s = timeout_s
        self._metrics = metrics or Metrics()
        self.breaker = breaker or CircuitBreaker()
        self.breaker.on_change = self._circuit_changed
        self._client: grpcclient.InferenceServerClient | None = None
        self._served: ServedModels | None = None
        self._root = self  # pinned views share their root's connection

    # ---------------------------------------------------------------- connection

    def pinned(self, served: ServedModels) -> PhoenixTriton:
        """A client bound to one model set: `served` never changes under it, and every call asks
        Triton for its version. It shares this client's connection, breaker and metrics."""
        view = copy.copy(self)
        view._served = served
        return view

    def _grpc(self) -> grpcclient.InferenceServerClient:
        if self._root is not self:
            return self._root._grpc()
        if self._client is None:
            keepalive = KeepAliveOptions()
            self._client = grpcclient.InferenceServerClient(
                self.url,
                channel_args=[
                    ("grpc.max_send_message_length", 2**31 - 1),
                    ("grpc.max_receive_message_length", 2**31 - 1),
                    ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
                    ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
                    ("grpc.initial_reconnect_backoff_ms", _RECONNECT_BACKOFF_MS[0]),
                    ("grpc.min_reconnect_backoff_ms", _RECONNECT_BACKOFF_MS[0]),
                    ("grpc.max_reconnect_backoff_ms", _RECONNECT_BACKOFF_MS[1]),
                ],
            )
        return self._client

    def _circuit_changed(self, opened: bool) -> None:
        self._metrics.circuit_open.set(1 if opened else 0)
        if opened:
            log.warning(
                "Triton circuit open: calls fail at once for %gs, then one probe",
                self.breaker.open_s,
            )
        else:
            log.info("Triton circuit closed: Triton answers again")

    async def close(self) -> None:
        if self._root is self and self._client is not None:
            await self._client.close()
            self._client = None

    @property
    def served(self) -> ServedModels:
        """The served models' description; TritonUnavailable before a successful `connect`."""
        if self._served is None:
            raise TritonUnavailable(f"not connected to Triton at {self.url}")
        return self._served

    async def connect(self) -> ServedModels:
        """The newest complete model set (`newest_set`), which unpinned calls use from now on."""
        self._served = await self.newest_set()
        return self._served

    async def newest_set(self) -> ServedModels:
        """The newest version that all three models have ready, with what it expects;
        TritonUnavailable if there is none."""
        try:
            index = await self._grpc().get_model_repository_index(
                as_json=True, client_timeout=self.timeout_s
            )
        except InferenceServerException as exc:
            reason = f"repository index: {_reason(exc)} (Triton at {self.url})"
            raise TritonUnavailable(reason) from exc
        version = newest_complete_version(index.get("models", []), self.url)
        if self._served is not None and self._served.version == version:
            return self._served
        configs = {}
        for name in MODEL_NAMES:
            try:
                response = await self._grpc().get_model_config(
                    name, model_version=version, as_json=True, client_timeout=self.timeout_s
                )
            except InferenceServerException as exc:
                raise TritonUnavailable(f"{name}: {_reason(exc)} (Triton at {self.url})") from exc
            configs[name] = response["config"]
        return served_models(configs, version, self.url)

    async def is_ready(self) -> bool:
        """Triton is up and all three models are ready."""
        try:
            client = self._grpc()
            if not await client.is_server_ready(client_timeout=self.timeout_s):
                return False
            for name in MODEL_NAMES:
                if not await client.is_model_ready(name, client_timeout=self.timeout_s):
                    return False
        except InferenceServerException:
            return False
        return True

    # ---------------------------------------------------------------- models

    async def embed_users(self, history: Arrays) -> npt.NDArray[np.float32]:
        """User embeddings [B, D] for the packed `history_*` inputs of B viewers (hashed with
        the user tower's config)."""
        (embedding,) = await self._infer(USER_TOWER, history, MODEL_OUTPUTS[USER_TOWER])
        return embedding

    async def embed_posts(self, posts: Arrays) -> npt.NDArray[np.float32]:
        """Post embeddings [N, D] of `phoenix.features.pack_posts` arrays (`post_hash`,
        `author_hash`, `sids`, hashed with the candidate tower's config), in calls of at most
        the candidate tower's max batch."""
        requests = tower_requests(posts, self.served.max_batch[CANDIDATE_TOWER])
        calls = [
            self._infer(CANDIDATE_TOWER, request, MODEL_OUTPUTS[CANDIDATE_TOWER])
            for request in requests
        ]
        if not calls:
            return np.zeros((0, self.served.embedding_dim(CANDIDATE_TOWER)), np.float32)
        parts = await asyncio.gather(*calls)
        return np.concatenate([p[0] for p in parts])

    async def rank(
        self, viewer: Arrays, candidates: Arrays
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """(probabilities [C, N_a] in X's action columns, continuous outputs [C, N_cont]) for
        one viewer (`user_*` and `history_*`, batch 1) and C candidates ([C, ...] arrays), in
        one call per `max_candidates` candidates."""
        requests = ranker_requests(viewer, candidates, self.served.max_candidates, self.bucket)
        results = await asyncio.gather(
            *(self._infer(RANKER, request, MODEL_OUTPUTS[RANKER]) for request, _ in requests)
        )
        sizes = [size for _, size in requests]
        log_probs = np.concatenate([r[0][0][:n] for r, n in zip(results, sizes, strict=True)])
        continuous = np.concatenate([r[1][0][:n] for r, n in zip(results, sizes, strict=True)])
        return np.exp(log_probs), continuous

    def bucket(self, count: int) -> int:
        """The candidate count a request of `count` candidates is padded to."""
        return bucket(count, self.served.candidate_buckets, self.served.max_candidates)

    async def _infer(
        self, model: str, arrays: Arrays, outputs: Sequence[str]
    ) -> list[npt.NDArray[np.float32]]:
        inputs = infer_inputs(grpcclient, arrays)
        requested = requested_outputs(grpcclient, outputs)
        self.breaker.before_call()
        version = "" if self._served is None else self._served.version
        calls = _CALLS.get()
        if calls is not None:
            calls.add((model, version))
        start = time.perf_counter()
        try:
            result = await self._grpc().infer(
                model,
                inputs,
                model_version=version,
                outputs=requested,
                client_timeout=self.timeout_s,
            )
        except InferenceServerException as exc:
            if str(exc.status()) in _REFUSED:
                self.breaker.succeeded()  # Triton is up: it read the request
                self._metrics.triton_refused.labels(model).inc()
                log.error(
                    "Triton refused a %s request the orchestrator built (a contract bug between "
                    "the orchestrator and the served model): %s",
                    model, _reason(exc),
                )  # fmt: skip
                raise TritonRefused(f"{model}: {_reason(exc)}") from exc
            self.breaker.failed(_reason(exc))
            self._metrics.triton_errors.labels(model).inc()
            raise TritonUnavailable(f"{model}: {_reason(exc)}") from exc
        finally:
            self._metrics.triton_latency.labels(model).observe(time.perf_counter() - start)
        self.breaker.succeeded()
        return [result.as_numpy(name) for name in outputs]


def _reason(exc: InferenceServerException) -> str:
    status = exc.status()
    message = exc.message() or str(exc)
    return f"{status}: {message}" if status else message
