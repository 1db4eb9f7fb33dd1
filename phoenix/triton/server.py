"""Start the `tritonserver` binary carried by the nvidia-pytriton wheel on a classic model
repository, wait until every model in it is loaded, and stop it again without leaving a process.

The wheel carries tritonserver 2.51 with the Python backend only (docs/DESIGN.md §9). To serve a
repository of our own with it:

- its `--backend-directory` must hold `python/` with `libtriton_python.so` and the
  `triton_python_backend_stub` built for the running Python minor version; we assemble one from
  symbolic links into the wheel, per server, in a temporary directory;
- the dynamic loader must find the wheel's bundled libraries (`nvidia_pytriton.libs`) and the
  interpreter's `libpython3.X.so` (`LIBDIR`): both go on `LD_LIBRARY_PATH`;
- the stub embeds CPython in an isolated configuration: it ignores `PYTHONPATH`,
  `PYTHONDONTWRITEBYTECODE` and the like, and takes its `sys.prefix` (and with it the virtual
  environment's site-packages) from the first `python3` on `PATH`. The current interpreter's
  `bin` directory goes first on `PATH`, so models import the numpy and onnxruntime we run with.

Because the stub ignores `PYTHONDONTWRITEBYTECODE`, it writes `__pycache__` into a version
directory the first time it imports `model.py`; in poll mode Triton takes that for a change and
loads the version a second time. `precompile_model_sources` writes that cache beforehand;
`TritonServer.start` runs it on the repository, and exporters should run it on a version
directory before moving it into place.

The Python backend keeps a shared-memory region per model instance in /dev/shm, which a server
that crashes leaves behind. Each start names its regions with a prefix of its own
(`shm-region-prefix-name`), and `stop()` removes whatever is left under that prefix.
"""

from __future__ import annotations

import compileall
import contextlib
import ctypes
import http.client
import importlib.util
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from phoenix.errors import ConfigError, ServingError

log = logging.getLogger(__name__)

_INSTALL_HINT = (
    "install the serving extra (pip install -e '.[serve]', which brings nvidia-pytriton) "
    "on Linux x86_64 with glibc >= 2.35"
)
#: How many lines of the server's log a start-up error quotes.
_TAIL_LINES = 40
#: Error lines every CPU-only start prints; they say nothing about the repository.
_NOISE = ("CudaDriverHelper has not been initialized",)
#: A glog error line: `E1123 09:01:17.375960 19682 model_lifecycle.cc:642] "message"`.
_GLOG_ERROR = re.compile(r'^E\d{4} [\d:.]+\s+\d+ [\w.]+:\d+\] "?(.*?)"?$')
_PR_SET_PDEATHSIG = 1
#: Where the Python backend puts its shared-memory regions.
_SHM_DIR = Path("/dev/shm")


@dataclass(frozen=True)
class TritonEndpoints:
    """Where a running server answers, in the forms its clients take."""

    http: str  # "127.0.0.1:PORT", the url form of tritonclient.http (no scheme)
    grpc: str  # "127.0.0.1:PORT", the url form of tritonclient.grpc
    metrics: str  # "http://127.0.0.1:PORT/metrics", Prometheus text


@dataclass(frozen=True)
class _Installation:
    """The files of the nvidia-pytriton wheel that a classic-repository server needs."""

    binary: Path  # tritonserver
    python_backend: Path  # directory with libtriton_python.so and triton_python_backend_utils.py
    stub: Path  # triton_python_backend_stub for this interpreter's Python minor version
    libs: Path  # nvidia_pytriton.libs, the wheel's bundled shared libraries


def _installation() -> _Installation:
    # find_spec, not import: importing pytriton pulls in its whole client and server stack.
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise ServingError(f"nvidia-pytriton is not installed: {_INSTALL_HINT}")
    package = Path(next(iter(spec.submodule_search_locations)))
    root = package / "tritonserver"
    binary = root / "bin" / "tritonserver"
    if not binary.is_file():
        raise ServingError(f"nvidia-pytriton carries no tritonserver at {binary}: {_INSTALL_HINT}")
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stubs = root / "python_backend_stubs"
    stub = stubs / version / "triton_python_backend_stub"
    if not stub.is_file():
        carried = sorted(p.name for p in stubs.iterdir()) if stubs.is_dir() else []
        raise ServingError(
            f"nvidia-pytriton carries no Python backend stub for Python {version} (it has "
            f"{', '.join(carried) or 'none'}); run phoenix with one of those Python versions"
        )
    return _Installation(
        binary=binary,
        python_backend=root / "backends" / "python",
        stub=stub,
        libs=package.parent / "nvidia_pytriton.libs",
    )


