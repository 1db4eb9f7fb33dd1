"""The Python-backend models (`model.py` of the cpu and pytorch targets) on real repositories.

Triton's `triton_python_backend_utils` only exists inside Triton's stub process, so a minimal fake
stands in for it; everything else (the exported graph or checkpoint, io.json, ONNX Runtime or
PyTorch) is real. Every test runs for both targets: they share the request checks and batching
and differ in the runtime only. The pytorch target runs in fp32 with CUDA graphs on, which on a
CPU pads every call to its bucket without capturing, so the padding is under test as well.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from google.protobuf import json_format

from export.checkpoint import Checkpoint, save_checkpoint
from export.onnx.wrappers import (
    CANDIDATE_TOWER,
    MODEL_NAMES,
    RANKER,
    USER_TOWER,
    example_inputs,
    model_io,
    wrap,
)
from export.repository.build import (
    PYTHON_MODEL_SOURCE,
    TORCH_MODEL_SOURCE,
    ExportSettings,
    export_repository,
)
from export.repository.model_config import parse_pbtxt
from phoenix.config import get_config

CONFIG = get_config("tiny").with_overrides(
    history_len=12, num_user_rows=50, num_post_rows=400, num_author_rows=60
)
MAX_CANDIDATES = 64
TOLERANCE = 1e-4


# A minimal triton_python_backend_utils ----------------------------------------------------------
class FakeTensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self._name = name
        self._array = array

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array


class FakeTritonError:
    def __init__(self, message: str) -> None:
        self._message = message

    def message(self) -> str:
        return self._message


class FakeResponse:
    def __init__(self, output_tensors: list[FakeTensor], error: FakeTritonError | None = None):
        self.output_tensors = output_tensors
        self.error = error

    def outputs(self) -> dict[str, np.ndarray]:
        assert self.error is None, self.error.message()
        return {t.name(): t.as_numpy() for t in self.output_tensors}


class FakeRequest:
    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.tensors = {name: FakeTensor(name, a) for name, a in arrays.items()}


def _fake_pb_utils() -> types.ModuleType:
    module = types.ModuleType("triton_python_backend_utils")
    module.Tensor = FakeTensor  # type: ignore[attr-defined]
    module.TritonError = FakeTritonError  # type: ignore[attr-defined]
    module.InferenceResponse = FakeResponse  # type: ignore[attr-defined]
    module.get_input_tensor_by_name = lambda request, name: request.tensors.get(name)  # type: ignore[attr-defined]
    return module


# Fixtures ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint() -> Checkpoint:
    checkpoint = Checkpoint.initialise(CONFIG, seed=5)
    with torch.no_grad():  # non-trivial norms and biases-free layers alike
        for param in [*checkpoint.ranker.parameters(), *checkpoint.retrieval.parameters()]:
            param.add_(0.05 * torch.randn_like(param))
    return checkpoint


SOURCES = {"cpu": PYTHON_MODEL_SOURCE, "pytorch": TORCH_MODEL_SOURCE}
SETTINGS = {
    "cpu": ExportSettings(max_candidates=MAX_CANDIDATES, verify=False),
    "pytorch": ExportSettings(
        target="pytorch",
        precision="fp32",
        cuda_graphs=True,
        max_candidates=MAX_CANDIDATES,
        verify=False,
    ),
}


@pytest.fixture(scope="module", params=list(SOURCES))
def target(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def repository(
    checkpoint: Checkpoint, target: str, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    base = tmp_path_factory.mktemp(f"python-model-{target}")
    checkpoint_dir = save_checkpoint(checkpoint, base / "checkpoint")
    export_repository(checkpoint_dir, base / "models", SETTINGS[target])
    return base / "models"


@pytest.fixture(scope="module")
def python_model(target: str) -> Iterator[types.ModuleType]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "triton_python_backend_utils", _fake_pb_utils())
        # The pytorch target's model.py imports the cpu target's from the installed package.
        patch.delitem(sys.modules, "export.repository.python_model", raising=False)
        spec = importlib.util.spec_from_file_location(f"phoenix_{target}_model", SOURCES[target])
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module


def triton_args(repository: Path, name: str) -> dict[str, str]:
    """What Triton passes to `initialize`: the model's directory, version, name and config JSON."""
    config = parse_pbtxt((repository / name / "config.pbtxt").read_text())
    return {
        "model_repository": str(repository / name),
        "model_version": "1",
        "model_name": name,
        "model_config": json.dumps(
            json_format.MessageToDict(config, preserving_proto_field_name=True)
        ),
    }


