"""`phoenix.triton.server` and `phoenix triton`: the real tritonserver of the nvidia-pytriton wheel
on a tiny Python-backend model written here (`add`: FP32 [-1] -> input + ADDEND)."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from phoenix.cli import main
from phoenix.errors import ConfigError, ServingError
from phoenix.triton.server import (
    TritonServer,
    free_port,
    locate_tritonserver,
    precompile_model_sources,
)

TIMEOUT_S = 30.0

CONFIG = """\
name: "{name}"
backend: "python"
max_batch_size: 8
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] }} ]
output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] }} ]
dynamic_batching {{ max_queue_delay_microseconds: 100 }}
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
"""

MODEL = """\
import numpy as np
import triton_python_backend_utils as pb_utils

ADDEND = {addend}


class TritonPythonModel:
    def initialize(self, args):
        {initialize}

    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            y = (x + ADDEND).astype(np.float32)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", y)]))
        return responses
"""


def write_model(
    repository: Path,
    name: str,
    version: int = 1,
    *,
    addend: int | str = 1,
    initialize: str = "pass",
) -> Path:
    """Model `name` (config.pbtxt) with version directory `version`; returns that directory."""
    model = repository / name
    model.mkdir(parents=True, exist_ok=True)
    (model / "config.pbtxt").write_text(CONFIG.format(name=name))
    version_dir = model / str(version)
    version_dir.mkdir()
    (version_dir / "model.py").write_text(MODEL.format(addend=addend, initialize=initialize))
    return version_dir


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains `text` (the server and its stubs name the
    repository)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def infer_http(url: str, model: str, x: np.ndarray) -> tuple[np.ndarray, str]:
    """OUTPUT0 and the version that answered, over tritonclient.http."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(
        url, connection_timeout=TIMEOUT_S, network_timeout=TIMEOUT_S
    )
    try:
        tensor = httpclient.InferInput("INPUT0", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        result = client.infer(model, [tensor])
        return result.as_numpy("OUTPUT0"), result.get_response()["model_version"]
    finally:
        client.close()


# ------------------------------------------------------------------ without a server


def test_locate_tritonserver_finds_the_wheels_binary() -> None:
    binary = locate_tritonserver()
    assert binary.name == "tritonserver" and binary.is_file() and os.access(binary, os.X_OK)


def test_free_port_can_be_bound() -> None:
    port = free_port()
    assert 1024 <= port <= 65535 and port_is_free(port)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"http_port": 70000}, "http_port must be an integer 0-65535"),
        ({"grpc_port": -1}, "grpc_port must be an integer 0-65535"),
        ({"http_port": 9000, "grpc_port": 9000}, "must differ"),
        ({"poll_interval_s": 0}, "poll_interval_s must be positive"),
        ({"startup_timeout_s": -1.0}, "startup_timeout_s must be positive"),
    ],
)
def test_bad_settings_are_rejected(tmp_path: Path, options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TritonServer(tmp_path, **options)


def test_missing_repository_is_rejected_before_starting(tmp_path: Path) -> None:
    server = TritonServer(tmp_path / "nowhere", http_port=0, grpc_port=0, metrics_port=0)
    with pytest.raises(ServingError, match=r"--repository.*nowhere does not exist"):
        server.start()
    assert server.pid is None and not server.is_running()
    with pytest.raises(ServingError, match="not been started"):
        _ = server.endpoints


def test_port_in_use_is_rejected_before_starting(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = TritonServer(tmp_path, http_port=0, grpc_port=port, metrics_port=0)
        with pytest.raises(ServingError, match=f"gRPC port {port} on 127.0.0.1 is already in use"):
            server.start()
    assert server.pid is None


# ------------------------------------------------------------------ one shared server


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TritonServer, Path]]:
    """A server on a repository with `add_one` (+1), `add_versioned` (+1 at version 1) and
    `add_env` (+ the PHOENIX_TEST_ADDEND the server was given, 5)."""
    workdir = tmp_path_factory.mktemp("triton")
    repository = workdir / "repository"
    write_model(repository, "add_one")
    write_model(repository, "add_versioned")
    write_model(
        repository, "add_env", addend='int(__import__("os").environ["PHOENIX_TEST_ADDEND"])'
    )
    server = TritonServer(
        repository,
        http_port=0,
        grpc_port=0,
        metrics_port=0,
        poll_interval_s=1.0,
        log_file=workdir / "tritonserver.log",
        environment={"PHOENIX_TEST_ADDEND": "5"},
    )
    with server:
        yield server, repository
    assert not processes_mentioning(str(repository))


