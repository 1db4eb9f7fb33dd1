"""Timing one case: client threads that warm up together, then send requests back to back until
the case's budget (a number of requests, or seconds) is spent. Nothing here knows Triton."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from loadtest.triton_bench.clients import Client
from loadtest.triton_bench.settings import BenchSettings, Request


@dataclass(frozen=True)
class CaseTiming:
    latencies_s: list[float]
    wall_s: float


class _Tickets:
    """Hands out request numbers to the client threads until the case's budget is spent."""

    def __init__(self, requests: int | None, min_time_s: float | None) -> None:
        self._lock = threading.Lock()
        self._issued = 0
        self._requests = requests
        self._min_time_s = min_time_s
        self._deadline = float("inf")
        self.stopped = threading.Event()

    def start(self) -> None:
        if self._min_time_s is not None:
            self._deadline = time.perf_counter() + self._min_time_s

    def take(self) -> int | None:
        with self._lock:
            spent = self._requests is not None and self._issued >= self._requests
            if spent or self.stopped.is_set() or time.perf_counter() >= self._deadline:
                return None
            self._issued += 1
            return self._issued - 1


def run_case(
    open_client: Callable[[], Client],
    pool: Sequence[Request],
    concurrency: int,
    settings: BenchSettings,
    on_ready: Callable[[], None] | None = None,
) -> CaseTiming:
    """`concurrency` threads, each with its own client, warm up; once all are warm, `on_ready`
    runs, the clock starts and each thread sends requests back to back until the budget is spent.
    The first error of any thread stops the others and is raised."""
    tickets = _Tickets(settings.requests, settings.min_time_s)
    ready = threading.Barrier(concurrency + 1)
    go = threading.Event()
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        client = None
        try:
            client = open_client()
            for i in range(settings.warmup):
                client.infer(pool[(index + i * concurrency) % len(pool)])
            ready.wait()
            go.wait()
            while (ticket := tickets.take()) is not None:
                request = pool[ticket % len(pool)]
                start = time.perf_counter()
                client.infer(request)
                latencies[index].append(time.perf_counter() - start)
        except threading.BrokenBarrierError:
            pass  # another thread failed first; its error is the one raised
        except BaseException as exc:
            errors.append(exc)
            tickets.stopped.set()
            ready.abort()
        finally:
            if client is not None:
                client.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    start = end = 0.0
    try:
        ready.wait()
        if on_ready is not None:
            on_ready()
        tickets.start()
        start = time.perf_counter()
        go.set()
        for thread in threads:
            thread.join()
        end = time.perf_counter()
    except threading.BrokenBarrierError:
        pass  # a thread failed while warming up; its error is raised below
    except BaseException:  # on_ready failed, or Ctrl-C: let the threads finish their request
        tickets.stopped.set()
        ready.abort()  # releases threads still warming up
        raise
    finally:
        go.set()
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
    return CaseTiming([s for mine in latencies for s in mine], end - start)