@pytest.fixture(scope="module")
def models(python_model: types.ModuleType, repository: Path) -> dict[str, Any]:
    out = {}
    for name in MODEL_NAMES:
        model = python_model.TritonPythonModel()
        model.initialize(triton_args(repository, name))
        out[name] = model
    return out


# Helpers ----------------------------------------------------------------------------------------
def make_inputs(name: str, batch: int = 2, candidates: int = 5, seed: int = 0) -> dict:
    inputs, _ = model_io(name, CONFIG)
    generator = torch.Generator().manual_seed(seed)
    args = example_inputs(name, CONFIG, batch, candidates, generator)
    return {spec.name: arg.numpy() for spec, arg in zip(inputs, args, strict=True)}


def reference(checkpoint: Checkpoint, name: str, arrays: dict) -> dict[str, np.ndarray]:
    """PyTorch's outputs for the same inputs."""
    inputs, outputs = model_io(name, CONFIG)
    model = wrap(name, checkpoint).eval()
    with torch.no_grad():
        got = model(*(torch.from_numpy(arrays[spec.name]) for spec in inputs))
    got = got if isinstance(got, tuple) else (got,)
    return {spec.name: t.numpy() for spec, t in zip(outputs, got, strict=True)}


def assert_matches(response: FakeResponse, want: dict[str, np.ndarray]) -> None:
    got = response.outputs()
    assert list(got) == list(want)
    for name, expected in want.items():
        assert got[name].shape == expected.shape, name
        assert got[name].dtype == np.float32, name
        np.testing.assert_allclose(got[name], expected, atol=TOLERANCE, rtol=0, err_msg=name)


def error_of(response: FakeResponse) -> str:
    assert response.error is not None, "expected an error response"
    assert response.output_tensors == []
    return response.error.message()


# Tests ------------------------------------------------------------------------------------------
SERVED_FILES = {
    "cpu": ["model.onnx"],
    "pytorch": ["config.json", "model.safetensors"],  # the checkpoint itself
}


def test_version_directory_serves_this_model_file(repository: Path, target: str) -> None:
    version = repository / RANKER / "1"
    assert sorted(p.name for p in version.iterdir()) == sorted(
        [
            "__pycache__",  # model.py compiled before publishing (see writer.py)
            "io.json",
            "model.py",
            "provenance.json",
            *SERVED_FILES[target],
        ]
    )
    assert (version / "model.py").read_bytes() == SOURCES[target].read_bytes()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_outputs_equal_pytorch(models: dict[str, Any], checkpoint: Checkpoint, name: str) -> None:
    arrays = make_inputs(name, batch=3, candidates=9, seed=1)
    (response,) = models[name].execute([FakeRequest(arrays)])
    assert_matches(response, reference(checkpoint, name, arrays))


def test_a_model_served_under_another_name_runs_its_network(
    python_model: types.ModuleType, repository: Path, checkpoint: Checkpoint
) -> None:
    """io.json names the network, so a copy served as another model (a benchmark's twin without
    batching) still builds the ranker; the pytorch target would fail on the name otherwise."""
    model = python_model.TritonPythonModel()
    model.initialize({**triton_args(repository, RANKER), "model_name": "phoenix_ranker_copy"})
    arrays = make_inputs(RANKER, batch=2, candidates=5, seed=4)
    (response,) = model.execute([FakeRequest(arrays)])
    assert_matches(response, reference(checkpoint, RANKER, arrays))