@pytest.mark.triton
def test_serves_http_grpc_and_metrics(served: tuple[TritonServer, Path]) -> None:
    import tritonclient.grpc as grpcclient

    server, _ = served
    endpoints = server.endpoints
    assert server.is_running()
    assert re.fullmatch(r"127\.0\.0\.1:\d+", endpoints.http)
    assert http_status(f"http://{endpoints.http}/v2/health/ready") == 200

    x = np.array([[0.5, 1.5, -2.0], [10.0, 0.0, 3.25]], dtype=np.float32)
    y, version = infer_http(endpoints.http, "add_one", x)
    np.testing.assert_array_equal(y, x + 1)
    assert version == "1"

    client = grpcclient.InferenceServerClient(endpoints.grpc)
    try:
        tensor = grpcclient.InferInput("INPUT0", [1, 4], "FP32")
        row = np.arange(4, dtype=np.float32)[None, :]
        tensor.set_data_from_numpy(row)
        result = client.infer("add_one", [tensor], client_timeout=TIMEOUT_S)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), row + 1)
    finally:
        client.close()

    with urllib.request.urlopen(endpoints.metrics, timeout=TIMEOUT_S) as response:
        metrics = response.read().decode()
    successes = re.search(
        r'^nv_inference_request_success\{model="add_one",version="1"\} (\d+)$', metrics, re.M
    )
    assert successes is not None, metrics[:2000]
    assert int(successes.group(1)) >= 2


@pytest.mark.triton
def test_models_see_the_environment_the_server_was_given(
    served: tuple[TritonServer, Path],
) -> None:
    server, _ = served
    x = np.array([[1.0, 2.0]], dtype=np.float32)
    y, _ = infer_http(server.endpoints.http, "add_env", x)
    np.testing.assert_array_equal(y, x + 5)
    assert "PHOENIX_TEST_ADDEND" not in os.environ  # given to the server only


@pytest.mark.triton
def test_new_version_is_served_without_a_restart(
    served: tuple[TritonServer, Path], tmp_path: Path
) -> None:
    server, repository = served
    pid = server.pid
    x = np.array([[1.0, 2.0]], dtype=np.float32)
    y, version = infer_http(server.endpoints.http, "add_versioned", x)
    np.testing.assert_array_equal(y, x + 1)
    assert version == "1"

    # Publish version 2 as an exporter does: written aside, then renamed into place at once.
    staged = write_model(tmp_path / "staging", "add_versioned", 2, addend=2)
    precompile_model_sources(staged)
    os.rename(staged, repository / "add_versioned" / "2")

    deadline = time.monotonic() + TIMEOUT_S
    while version != "2" and time.monotonic() < deadline:
        time.sleep(0.2)
        y, version = infer_http(server.endpoints.http, "add_versioned", x)
    assert version == "2", "version 2 was not served within 30 s"
    np.testing.assert_array_equal(y, x + 2)
    assert server.pid == pid and server.is_running()
    # Precompiled, so the stub's first import writes no __pycache__ that would count as a change
    # of the version directory: the version is loaded once, not again at the next polls.
    time.sleep(2.5)
    loads = [line for line in server.log_tail(400) if "loading: add_versioned:2" in line]
    assert len(loads) == 1, loads


