"""The GPU deployment (model_repository/compose.yaml, orchestrator/Dockerfile) agrees with the code.

No Docker here: the files are read, and what they say is checked against the real `phoenix` parser,
the orchestrator's routes, the flags `phoenix triton` starts tritonserver with, and pyproject.toml.
"""

from __future__ import annotations

import argparse
import ast
import importlib.metadata
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import phoenix.triton.server as triton_server
from orchestrator.app import create_app
from orchestrator.auth import Authenticator
from orchestrator.metrics import Metrics
from phoenix.cli import build_parser

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest brings tomli on Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "model_repository" / "compose.yaml"
DOCKERFILE = REPO / "orchestrator" / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
PYPROJECT = REPO / "pyproject.toml"

#: `${NAME}`, `${NAME:-default}` or `${NAME-default}`: the interpolation compose.yaml uses.
_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?-)(?P<default>[^}]*))?\}")

#: tritonserver flags that say where it listens or what it serves, not how it behaves; the compose
#: file and `phoenix triton` choose them separately.
_PLACEMENT_FLAGS = {
    "--model-repository",
    "--backend-directory",
    "--repository-poll-secs",
    "--log-verbose",
    "--http-address",
    "--http-port",
    "--grpc-address",
    "--grpc-port",
    "--metrics-address",
    "--metrics-port",
    "--backend-config",  # phoenix triton: the Python backend's per-run shared-memory prefix
}

#: Modules the orchestrator imports only when they are installed (the GPU retrieval backends):
#: the image adds cuVS and CuPy with a build argument and never PyTorch.
_OPTIONAL_GPU_MODULES = {"cuvs", "cupy", "torch"}


def _interpolate(value: Any, environment: dict[str, str]) -> Any:
    """`value` with compose's variables replaced, as `docker compose` does with `environment`."""
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            name, op, default = match.group("name", "op", "default")
            found = environment.get(name)
            if found is None or (op == ":-" and found == ""):
                assert op is not None, f"${{{name}}} has no default in {COMPOSE.name}"
                return default
            return found

        return _VARIABLE.sub(replace, value.replace("$$", "\0")).replace("\0", "$")
    if isinstance(value, list):
        return [_interpolate(v, environment) for v in value]
    if isinstance(value, dict):
        return {k: _interpolate(v, environment) for k, v in value.items()}
    return value


def _compose(environment: dict[str, str] | None = None) -> dict[str, Any]:
    return _interpolate(yaml.safe_load(COMPOSE.read_text()), environment or {})


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _compose()


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def _serve_args(command: list[str]) -> argparse.Namespace:
    assert command[0] == "phoenix", command
    args = build_parser().parse_args(command[1:])
    assert args.command == "serve"
    assert args.handler.__module__ == "phoenix.cli.serve"
    return args


@pytest.fixture(scope="module")
def serve_args(services: dict[str, Any]) -> argparse.Namespace:
    return _serve_args(services["orchestrator"]["command"])


def _flags(command: list[str]) -> dict[str, str]:
    """`--name=value` arguments of a tritonserver command line."""
    flags = {}
    for arg in command[1:]:
        name, sep, value = arg.partition("=")
        assert name.startswith("--") and sep, f"tritonserver argument {arg!r} is not --name=value"
        flags[name] = value
    return flags


@pytest.fixture(scope="module")
def triton_flags(services: dict[str, Any]) -> dict[str, str]:
    command = services["triton"]["command"]
    assert command[0] == "tritonserver"
    return _flags(command)


def _published(service: dict[str, Any]) -> dict[int, int]:
    """Container port -> host port of a service's `ports` (short syntax, HOST:CONTAINER)."""
    published = {}
    for entry in service["ports"]:
        host, _, container = str(entry).rpartition(":")
        published[int(container)] = int(host)
    return published


def _volume(service: dict[str, Any], target: str) -> tuple[str, list[str]]:
    """The source and options of the bind mount at `target` (short syntax SOURCE:TARGET[:OPTS])."""
    for entry in service["volumes"]:
        source, mount, *options = entry.split(":")
        if mount == target:
            return source, options
    raise AssertionError(f"nothing is mounted at {target}: {service['volumes']}")