def test_execute_without_requests(models: dict[str, Any]) -> None:
    assert models[RANKER].execute([]) == []


class SessionSpy:
    """Wraps the runtime (ONNX Runtime session or PyTorch runner) and records each run's shape."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.runs: list[tuple[int, int]] = []

    def run(self, output_names: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.runs.append(feed["candidate_post_hash"].shape[:2])
        return self.session.run(output_names, feed)


@pytest.fixture
def spied_ranker(models: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    model = models[RANKER]
    monkeypatch.setattr(model, "session", SessionSpy(model.session))
    return model


def test_requests_are_grouped_by_candidate_count(spied_ranker: Any, checkpoint: Checkpoint) -> None:
    shapes = [(1, 3), (2, 7), (1, 3), (3, 1), (2, 7), (1, 64)]  # (batch, candidates)
    arrays = [make_inputs(RANKER, b, c, seed=10 + i) for i, (b, c) in enumerate(shapes)]
    responses = spied_ranker.execute([FakeRequest(a) for a in arrays])
    assert len(responses) == len(arrays)
    for response, a in zip(responses, arrays, strict=True):
        assert_matches(response, reference(checkpoint, RANKER, a))
    # One ONNX Runtime call per distinct candidate count, with the batches concatenated.
    assert sorted(spied_ranker.session.runs) == [(1, 64), (2, 3), (3, 1), (4, 7)]


def test_padding_rows_are_accepted(models: dict[str, Any], checkpoint: Checkpoint) -> None:
    arrays = make_inputs(RANKER, batch=2, candidates=6, seed=3)
    arrays["user_hash"][0, 1] = 0
    arrays["history_post_hash"][1, 4:] = 0  # a short history: padded slots are all zero
    arrays["history_author_hash"][1, 4:] = 0
    arrays["history_actions"][1, 4:] = 0
    arrays["history_surface"][1, 4:] = 0
    arrays["candidate_post_hash"][0, 5] = 0  # a padded candidate slot
    arrays["candidate_author_hash"][0, 5] = 0
    (response,) = models[RANKER].execute([FakeRequest(arrays)])
    assert_matches(response, reference(checkpoint, RANKER, arrays))


def _set(name: str, index: tuple, value: float) -> Callable[[dict], dict]:
    def change(arrays: dict) -> dict:
        arrays[name][index] = value
        return arrays

    return change


def _replace(name: str, make: Callable[[np.ndarray], np.ndarray]) -> Callable[[dict], dict]:
    def change(arrays: dict) -> dict:
        arrays[name] = make(arrays[name])
        return arrays

    return change


def _drop(name: str) -> Callable[[dict], dict]:
    def change(arrays: dict) -> dict:
        del arrays[name]
        return arrays

    return change


def _candidates(count: int) -> Callable[[dict], dict]:
    def change(arrays: dict) -> dict:
        return make_inputs(RANKER, batch=1, candidates=count, seed=99)

    return change


POST_ROW = CONFIG.post_offset + 1  # a valid post row, outside the user and author blocks
BAD_REQUESTS = {
    "user row in the post block": (_set("user_hash", (0, 0), POST_ROW), "user_hash"),
    "author row past the table": (
        _set("candidate_author_hash", (0, 1, 0), CONFIG.table_rows),
        "candidate_author_hash",
    ),
    "reserved row": (_set("history_author_hash", (0, 2, 1), 3), "history_author_hash"),
    "negative row": (_set("history_post_hash", (0, 0, 0), -1), "history_post_hash"),
    "surface too large": (_set("history_surface", (0, 0), CONFIG.num_surfaces), "history_surface"),
    "negative surface": (_set("candidate_surface", (0, 2), -1), "candidate_surface"),
    "action value 2": (_set("history_actions", (0, 0, 0), 2.0), "history_actions"),
    "action value nan": (_set("history_actions", (0, 1, 3), np.nan), "history_actions"),
    "too many candidates": (_candidates(MAX_CANDIDATES + 1), "candidate_post_hash"),
    "no candidates": (_candidates(0), "candidate_post_hash"),
    "missing input": (_drop("candidate_surface"), "candidate_surface"),
    "candidate counts disagree": (
        _replace("candidate_surface", lambda a: a[:, :-1].copy()),
        "candidate_surface",
    ),
    "batch sizes disagree": (
        _replace("history_surface", lambda a: np.concatenate([a, a])),
        "history_surface",
    ),
    "wrong dtype": (_replace("user_hash", lambda a: a.astype(np.int32)), "user_hash"),
    "wrong fixed dim": (
        _replace("history_actions", lambda a: a[:, :, :-1].copy()),
        "history_actions",
    ),
}


@pytest.fixture(scope="module")
def good_pair(checkpoint: Checkpoint) -> list[tuple[dict, dict[str, np.ndarray]]]:
    """Two valid ranker requests (batch 2, 5 candidates) and PyTorch's answers."""
    pair = [make_inputs(RANKER, batch=2, candidates=5, seed=s) for s in (20, 21)]
    return [(arrays, reference(checkpoint, RANKER, arrays)) for arrays in pair]


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_request_gets_its_own_error(
    spied_ranker: Any, good_pair: list[tuple[dict, dict[str, np.ndarray]]], case: str
) -> None:
    change, field = BAD_REQUESTS[case]
    # The good requests have the bad one's shapes, so they would share its ONNX Runtime call.
    (first, first_want), (second, second_want) = good_pair
    bad = change(make_inputs(RANKER, batch=2, candidates=5, seed=22))
    responses = spied_ranker.execute([FakeRequest(first), FakeRequest(bad), FakeRequest(second)])
    message = error_of(responses[1])
    assert message.startswith(f"{field}: "), message
    assert_matches(responses[0], first_want)
    assert_matches(responses[2], second_want)
    assert spied_ranker.session.runs == [(4, 5)]  # the bad request never reached the graph


