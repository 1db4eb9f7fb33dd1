"""Keep a tritonserver running: restart it when it dies, with backoff, a log line and a count.

A single request can abort tritonserver 2.51 (an HTTP inference request whose JSON `shape` claims
far more elements than it carries makes the server allocate them: `std::bad_alloc`, SIGABRT; the
binary has no option to cap an HTTP request's input size). Whatever the cause, the supervisor
notices the exit within `poll_s`, logs it with the server's own error lines, reaps it (which
removes its shared memory, see TritonServer.stop) and starts it again on the same ports, after
1, 2, 4, ... up to `max_backoff_s` seconds while restarts keep failing; a run that lasted
`stable_s` resets the backoff. Clients (the orchestrator) see it down for the restart's duration
and reconnect by themselves.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from phoenix.errors import ServingError
from phoenix.triton.server import TritonEndpoints, TritonServer, _error_summary

log = logging.getLogger(__name__)


class TritonSupervisor:
    """A TritonServer restarted whenever it dies, until `stop()`. `on_restart(count)` is called
    after each successful restart (e.g. to count it in Prometheus)."""

    def __init__(
        self,
        server: TritonServer,
        *,
        poll_s: float = 0.2,
        first_backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        stable_s: float = 60.0,
        on_restart: Callable[[int], None] | None = None,
    ) -> None:
        self.server = server
        self._poll_s = poll_s
        self._first_backoff_s = first_backoff_s
        self._max_backoff_s = max_backoff_s
        self._stable_s = stable_s
        self._on_restart = on_restart
        self.restarts = 0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_at = 0.0

    # ------------------------------------------------------------ what the server offers

    @property
    def endpoints(self) -> TritonEndpoints:
        return self.server.endpoints

    @property
    def pid(self) -> int | None:
        return self.server.pid

    @property
    def log_path(self) -> Path:
        return self.server.log_path

    def is_running(self) -> bool:
        return self.server.is_running()

    # ------------------------------------------------------------ lifecycle

    def start(self) -> TritonEndpoints:
        """Start the server (ServingError if the first start fails), then watch it."""
        endpoints = self.server.start()
        self.watch()
        return endpoints

    def watch(self) -> None:
        """Watch the (started) server from a background thread, restarting it when it dies."""
        if self._thread is not None:
            return
        self._started_at = time.monotonic()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._watch, name="triton-supervisor", daemon=True)
        self._thread.start()

    def stop_watching(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def stop(self, timeout_s: float = 30.0) -> int:
        """Stop watching, then stop the server; its exit code."""
        self.stop_watching()
        return self.server.stop(timeout_s)

    def _watch(self) -> None:
        failures = 0  # restarts in a row that did not last stable_s
        while not self._stopping.wait(self._poll_s):
            if self.server.is_running():
                continue
            lasted = time.monotonic() - self._started_at
            failures = 0 if lasted >= self._stable_s else failures + 1
            code = self.server.stop(timeout_s=0.0)  # reap it and its stubs, free its memory
            errors = _error_summary(self.server.log_tail(200))
            delay = min(self._max_backoff_s, self._first_backoff_s * 2 ** max(0, failures - 1))
            log.error(
                "tritonserver died (exit code %d after %.0f s%s); restarting in %.0f s",
                code, lasted, f": {errors[-1]}" if errors else "", delay,
            )  # fmt: skip
            if self._stopping.wait(delay):
                return
            try:
                self.server.start()
            except ServingError as exc:
                log.error("tritonserver restart failed: %s", str(exc).split("\n", 1)[0])
                self._started_at = time.monotonic()
                continue
            self._started_at = time.monotonic()
            self.restarts += 1
            log.warning("tritonserver restarted (restart %d, pid %s)", self.restarts, self.pid)
            if self._on_restart is not None:
                self._on_restart(self.restarts)

    def __enter__(self) -> TritonSupervisor:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