def locate_tritonserver() -> Path:
    """The `tritonserver` binary of the installed nvidia-pytriton wheel.

    Raises ServingError, with an install hint, when the wheel or its binary is missing.
    """
    return _installation().binary


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def precompile_model_sources(directory: Path) -> None:
    """Write the bytecode cache of every `.py` file under `directory` (a repository, a model or a
    version directory), as the Python backend would on first load.

    The stub cannot be told not to write it, and in poll mode the new `__pycache__` counts as a
    change of the version directory, so Triton would load the version a second time. Files that do
    not compile are left to the server to report.
    """
    compileall.compile_dir(str(directory), quiet=2)


def _port_in_use(host: str, port: int) -> bool:
    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # As servers do, so that connections in TIME_WAIT do not count as in use.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address[:2])
        except OSError:
            return True
    return False


def _client_host(host: str) -> str:
    """The address a client on this machine uses to reach a server bound to `host`."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _parent_death_signal() -> Callable[[], None] | None:
    """A pre-exec hook that has the kernel send the server SIGTERM if we die without stopping it.

    Only from the main thread: the kernel sends the signal when the *thread* that started the
    child exits, which for a worker thread may be long before the process does.
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not (
        threading.main_thread()
    ):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here, not in the forked child

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return hook


def _error_summary(lines: Sequence[str]) -> list[str]:
    """The first line of each distinct error message in a tritonserver log."""
    found: list[str] = []
    for line in lines:
        if match := _GLOG_ERROR.match(line):
            message = match.group(1)
        elif line.startswith("error: "):
            message = line
        elif "libprotobuf ERROR" in line:
            message = line.split("] ", 1)[-1]
        else:
            continue
        message = message.replace("\\n", "\n").strip().split("\n", 1)[0]
        if message and message not in found and not any(n in message for n in _NOISE):
            found.append(message)
    return found[:10]


