"""Request arrivals for the Locust users: a Poisson process per user.

Locust's `constant_throughput` keeps users that started together in lockstep: with a spawn rate
above the user count, every user fires in the same millisecond each second, Triton's dynamic
batcher merges the burst into one long execution, and latency looks several times worse than the
offered load explains (measured: p50 330 ms at 10 requests/s whose average load was 30% of a
core). Real viewers arrive independently, so each user here draws exponential gaps."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any


def poisson_throughput(rate_per_s: float) -> Callable[[Any], float]:
    """A Locust `wait_time` giving each user Poisson arrivals at `rate_per_s`: the next request is
    scheduled an exponential gap after the previous one was scheduled (not after it finished),
    so slow responses do not lower the offered rate (unless a user falls behind entirely)."""
    if rate_per_s <= 0:
        raise ValueError(f"rate_per_s must be positive, not {rate_per_s}")

    def wait_time(user: Any) -> float:
        now = time.monotonic()
        previous = getattr(user, "_next_arrival", None)
        if previous is None:  # first request: anywhere in the first gap
            previous = now - random.uniform(0, 1 / rate_per_s)
        arrival = max(now, previous + random.expovariate(rate_per_s))
        user._next_arrival = arrival
        return arrival - now

    return wait_time
