"""What the benchmark asks Triton's HTTP admin API: whether the models are ready, and how many
inferences and model executions Triton has counted."""

from __future__ import annotations

import time
from collections.abc import Sequence

import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from loadtest.triton_bench.settings import READY_TIMEOUT_S, STATS_TIMEOUT_S
from phoenix.errors import ServingError


def wait_until_ready(admin: triton_http.InferenceServerClient, models: Sequence[str]) -> None:
    """Wait for every model in `models` to be ready, at most `READY_TIMEOUT_S` for all."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    for model in models:
        while not _is_ready(admin, model):
            if time.monotonic() > deadline:
                raise ServingError(f"Triton: {model} not ready after {READY_TIMEOUT_S:.0f} s")
            time.sleep(0.2)


def _is_ready(admin: triton_http.InferenceServerClient, model: str) -> bool:
    try:
        return bool(admin.is_model_ready(model))
    except InferenceServerException as exc:
        raise ServingError(f"Triton readiness of {model}: {exc}") from exc


class ServedCounts:
    """Triton's (inference_count, execution_count) per model, read once Triton has counted every
    request this benchmark sent it: statistics are updated just after each response (and a read
    has been seen to come back empty once)."""

    def __init__(self, admin: triton_http.InferenceServerClient) -> None:
        self._admin = admin
        self._sent: dict[str, int] = {}

    def sent(self, model: str, requests: int) -> None:
        """Record `requests` more batch-1 requests sent to `model` (each is one inference)."""
        self._sent[model] = self._sent.get(model, 0) + requests

    def read(self, model: str) -> tuple[int, int]:
        expected = self._sent.get(model, 0)
        deadline = time.monotonic() + STATS_TIMEOUT_S
        while True:
            try:
                found = self._admin.get_inference_statistics(model_name=model)["model_stats"]
            except InferenceServerException as exc:
                raise ServingError(f"Triton statistics of {model}: {exc}") from exc
            counts = (
                sum(int(s.get("inference_count", 0)) for s in found),
                sum(int(s.get("execution_count", 0)) for s in found),
            )
            if counts[0] >= expected:
                return counts
            if time.monotonic() > deadline:
                raise ServingError(
                    f"Triton counted {counts[0]} inferences of {model} after "
                    f"{STATS_TIMEOUT_S:g} s; this benchmark sent {expected}"
                )
            time.sleep(0.01)
