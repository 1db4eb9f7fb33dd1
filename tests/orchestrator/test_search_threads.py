"""Searches run with capped BLAS/OpenMP threads (spinning workers would take Triton's CPU)."""

from __future__ import annotations

import numpy  # noqa: F401 - loads the BLAS library the test checks
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from orchestrator.retrieval.threads import limit_threads, search_executor
from phoenix.errors import ConfigError


def _thread_counts() -> set[int]:
    return {pool["num_threads"] for pool in threadpool_info()}


def test_search_workers_run_with_the_capped_thread_count() -> None:
    with threadpool_limits(limits=None):  # restore whatever the process had afterwards
        executor = search_executor(1)
        try:
            counts = executor.submit(_thread_counts).result()
        finally:
            executor.shutdown()
        assert counts == {1}


def test_a_thread_count_below_one_is_refused() -> None:
    with pytest.raises(ConfigError, match="ann_threads"):
        limit_threads(0)
    with pytest.raises(ConfigError, match="ann_threads"):
        search_executor(0)