@pytest.mark.parametrize(
    ("name", "field", "value"),
    [
        (CANDIDATE_TOWER, "post_hash", CONFIG.author_offset + 1),  # an author row
        (CANDIDATE_TOWER, "author_hash", CONFIG.post_offset + 1),  # a post row
        (USER_TOWER, "history_author_hash", CONFIG.table_rows),
    ],
)
def test_towers_check_rows_too(
    models: dict[str, Any], checkpoint: Checkpoint, name: str, field: str, value: int
) -> None:
    good = make_inputs(name, batch=2, seed=30)
    bad = make_inputs(name, batch=2, seed=31)
    bad[field][1, 0] = value
    responses = models[name].execute([FakeRequest(bad), FakeRequest(good)])
    assert error_of(responses[0]).startswith(f"{field}: ")
    assert_matches(responses[1], reference(checkpoint, name, good))


def test_runtime_failure_fails_only_its_group(
    spied_ranker: Any, checkpoint: Checkpoint, target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = spied_ranker.session
    real_run = spy.run

    def run(output_names: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        if feed["candidate_post_hash"].shape[1] == 4:
            raise RuntimeError("simulated kernel failure")
        return real_run(output_names, feed)

    monkeypatch.setattr(spy, "run", run)
    failing = [make_inputs(RANKER, 1, 4, seed=s) for s in (40, 41)]
    fine = make_inputs(RANKER, 2, 6, seed=42)
    responses = spied_ranker.execute([FakeRequest(a) for a in (failing[0], fine, failing[1])])
    runtime = {"cpu": "onnxruntime", "pytorch": "pytorch"}[target]
    for i in (0, 2):
        assert error_of(responses[i]) == f"{runtime}: simulated kernel failure"
    assert_matches(responses[1], reference(checkpoint, RANKER, fine))