class TritonServer:
    """One `tritonserver` process serving a classic model repository in poll mode.

    `start()` returns once `/v2/health/ready` answers 200; with `--strict-readiness=true` that
    means every model in the repository is loaded, and with `--exit-on-error=true` a model that
    fails to load at start-up makes the server exit, so `start()` fails with its message instead of
    waiting out `startup_timeout_s`. After start-up the server polls the repository every
    `poll_interval_s` (whole seconds): a new version directory is loaded and replaces the old one
    with no restart; a new version that fails to load leaves the old one serving.

    A port of 0 means "pick a free port" (at the first start; a restart keeps the ports, so that
    clients find the server where it was). The server's stdout and stderr go to
    `log_file`, appended to, or by default to a file in a new temporary directory that is kept
    after `stop()` so the log can still be read. `start()` also writes the bytecode cache of the
    repository's Python files (see `precompile_model_sources`). `extra_args` are passed to
    tritonserver after ours (for a flag given twice, Triton keeps the last value); `environment`
    adds to (or overrides) the variables the server and its models see, e.g. the served models'
    `PHOENIX_ORT_THREADS`.
    """

    def __init__(
        self,
        repository: Path,
        *,
        http_port: int = 8000,
        grpc_port: int = 8001,
        metrics_port: int = 8002,
        host: str = "127.0.0.1",
        poll_interval_s: float = 1.0,
        log_verbose: int = 0,
        log_file: Path | None = None,
        extra_args: Sequence[str] = (),
        startup_timeout_s: float = 120.0,
        environment: Mapping[str, str] | None = None,
    ) -> None:
        ports = {"http_port": http_port, "grpc_port": grpc_port, "metrics_port": metrics_port}
        for name, port in ports.items():
            if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
                raise ConfigError(f"{name} must be an integer 0-65535 (0 picks one), not {port!r}")
        fixed = [p for p in ports.values() if p]
        if len(fixed) != len(set(fixed)):
            raise ConfigError(f"http_port, grpc_port and metrics_port must differ, not {fixed}")
        if not poll_interval_s > 0:
            raise ConfigError(f"poll_interval_s must be positive, not {poll_interval_s!r}")
        if log_verbose < 0:
            raise ConfigError(f"log_verbose must be 0 or more, not {log_verbose!r}")
        if not startup_timeout_s > 0:
            raise ConfigError(f"startup_timeout_s must be positive, not {startup_timeout_s!r}")
        self._repository = Path(repository)
        self._ports = (http_port, grpc_port, metrics_port)
        self._host = host
        self._poll_secs = max(1, round(poll_interval_s))
        self._log_verbose = log_verbose
        self._log_file = None if log_file is None else Path(log_file).absolute()
        self._extra_args = tuple(extra_args)
        self._environment = dict(environment or {})
        self._startup_timeout_s = startup_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._returncode: int | None = None
        self._endpoints: TritonEndpoints | None = None
        self._log_path: Path | None = self._log_file
        self._log_offset = 0
        self._workdir: Path | None = None
        self._shm_prefix: str | None = None

    # ---------------------------------------------------------------- state

    @property
    def endpoints(self) -> TritonEndpoints:
        """Where the server answers; ServingError before the first `start()`."""
        if self._endpoints is None:
            raise ServingError("the Triton server has not been started")
        return self._endpoints

    @property
    def log_path(self) -> Path:
        """The file the server's stdout and stderr go to; ServingError if it is not known yet
        (no `log_file` given and never started)."""
        if self._log_path is None:
            raise ServingError("the Triton server has not been started, so it has no log yet")
        return self._log_path

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (or has exited and not been stopped yet)."""
        return None if self._process is None else self._process.pid

    def is_running(self) -> bool:
        """Whether the server process is alive (ready or not)."""
        return self._process is not None and not self._exited()

    def log_tail(self, lines: int = _TAIL_LINES) -> list[str]:
        """The last `lines` lines this server wrote to its log in its latest run."""
        return self._log_lines()[-lines:]

    def _log_lines(self) -> list[str]:
        """Every line of the log written in the latest run."""
        if self._log_path is None or not self._log_path.is_file():
            return []
        with self._log_path.open("rb") as f:
            f.seek(self._log_offset)
            return f.read().decode("utf-8", errors="replace").splitlines()

    # ---------------------------------------------------------------- start

    def start(self) -> TritonEndpoints:
        """Start the server and wait until it is ready; return its endpoints.

        Raises ServingError, after killing the server, if the repository is not a directory, a
        port is in use, or the server exits or is not ready within `startup_timeout_s`; the
        message quotes the server's errors and the tail of its log.
        """
        if self.is_running():
            raise ServingError(f"the Triton server is already running (pid {self.pid})")
        if self._process is not None:
            self.stop()  # it exited on its own: reap it before starting again
        repository = self._repository.absolute()
        if not repository.exists():
            raise ServingError(f"model repository (--repository) {repository} does not exist")
        if not repository.is_dir():
            raise ServingError(f"model repository (--repository) {repository} is not a directory")
        installation = _installation()
        http_port, grpc_port, metrics_port = self._resolve_ports()
        self._ports = (http_port, grpc_port, metrics_port)  # a restart answers where it did
        for what, port in (("HTTP", http_port), ("gRPC", grpc_port), ("metrics", metrics_port)):
            if _port_in_use(self._host, port):
                raise ServingError(f"{what} port {port} on {self._host} is already in use")

        self._workdir = Path(tempfile.mkdtemp(prefix="phoenix-triton-"))
        backends = self._assemble_backends(self._workdir, installation)
        self._log_path = self._log_file or self._workdir / "tritonserver.log"
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        precompile_model_sources(repository)
        self._shm_prefix = f"phoenix_triton_{uuid.uuid4().hex[:12]}_"
        command = [
            str(installation.binary),
            f"--model-repository={repository}",
            "--model-control-mode=poll",
            f"--repository-poll-secs={self._poll_secs}",
            "--strict-readiness=true",
            "--exit-on-error=true",
            f"--backend-directory={backends}",
            f"--backend-config=python,shm-region-prefix-name={self._shm_prefix}",
            f"--http-address={self._host}",
            f"--http-port={http_port}",
            f"--grpc-address={self._host}",
            f"--grpc-port={grpc_port}",
            "--allow-metrics=true",
            f"--metrics-address={self._host}",
            f"--metrics-port={metrics_port}",
            f"--log-verbose={self._log_verbose}",
            *self._extra_args,
        ]
        client_host = _client_host(self._host)
        self._endpoints = TritonEndpoints(
            http=f"{client_host}:{http_port}",
            grpc=f"{client_host}:{grpc_port}",
            metrics=f"http://{client_host}:{metrics_port}/metrics",
        )
        log.info("starting tritonserver on %s (log %s)", repository, self._log_path)
        log.debug("command: %s", " ".join(command))
        with self._log_path.open("ab") as out:
            self._log_offset = out.tell()
            self._returncode = None
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**self._server_environment(installation), **self._environment},
                start_new_session=True,  # its own process group: stop() kills the stubs too
                preexec_fn=_parent_death_signal(),
            )
        try:
            self._wait_ready(client_host, http_port)
        except BaseException:
            # Failed, timed out or interrupted (Ctrl-C, SIGTERM): never leave it running.
            self.stop(timeout_s=5.0)
            raise
        log.info("tritonserver ready (pid %d): HTTP %s", self._process.pid, self._endpoints.http)
        return self._endpoints

    def _resolve_ports(self) -> tuple[int, int, int]:
        chosen: list[int] = []
        for port in self._ports:
            while port == 0 or port in chosen:
                port = free_port()
            chosen.append(port)
        return chosen[0], chosen[1], chosen[2]

    @staticmethod
    def _assemble_backends(workdir: Path, installation: _Installation) -> Path:
        """A backend directory `backends/python/` of links: the wheel's Python backend plus the
        stub for this interpreter's Python version (the wheel keeps the stubs elsewhere)."""
        python = workdir / "backends" / "python"
        python.mkdir(parents=True)
        for item in installation.python_backend.iterdir():
            if item.is_file():
                (python / item.name).symlink_to(item)
        (python / installation.stub.name).symlink_to(installation.stub)
        return python.parent

    @staticmethod
    def _server_environment(installation: _Installation) -> dict[str, str]:
        env = dict(os.environ)
        libdir = sysconfig.get_config_var("LIBDIR") or ""
        soname = sysconfig.get_config_var("INSTSONAME") or ""
        if not (libdir and soname and (Path(libdir) / soname).exists()):
            log.warning(
                "no shared libpython next to this interpreter (%s/%s); the Python backend stub "
                "needs one and will only start if the dynamic loader finds it elsewhere",
                libdir, soname,
            )  # fmt: skip
        library_path = [str(installation.libs), libdir, env.get("LD_LIBRARY_PATH", "")]
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in library_path if p)
        # The stub's embedded Python takes its prefix (venv, site-packages) from `python3` on PATH.
        bindir = Path(sys.executable).parent
        python3 = bindir / "python3"
        if not python3.exists() or python3.resolve() != Path(sys.executable).resolve():
            log.warning(
                "%s is not this interpreter; Python-backend models may run with other packages",
                python3,
            )
        env["PATH"] = os.pathsep.join(p for p in (str(bindir), env.get("PATH", "")) if p)
        return env

    def _wait_ready(self, host: str, port: int) -> None:
        deadline = time.monotonic() + self._startup_timeout_s
        while True:
            if self._exited():
                code = self.stop(timeout_s=0.0)  # reaps it, and any stub it left behind
                raise ServingError(self._failure(f"tritonserver exited with code {code}"))
            if _http_ready(host, port):
                return
            if time.monotonic() > deadline:
                raise ServingError(
                    self._failure(f"tritonserver was not ready after {self._startup_timeout_s:g}s")
                )
            time.sleep(0.1)

    def _failure(self, headline: str) -> str:
        lines = self._log_lines()
        errors = _error_summary(lines)
        tail = lines[-_TAIL_LINES:]
        parts = [f"{headline} before it was ready"]
        parts += [f"  {e}" for e in errors]
        parts.append(f"last {len(tail)} lines of {self._log_path}:")
        parts += tail
        return "\n".join(parts)

    # ---------------------------------------------------------------- stop

    def stop(self, timeout_s: float = 30.0) -> int:
        """Stop the server: SIGTERM (it unloads its models and lets in-flight requests finish),
        then SIGKILL to its whole process group if it has not exited after `timeout_s`. Returns its
        exit code (0 after a clean SIGTERM; negative: killed by that signal). Idempotent: a second
        call returns the same code, and a server never started returns 0."""
        process = self._process
        if process is None:
            return 0 if self._returncode is None else self._returncode
        if not self._exited():
            log.info("stopping tritonserver (pid %d)", process.pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
            if not self._wait_exited(timeout_s):
                log.warning("tritonserver did not stop %gs after SIGTERM; killing it", timeout_s)
        # Kill what is left of its process group (stubs, or the server itself after the timeout)
        # before reaping it: until then its pid, and so the group id, cannot be reused.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        code = process.wait()
        self._returncode = code
        self._process = None
        self._remove_shared_memory()
        if self._workdir is not None:
            shutil.rmtree(self._workdir / "backends", ignore_errors=True)
            if self._log_file is not None:
                shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        log.info("tritonserver exited with code %d", code)
        return code

    def _remove_shared_memory(self) -> None:
        """Unlink the shared-memory regions of the run that just ended (a crash leaves them)."""
        if self._shm_prefix is None:
            return
        left = list(_SHM_DIR.glob(f"{self._shm_prefix}*")) if _SHM_DIR.is_dir() else []
        for region in left:
            with contextlib.suppress(FileNotFoundError):
                region.unlink()
        if left:
            log.info("removed %d shared-memory regions the server left in %s", len(left), _SHM_DIR)
        self._shm_prefix = None

    def _exited(self) -> bool:
        """Whether the process has exited, without reaping it (WNOWAIT)."""
        process = self._process
        if process is None or process.returncode is not None:
            return True
        try:
            state = os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return state is not None

    def _wait_exited(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not self._exited():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    # ---------------------------------------------------------------- context manager

    def __enter__(self) -> TritonServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _http_ready(host: str, port: int) -> bool:
    connection = http.client.HTTPConnection(host.strip("[]"), port, timeout=1.0)
    try:
        connection.request("GET", "/v2/health/ready")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()