# ------------------------------------------------------------------ servers of their own


@pytest.mark.triton
@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        (
            {"initialize": "raise RuntimeError('no weights for this model')"},
            ["failed to load 'broken' version 1", "RuntimeError: no weights for this model"],
        ),
        ({"config": "max_batch_size: many"}, ["broken", "Expected integer, got: many"]),
    ],
    ids=["initialize-raises", "bad-config"],
)
def test_model_that_fails_to_load_fails_start(
    tmp_path: Path, broken: dict[str, str], expected: list[str]
) -> None:
    repository = tmp_path / "repository"
    write_model(repository, "broken", initialize=broken.get("initialize", "pass"))
    if "config" in broken:
        (repository / "broken" / "config.pbtxt").write_text(broken["config"])
    else:  # a good model beside it does not save the start
        write_model(repository, "add_one")
    server = TritonServer(repository, http_port=0, grpc_port=0, metrics_port=0)

    with pytest.raises(ServingError) as info:
        server.start()

    message = str(info.value)
    assert message.startswith("tritonserver exited with code 1 before it was ready")
    for text in expected:
        assert text in message
    assert f"lines of {server.log_path}" in message
    assert not server.is_running() and server.pid is None
    assert not processes_mentioning(str(repository))


@pytest.mark.triton
def test_stop_is_clean_idempotent_and_frees_the_ports(tmp_path: Path) -> None:
    repository = tmp_path / "empty"  # an empty repository is served too, with no models
    repository.mkdir()
    with TritonServer(repository, http_port=0, grpc_port=0, metrics_port=0) as server:
        endpoints = server.endpoints
        ports = [int(endpoints.http.rsplit(":", 1)[1]), int(endpoints.grpc.rsplit(":", 1)[1])]
        ports.append(int(endpoints.metrics.rsplit(":", 1)[1].split("/")[0]))
        assert not any(port_is_free(port) for port in ports)
        assert http_status(f"http://{endpoints.http}/v2/health/ready") == 200
        pid = server.pid
        assert server.stop() == 0
    assert server.stop() == 0  # again, and once more by __exit__: nothing left to do
    assert not server.is_running()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert all(port_is_free(port) for port in ports)
    assert "Signal (15) received" in server.log_path.read_text()


# ------------------------------------------------------------------ the command


def _read_lines(stream, lines: queue.Queue[str]) -> None:  # type: ignore[no-untyped-def]
    for line in stream:
        lines.put(line)


