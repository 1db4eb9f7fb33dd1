"""The local stack's choice of ONNX Runtime threads for the served models (the stack itself runs
in tests/integration/test_feed_service.py)."""

from __future__ import annotations

import pytest

import orchestrator.local_stack as local_stack
from phoenix.serving import ORT_THREADS_ENV


@pytest.mark.parametrize(("cpus", "threads"), [(1, "1"), (2, "2"), (8, "8")])
def test_served_models_get_a_thread_per_usable_cpu(
    monkeypatch: pytest.MonkeyPatch, cpus: int, threads: str
) -> None:
    monkeypatch.delenv(ORT_THREADS_ENV, raising=False)
    monkeypatch.setattr(local_stack, "usable_cpus", lambda: cpus)
    assert local_stack.served_model_environment() == {ORT_THREADS_ENV: threads}


def test_an_explicit_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ORT_THREADS_ENV, "3")
    assert local_stack.served_model_environment() == {ORT_THREADS_ENV: "3"}
