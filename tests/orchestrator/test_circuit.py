"""The circuit breaker in front of Triton calls, on a fake clock."""

from __future__ import annotations

import pytest

from orchestrator.circuit import CircuitBreaker
from phoenix.errors import TritonUnavailable


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_it_opens_after_failures_in_a_row_and_fails_calls_at_once() -> None:
    clock = Clock()
    changes: list[bool] = []
    breaker = CircuitBreaker(failures=3, open_s=5.0, clock=clock, on_change=changes.append)
    breaker.before_call()
    assert not breaker.failed("timeout") and not breaker.failed("timeout")
    breaker.succeeded()  # an answer resets the count
    for _ in range(2):
        breaker.before_call()
        breaker.failed("timeout")
    breaker.before_call()
    assert breaker.failed("timeout") and breaker.is_open and changes == [True]
    clock.now += 4.9
    with pytest.raises(TritonUnavailable, match=r"circuit open.*timeout"):
        breaker.before_call()


def test_after_open_s_one_probe_goes_through_and_decides() -> None:
    clock = Clock()
    changes: list[bool] = []
    breaker = CircuitBreaker(failures=1, open_s=2.0, clock=clock, on_change=changes.append)
    breaker.failed("down")
    clock.now += 2.0
    breaker.before_call()  # the probe
    with pytest.raises(TritonUnavailable):
        breaker.before_call()  # only one at a time
    breaker.failed("still down")  # probe failed: open for another open_s
    clock.now += 1.0
    with pytest.raises(TritonUnavailable, match="still down"):
        breaker.before_call()
    clock.now += 1.0
    breaker.before_call()
    breaker.succeeded()
    assert not breaker.is_open and changes == [True, False]
    breaker.before_call()
    breaker.before_call()


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="failures"):
        CircuitBreaker(failures=0)
    with pytest.raises(ValueError, match="open_s"):
        CircuitBreaker(open_s=0)
