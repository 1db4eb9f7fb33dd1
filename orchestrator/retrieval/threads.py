"""CPU threads for searches. One user embedding per feed request gains nothing from a parallel
search, and idle BLAS/OpenMP workers spin-wait for work, taking the CPU that Triton needs when
both share a small machine (on 2 cores, unlimited threads tripled the ranker's latency)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from threadpoolctl import threadpool_limits

from phoenix.errors import ConfigError


def limit_threads(threads: int) -> None:
    """Cap the BLAS libraries (process-wide) and OpenMP (for the calling thread) to `threads`."""
    if threads < 1:
        raise ConfigError(f"ann_threads: must be at least 1, not {threads}")
    threadpool_limits(limits=threads)


def search_executor(threads: int, workers: int = 2) -> ThreadPoolExecutor:
    """Worker threads for searches, each with OpenMP capped to `threads` (OpenMP's thread count
    is per calling thread, so it is set in the thread that searches; the BLAS caps are
    process-wide). The calling thread's own OpenMP setting is left alone."""
    if threads < 1:
        raise ConfigError(f"ann_threads: must be at least 1, not {threads}")
    return ThreadPoolExecutor(
        max_workers=workers,
        thread_name_prefix="ann-search",
        initializer=limit_threads,
        initargs=(threads,),
    )
