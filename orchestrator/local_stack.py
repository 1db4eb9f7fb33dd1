"""The whole stack on this machine, in one context manager: the real `tritonserver` on an exported
repository, and the orchestrator's app on uvicorn in a background thread, both on free ports.

`phoenix demo`, the integration tests and the load tests start the stack this way. The stack makes
its own service token (`service_token`, `headers`) for its callers; `tokens` adds more.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import httpx
import uvicorn

from orchestrator.app import KEEP_ALIVE_S, create_app
from orchestrator.auth import SERVICE, Authenticator, TokenOwner, new_token
from orchestrator.build import build_service
from orchestrator.settings import OrchestratorSettings
from phoenix.errors import ServingError
from phoenix.machine import usable_cpus
from phoenix.serving import ORT_THREADS_ENV
from phoenix.triton.server import TritonServer, free_port
from phoenix.triton.supervisor import TritonSupervisor


def served_model_environment() -> dict[str, str]:
    """ONNX Runtime threads per served model when Triton and the orchestrator share this machine:
    one per usable CPU (`phoenix.machine.usable_cpus`: the CPUs this process may run on). With
    idle threads not spinning (`PHOENIX_ORT_SPIN` off), two threads per model gave a lower p99
    than one on 2 cores at the low steps of the feed's knee run (5 feeds/s: 215-218 ms against
    246-277, interleaved runs), where the knee is decided; above it the two were within noise
    (docs/BENCHMARKS.md). An explicit PHOENIX_ORT_THREADS in the environment wins."""
    threads = os.environ.get(ORT_THREADS_ENV) or str(usable_cpus())
    return {ORT_THREADS_ENV: threads}


class AppServer:
    """A FastAPI app served by uvicorn in a daemon thread (start, wait, stop)."""

    def __init__(self, app: object, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port or free_port()
        self._server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=host,
                port=self.port,
                log_level="warning",
                lifespan="on",
                timeout_keep_alive=KEEP_ALIVE_S,
            )
        )
        self._thread = threading.Thread(target=self._server.run, name="uvicorn", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 60.0) -> str:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive():
                raise ServingError(f"the orchestrator did not start on {self.url} (see the log)")
            if time.monotonic() > deadline:
                raise ServingError(f"the orchestrator did not start within {timeout_s:g}s")
            time.sleep(0.05)
        return self.url

    def stop(self, timeout_s: float = 30.0) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=timeout_s)


class LocalStack:
    """Triton, supervised (restarted when it dies, counted in the orchestrator's
    phoenix_triton_restarts_total), plus the orchestrator. `triton_grpc_port` is fixed at
    construction, so a test can stop Triton and start it again where the orchestrator expects it.
    The orchestrator's state is the data directory `data` (`world` imported first when it is
    empty: `orchestrator.build.open_store`)."""

    def __init__(
        self,
        repository: Path,
        *,
        data: Path,
        world: Path | None = None,
        port: int = 0,
        host: str = "127.0.0.1",
        tokens: Mapping[str, TokenOwner] | None = None,
        **settings: object,
    ) -> None:
        self.triton_grpc_port = free_port()
        self.settings = OrchestratorSettings(
            data=data, world=world, triton_url=f"127.0.0.1:{self.triton_grpc_port}", **settings
        )
        self.service = build_service(self.settings)
        self.triton = TritonSupervisor(
            TritonServer(
                repository,
                http_port=0,
                grpc_port=self.triton_grpc_port,
                metrics_port=0,
                environment=served_model_environment(),
            ),
            on_restart=lambda count: self.service.metrics.triton_restarts.inc(),
        )
        self.service_token = new_token()
        auth = Authenticator({self.service_token: SERVICE, **(tokens or {})})
        self.app_server = AppServer(create_app(self.service, auth=auth), host=host, port=port)

    @property
    def headers(self) -> dict[str, str]:
        """The Authorization header of the stack's service token."""
        return {"Authorization": f"Bearer {self.service_token}"}

    @property
    def url(self) -> str:
        return self.app_server.url

    def start(self, ready_timeout_s: float = 300.0) -> LocalStack:
        self.triton.start()
        try:
            self.app_server.start()
            self.wait_ready(ready_timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout_s: float = 300.0) -> None:
        """Until /readyz says Triton answers and the post index is built."""
        deadline = time.monotonic() + timeout_s
        with httpx.Client(base_url=self.url, timeout=10.0) as client:
            while True:
                response = client.get("/readyz")
                if response.status_code == 200:
                    return
                if time.monotonic() > deadline:
                    raise ServingError(f"the orchestrator is not ready: {response.text}")
                time.sleep(0.2)

    def stop(self) -> None:
        self.app_server.stop()
        self.triton.stop()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