@pytest.mark.triton
def test_cli_serves_until_sigterm(tmp_path: Path) -> None:
    repository = tmp_path / "repository"
    write_model(repository, "add_one")
    http, grpc, metrics = free_port(), free_port(), free_port()
    command = [
        sys.executable, "-m", "phoenix", "triton", "--repository", str(repository),
        "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics),
        "--poll-seconds", "1", "--log-file", str(tmp_path / "triton.log"),
    ]  # fmt: skip
    cli = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_read_lines, args=(cli.stdout, lines), daemon=True).start()
    printed: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while not printed or not printed[-1].startswith("Serving until"):
            assert cli.poll() is None, f"exited {cli.returncode}: {cli.stderr.read()}"  # type: ignore[union-attr]
            try:
                printed.append(lines.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                pytest.fail(f"no endpoints printed within 60 s: {printed}")
        text = "".join(printed)
        assert f"HTTP     127.0.0.1:{http}\n" in text
        assert f"gRPC     127.0.0.1:{grpc}\n" in text
        assert f"metrics  http://127.0.0.1:{metrics}/metrics\n" in text
        assert "model    add_one (version 1)\n" in text
        pid_match = re.search(r"ready \(pid (\d+)\)", text)
        assert pid_match is not None
        server_pid = int(pid_match.group(1))
        assert http_status(f"http://127.0.0.1:{http}/v2/health/ready") == 200

        cli.send_signal(signal.SIGTERM)
        assert cli.wait(timeout=60) == 0
        assert "stopping" in cli.stderr.read()  # type: ignore[union-attr]
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
        cli.stdout.close()  # type: ignore[union-attr]
        cli.stderr.close()  # type: ignore[union-attr]
    with pytest.raises(ProcessLookupError):
        os.kill(server_pid, 0)
    assert not processes_mentioning(str(repository))
    assert port_is_free(http)


def _ready(url: str) -> bool:
    try:
        return http_status(url) == 200
    except OSError:  # not listening (yet)
        return False


@pytest.mark.triton
def test_cli_restarts_a_server_that_dies(tmp_path: Path) -> None:
    """tritonserver killed under `phoenix triton`: started again on the same port, its log says
    so, and the dead run's shared memory is gone."""
    repository = tmp_path / "repository"
    write_model(repository, "add_one")
    http = free_port()
    command = [
        sys.executable, "-m", "phoenix", "triton", "--repository", str(repository),
        "--http-port", str(http), "--grpc-port", str(free_port()),
        "--metrics-port", str(free_port()), "--log-file", str(tmp_path / "triton.log"),
    ]  # fmt: skip
    # other servers of the suite (session fixtures) own regions too: only this run's count
    others = set(Path("/dev/shm").glob("phoenix_triton_*"))
    cli = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_read_lines, args=(cli.stdout, lines), daemon=True).start()
    try:
        text = ""
        while "Serving until" not in text:
            assert cli.poll() is None, cli.stderr.read()  # type: ignore[union-attr]
            text += lines.get(timeout=60)
        pid_match = re.search(r"ready \(pid (\d+)\)", text)
        assert pid_match is not None
        regions = set(Path("/dev/shm").glob("phoenix_triton_*")) - others
        assert regions, "the Python backend made no shared-memory region"
        os.kill(int(pid_match.group(1)), signal.SIGKILL)
        deadline = time.monotonic() + 60
        time.sleep(0.5)
        while not _ready(f"http://127.0.0.1:{http}/v2/health/ready"):
            assert cli.poll() is None, "phoenix triton exited with the server"
            assert time.monotonic() < deadline, "not restarted within 60 s"
            time.sleep(0.2)
        assert not regions & set(Path("/dev/shm").glob("phoenix_triton_*"))
        cli.send_signal(signal.SIGTERM)
        assert cli.wait(timeout=60) == 0
        err = cli.stderr.read()  # type: ignore[union-attr]
        assert "tritonserver died" in err and "restart 1" in err, err
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
        cli.stdout.close()  # type: ignore[union-attr]
        cli.stderr.close()  # type: ignore[union-attr]
    assert not processes_mentioning(str(repository))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--repository", "{tmp}/missing"], "--repository) {tmp}/missing does not exist"),
        (["--repository", "{tmp}/file.txt"], "--repository) {tmp}/file.txt is not a directory"),
        ([], "the following arguments are required: --repository"),
        (["--repository", "{tmp}", "--http-port", "70000"], "argument --http-port: 70000 is out"),
        (["--repository", "{tmp}", "--grpc-port", "-5"], "argument --grpc-port: -5 is out"),
        (["--repository", "{tmp}", "--metrics-port", "x"], "argument --metrics-port: not a port"),
        (["--repository", "{tmp}", "--poll-seconds", "0"], "argument --poll-seconds: must be at"),
        (["--repository", "{tmp}", "--http-port", "9000", "--grpc-port", "9000"], "must differ"),
    ],
)
def test_cli_rejects_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    (tmp_path / "file.txt").write_text("not a repository")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    try:
        code = main(["triton", *argv])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert message.replace("{tmp}", str(tmp_path)) in err
    errors = [line for line in err.splitlines() if line.startswith("phoenix triton: error:")]
    assert len(errors) == 1 and "Traceback" not in err
