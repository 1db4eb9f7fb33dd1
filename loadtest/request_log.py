"""Every request of a Locust run, one JSON line each (time into the run, name, latency, failed), so
a step load can be analysed per step with exact percentiles (Locust's own history keeps only a
10-second window of percentiles)."""

from __future__ import annotations

import json
import os
import time
from typing import Any, TextIO

from locust import events

from loadtest.env import LOG_ENV


def install() -> None:
    """Log requests to the file named by PHOENIX_LOADTEST_REQUEST_LOG, if set."""
    path = os.environ.get(LOG_ENV)
    if not path:
        return
    state: dict[str, Any] = {"file": None, "t0": None}

    @events.test_start.add_listener
    def _open(**_: Any) -> None:
        state["file"] = open(path, "w", buffering=1 << 16)  # noqa: SIM115 - closed at test_stop
        state["t0"] = time.monotonic()

    @events.request.add_listener
    def _log(name: str, response_time: float, exception: Exception | None, **_: Any) -> None:
        f: TextIO | None = state["file"]
        if f is not None:
            t = round(time.monotonic() - state["t0"], 3)
            f.write(json.dumps([t, name, round(response_time, 3), exception is not None]) + "\n")

    @events.test_stop.add_listener
    def _close(**_: Any) -> None:
        if state["file"] is not None:
            state["file"].close()
            state["file"] = None