def _healthcheck_url(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    assert test[0] == "CMD", test
    urls = re.findall(r"(?:https?://)?(?:localhost|127\.0\.0\.1):\d+/[\w/.-]*", " ".join(test[1:]))
    assert len(urls) == 1, f"expected one URL in the healthcheck {test}"
    return urls[0] if "://" in urls[0] else f"http://{urls[0]}"


def _dockerfile_cmd() -> list[str]:
    (line,) = [line for line in DOCKERFILE.read_text().splitlines() if line.startswith("CMD ")]
    return json.loads(line.removeprefix("CMD "))


def _installed_extras() -> set[str]:
    """The extras of this project that the Dockerfile's `pip install ".[...]"` lines name."""
    found = set()
    for spec in re.findall(r"""["']\.\[([^\]]+)\]["']""", DOCKERFILE.read_text()):
        found.update(extra.strip() for extra in spec.split(","))
    return found


def _pyproject() -> dict[str, Any]:
    return tomllib.loads(PYPROJECT.read_text())


# -------------------------------------------------------------------------- the orchestrator


def test_the_orchestrator_command_is_a_valid_phoenix_serve(serve_args: argparse.Namespace) -> None:
    assert serve_args.host == "0.0.0.0"  # reachable from the host through the published port
    assert serve_args.ann_backend == "auto"
    assert serve_args.scoring_budget is None  # a GPU host ranks every survivor


def test_every_variable_of_the_orchestrator_command_still_parses() -> None:
    for backend in ("exact", "faiss", "cuvs"):
        services = _compose({"PHOENIX_ANN_BACKEND": backend})["services"]
        assert _serve_args(services["orchestrator"]["command"]).ann_backend == backend


def test_the_images_default_command_matches_the_compose_command(
    serve_args: argparse.Namespace,
) -> None:
    image_args = _serve_args(_dockerfile_cmd())
    for option in ("world", "triton", "host", "port", "ann_backend"):
        assert getattr(image_args, option) == getattr(serve_args, option), option


def test_the_orchestrator_calls_triton_grpc_on_the_compose_network(
    services: dict[str, Any], serve_args: argparse.Namespace, triton_flags: dict[str, str]
) -> None:
    host, _, port = serve_args.triton.rpartition(":")
    assert host == "triton" and host in services
    assert int(port) == int(triton_flags["--grpc-port"])
    assert services["orchestrator"]["depends_on"]["triton"]["condition"] == "service_healthy"


def test_the_orchestrator_publishes_the_port_it_listens_on(
    services: dict[str, Any], serve_args: argparse.Namespace
) -> None:
    assert set(_published(services["orchestrator"])) == {serve_args.port}
    moved = _compose({"PHOENIX_PORT": "9090"})["services"]["orchestrator"]
    assert _published(moved) == {serve_args.port: 9090}


def test_the_orchestrator_reads_the_world_phoenix_demo_writes(
    services: dict[str, Any], serve_args: argparse.Namespace
) -> None:
    source, options = _volume(services["orchestrator"], str(serve_args.world))
    assert options == ["ro"]
    demo = build_parser().parse_args(["demo"])
    assert (COMPOSE.parent / source).resolve() == (REPO / demo.runs / "world").resolve()
    moved = _compose({"PHOENIX_WORLD": "/data/world"})["services"]["orchestrator"]
    assert _volume(moved, str(serve_args.world)) == ("/data/world", ["ro"])


def test_the_orchestrator_healthcheck_asks_a_route_the_app_serves(
    services: dict[str, Any], serve_args: argparse.Namespace
) -> None:
    url = urlsplit(_healthcheck_url(services["orchestrator"]))
    assert url.port == serve_args.port
    app = create_app(SimpleNamespace(metrics=Metrics()), auth=Authenticator(None))  # type: ignore[arg-type]
    get_routes = {route.path for route in app.routes if "GET" in getattr(route, "methods", ())}
    assert url.path in get_routes
    assert url.path == "/readyz"  # healthy means ranked feeds, not just a live process


def test_the_orchestrator_and_triton_reserve_a_gpu(services: dict[str, Any]) -> None:
    for name in ("triton", "orchestrator"):
        (device,) = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and "gpu" in device["capabilities"], name


# -------------------------------------------------------------------------- the image


def test_the_image_is_built_from_the_dockerfile_with_the_repository_as_context(
    services: dict[str, Any],
) -> None:
    build = services["orchestrator"]["build"]
    context = (COMPOSE.parent / build["context"]).resolve()
    assert context == REPO
    assert (context / build["dockerfile"]).resolve() == DOCKERFILE
    assert build["args"]["WITH_CUVS"] == "0"  # cuVS only on request
    cuvs = _compose({"PHOENIX_WITH_CUVS": "1"})["services"]["orchestrator"]["build"]
    assert cuvs["args"]["WITH_CUVS"] == "1"
    assert re.search(r"^ARG WITH_CUVS=0$", DOCKERFILE.read_text(), re.MULTILINE)


def test_the_dockerfile_installs_extras_that_exist_and_no_pytorch() -> None:
    extras = _pyproject()["project"]["optional-dependencies"]
    installed = _installed_extras()
    assert installed and installed <= set(extras), f"{installed} vs {sorted(extras)}"
    heavy = {"torch", "nvidia-pytriton", "onnxruntime", "tensorrt"}
    for extra in installed:
        names = {canonicalize_name(Requirement(r).name) for r in extras[extra]}
        assert not names & heavy, f"extra {extra!r} would put {names & heavy} in the image"
    assert "phoenix-triton[orchestrator]" in extras["serve"]  # `make setup` still gets it


def test_the_dockerfile_copies_what_the_package_needs_and_dockerignore_keeps_it() -> None:
    text = DOCKERFILE.read_text()
    copied = [
        source
        for line in text.splitlines()
        if line.startswith("COPY ")
        for source in shlex.split(line)[1:-1]
    ]
    assert {"pyproject.toml", "README.md", "phoenix", "orchestrator"} <= set(copied)
    ignored = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for source in copied:
        assert (REPO / source).exists(), source
        assert source not in ignored, f".dockerignore drops {source}, which the image copies"
    assert {".git", ".venv", "runs", "model_repository"} <= ignored
    assert re.search(r"^FROM python:3\.11-slim$", text, re.MULTILINE)
    assert "phoenix" in _pyproject()["project"]["scripts"]  # the command the image runs


def _distribution_closure(requirements: list[str], extras: set[str]) -> set[str]:
    """Every installed distribution that `requirements` pull in (their own dependencies too)."""
    seen: set[str] = set()
    pending = [(Requirement(r), extras) for r in requirements]
    while pending:
        requirement, active = pending.pop()
        if requirement.marker is not None and not any(
            requirement.marker.evaluate({"extra": extra}) for extra in active or {""}
        ):
            continue
        name = canonicalize_name(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        if name == "phoenix-triton":
            continue  # its extras are listed by the caller
        pending += [(Requirement(r), set(requirement.extras)) for r in requires]
    return seen


def _imported_modules(file: Path, *, inside_functions: bool) -> set[str]:
    """Top-level names of the absolute imports in `file`: of its module-level statements only, or
    of every statement (lazy imports inside functions too)."""
    tree = ast.parse(file.read_text(), filename=str(file))
    names = set()
    for node in ast.walk(tree) if inside_functions else tree.body:
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_orchestrator_extra_covers_what_phoenix_serve_imports() -> None:
    # The first-party modules `phoenix serve` loads, in a fresh interpreter; then what they import,
    # including inside functions (retrieval backends, the Triton client run later) except in the
    # other commands' modules, whose function-level imports run for those commands only.
    probe = (
        "import sys, json, phoenix.cli, phoenix.cli.serve, orchestrator.app, "
        "orchestrator.service, uvicorn; "
        "print(json.dumps(sorted((n, m.__file__) for n, m in list(sys.modules.items()) "
        "if n.split('.')[0] in ('phoenix', 'orchestrator') and getattr(m, '__file__', None))))"
    )
    loaded = json.loads(
        subprocess.run(
            [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout
    )
    imported: set[str] = set()
    for name, file in loaded:
        other_command = name.startswith("phoenix.cli.") and name != "phoenix.cli.serve"
        imported |= _imported_modules(Path(file), inside_functions=not other_command)
    third_party = imported - set(sys.stdlib_module_names) - {"__future__"}
    third_party -= {"phoenix", "orchestrator"}
    assert not third_party & {"export", "loadtest"}, "phoenix serve must not need export/loadtest"

    project = _pyproject()["project"]
    allowed = _distribution_closure(
        [*project["dependencies"], *project["optional-dependencies"]["orchestrator"]], set()
    )
    owners = importlib.metadata.packages_distributions()
    missing = {}
    for module in sorted(third_party - _OPTIONAL_GPU_MODULES):
        distributions = {canonicalize_name(d) for d in owners.get(module, [])}
        assert distributions, f"{module} is imported but no installed distribution provides it"
        if not distributions & allowed:
            missing[module] = sorted(distributions)
    assert not missing, f"imported by `phoenix serve` but not in the orchestrator extra: {missing}"


# -------------------------------------------------------------------------- Triton


def _phoenix_triton_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tritonserver command line `phoenix triton` (TritonServer.start) runs, captured."""

    class Captured(Exception):
        pass

    def popen(command: list[str], **kwargs: object) -> None:
        raise Captured(command)

    installation = SimpleNamespace(
        binary=tmp_path / "tritonserver",
        python_backend=tmp_path / "python_backend",
        stub=tmp_path / "triton_python_backend_stub",
        libs=tmp_path / "libs",
    )
    installation.python_backend.mkdir()
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.setattr(triton_server, "_installation", lambda: installation)
    monkeypatch.setattr(triton_server.tempfile, "mkdtemp", lambda **kwargs: str(workdir))
    monkeypatch.setattr(triton_server.subprocess, "Popen", popen)
    repository = tmp_path / "repository"
    repository.mkdir()
    server = triton_server.TritonServer(
        repository, http_port=0, grpc_port=0, metrics_port=0, log_file=tmp_path / "log"
    )
    with pytest.raises(Captured) as captured:
        server.start()
    return captured.value.args[0]


def test_triton_runs_with_the_flags_phoenix_triton_relies_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, triton_flags: dict[str, str]
) -> None:
    ours = _flags(_phoenix_triton_command(tmp_path, monkeypatch))
    behaviour = {k: v for k, v in ours.items() if k not in _PLACEMENT_FLAGS}
    assert behaviour["--model-control-mode"] == "poll"
    assert behaviour["--strict-readiness"] == "true"
    for flag, value in behaviour.items():
        assert triton_flags.get(flag) == value, f"compose.yaml: {flag}={triton_flags.get(flag)}"
    assert int(triton_flags["--repository-poll-secs"]) >= 1


def test_triton_serves_the_mounted_repository_read_only(
    services: dict[str, Any], triton_flags: dict[str, str]
) -> None:
    source, options = _volume(services["triton"], triton_flags["--model-repository"])
    assert (COMPOSE.parent / source).resolve() == COMPOSE.parent
    assert options == ["ro"]


def test_only_the_orchestrator_is_published_on_the_host(services: dict[str, Any]) -> None:
    # Triton and Redis are reached over the compose network: nothing outside can call them.
    for name in ("triton", "redis"):
        assert "ports" not in services[name] and "network_mode" not in services[name], name
    assert _published(services["orchestrator"])


def test_the_replicas_share_redis_and_keep_their_own_data(services: dict[str, Any]) -> None:
    replicas = [s for name, s in services.items() if name.startswith("orchestrator")]
    assert len(replicas) >= 2
    args = [_serve_args(r["command"]) for r in replicas]
    (redis_url,) = {a.redis for a in args}  # one shared log
    assert urlsplit(redis_url).hostname == "redis" and urlsplit(redis_url).port == 6379
    data = {_volume(r, str(a.data))[0] for r, a in zip(replicas, args, strict=True)}
    assert len(data) == len(replicas)  # a store per replica, never one SQLite file for two
    ports = [_published(r)[a.port] for r, a in zip(replicas, args, strict=True)]
    assert len(set(ports)) == len(ports)
    for replica in replicas:
        assert replica["depends_on"]["redis"]["condition"] == "service_healthy"


def test_redis_keeps_every_acknowledged_write_on_disk(services: dict[str, Any]) -> None:
    command = services["redis"]["command"]
    assert command[0] == "redis-server"
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert options["--appendonly"] == "yes"
    assert options["--appendfsync"] in ("always", "everysec")
    assert _volume(services["redis"], "/data")[0] == "redis-data"


def test_both_services_restart_when_they_die(services: dict[str, Any]) -> None:
    for name in ("triton", "orchestrator", "orchestrator-b", "redis"):
        assert services[name]["restart"] in ("always", "unless-stopped"), name


def test_the_orchestrator_reads_its_tokens_from_a_secret(
    compose: dict[str, Any], services: dict[str, Any], serve_args: argparse.Namespace
) -> None:
    assert not serve_args.insecure
    (secret,) = services["orchestrator"]["secrets"]
    assert serve_args.token_file == Path("/run/secrets") / secret
    source = COMPOSE.parent / compose["secrets"][secret]["file"]
    assert source.resolve().parent == (REPO / "runs").resolve()  # never a file in the repository
    moved = _compose({"PHOENIX_TOKEN_FILE": "/etc/phoenix/tokens.json"})
    assert moved["secrets"][secret]["file"] == "/etc/phoenix/tokens.json"


def test_triton_healthcheck_asks_what_phoenix_triton_waits_for(
    services: dict[str, Any], triton_flags: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []

    class Connection:
        def __init__(self, host: str, port: int, timeout: float) -> None:
            pass

        def request(self, method: str, path: str) -> None:
            asked.append(f"{method} {path}")
            raise OSError("not a real server")

        def close(self) -> None:
            pass

    monkeypatch.setattr(triton_server.http.client, "HTTPConnection", Connection)
    assert not triton_server._http_ready("127.0.0.1", 8000)
    url = urlsplit(_healthcheck_url(services["triton"]))
    assert asked == [f"GET {url.path}"]
    assert url.port == int(triton_flags["--http-port"])
