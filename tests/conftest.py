"""Fixtures shared by several test directories."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from redis_server import redis_server  # noqa: F401  (a real redis-server per test: tests/redis_server.py)
from tiny_export import tiny_export  # noqa: F401  (one exported tiny model set: tests/tiny_export.py)

from phoenix.triton.server import free_port


class ServeProcess:
    """`phoenix serve` as a real process on a free port, with no Triton behind it unless the
    options name one (degraded feeds); every process started is ended when the test ends."""

    def __init__(self) -> None:
        self._processes: list[subprocess.Popen[str]] = []

    def start(self, *options: str, timeout_s: float = 120.0) -> tuple[subprocess.Popen[str], str]:
        """Start it with `options` (--data, --world...) and wait until /healthz answers."""
        port = free_port()
        command = [
            sys.executable, "-m", "phoenix", "serve",
            "--triton", f"127.0.0.1:{free_port()}", "--triton-timeout", "0.2",
            "--port", str(port), *options,
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("PHOENIX_")}
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        self._processes.append(process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout_s
        while True:
            assert process.poll() is None, process.stdout.read()  # type: ignore[union-attr]
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    return process, url
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"phoenix serve did not answer in {timeout_s} s"
            time.sleep(0.2)

    @staticmethod
    def stop(process: subprocess.Popen[str]) -> str:
        """Ctrl-C, then its output."""
        process.send_signal(signal.SIGINT)
        try:
            out, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            out, _ = process.communicate()
        return out

    @staticmethod
    def kill(process: subprocess.Popen[str]) -> None:
        """kill -9: no shutdown code runs."""
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)

    def close(self) -> None:
        for process in self._processes:
            if process.poll() is None:
                process.kill()
                process.communicate()


@pytest.fixture
def phoenix_serve() -> Iterator[ServeProcess]:
    serve = ServeProcess()
    try:
        yield serve
    finally:
        serve.close()
