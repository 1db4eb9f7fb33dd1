"""TensorRT: running a built engine (`EngineRunner`), and the metadata written beside the plan.

`EngineRunner` is exercised against a fake `tensorrt` module whose engine reads its inputs and
writes its outputs through the raw addresses the runner binds (CPU torch tensors stand in for CUDA
buffers), so the tests prove the feeds reach the engine and the outputs come back in order and
in float32. `test_real_*` builds the tiny ranker's engine where TensorRT and a GPU are present and
compares the runner with ONNX Runtime.
"""

from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import json
import math
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from export.checkpoint import Checkpoint
from export.onnx.exporter import example_inputs, export_onnx
from export.onnx.wrappers import RANKER, model_io
from export.tensorrt import builder
from export.tensorrt.builder import EngineMetadata, build_engine, write_engine_metadata
from export.tensorrt.profiles import ProfileLimits
from export.tensorrt.runtime import EngineRunner
from phoenix.config import get_config
from phoenix.errors import ExportError

PLAN = b"FAKE-ENGINE"
STREAM_HANDLE = 0xC0FFEE

_TORCH = {
    "FLOAT": torch.float32,
    "HALF": torch.float16,
    "BF16": torch.bfloat16,
    "INT64": torch.int64,
    "INT32": torch.int32,
    "BOOL": torch.bool,
}


# A fake TensorRT runtime ------------------------------------------------------------------------
@dataclasses.dataclass
class FakeInput:
    dtype: str
    shape: tuple[int, ...]  # -1 where dynamic
    profile: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]


@dataclasses.dataclass
class FakeOutput:
    dtype: str
    shape: Callable[[dict[str, tuple[int, ...]]], tuple[int, ...]]
    compute: Callable[[dict[str, torch.Tensor]], torch.Tensor]


def model() -> dict[str, FakeInput | FakeOutput]:
    """The engine's I/O in the engine's order: inputs and outputs interleaved, one output unasked.

    `scaled[b, c] = ids[b, c] * sum(weights[b])` (fp16), `total[b] = sum(ids[b]) + weights[b, 0]`
    (bf16), `doubled = 2 * weights` (fp32, not among the runner's output_names).
    """
    return {
        "ids": FakeInput("INT64", (-1, -1), ((1, 1), (2, 4), (4, 8))),
        "scaled": FakeOutput(
            "HALF",
            lambda s: s["ids"],
            lambda x: (x["ids"].float() * x["weights"].sum(-1, keepdim=True)).half(),
        ),
        "weights": FakeInput("FLOAT", (-1, 3), ((1, 3), (2, 3), (4, 3))),
        "doubled": FakeOutput("FLOAT", lambda s: s["weights"], lambda x: 2 * x["weights"]),
        "total": FakeOutput(
            "BF16",
            lambda s: s["ids"][:1],
            lambda x: (x["ids"].sum(-1).float() + x["weights"][:, 0]).bfloat16(),
        ),
    }


class FakeContext:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.record = engine.record
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        self.record["events"].append(("set_input_shape", name, tuple(shape)))
        assert isinstance(self.engine.io[name], FakeInput), name
        self.shapes[name] = tuple(shape)
        return not self.record["refuse_shape"]

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        spec = self.engine.io[name]
        if isinstance(spec, FakeInput):
            return self.shapes.get(name, spec.shape)
        if name in self.record["unknown_shape"] or set(self.shapes) != self.engine.inputs:
            return (-1,)
        return spec.shape(self.shapes)

    def set_tensor_address(self, name: str, address: int) -> bool:
        self.record["events"].append(("set_tensor_address", name))
        self.addresses[name] = address
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        """Read every input at its bound address, write every output at its bound address."""
        self.record["events"].append(("execute_async_v3", stream_handle))
        if self.record["fail_execute"]:
            return False
        assert set(self.addresses) == set(self.engine.io), "every I/O tensor needs an address"
        inputs = {}
        for name in self.engine.inputs:
            dtype, shape = _TORCH[self.engine.io[name].dtype], self.shapes[name]
            size = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
            raw = bytearray(ctypes.string_at(self.addresses[name], size))
            inputs[name] = torch.frombuffer(raw, dtype=dtype).reshape(shape)
        self.record["inputs"].append(inputs)
        for name, spec in self.engine.io.items():
            if isinstance(spec, FakeOutput):
                out = spec.compute(inputs)
                assert out.dtype == _TORCH[spec.dtype] and tuple(out.shape) == spec.shape(
                    self.shapes
                ), name
                out = out.contiguous()
                ctypes.memmove(self.addresses[name], out.data_ptr(), out.nbytes)
        return True


class FakeEngine:
    def __init__(self, io: dict[str, FakeInput | FakeOutput], record: dict[str, Any]) -> None:
        self.io = io
        self.record = record
        self.inputs = {name for name, spec in io.items() if isinstance(spec, FakeInput)}

    @property
    def num_io_tensors(self) -> int:
        return len(self.io)

    def get_tensor_name(self, index: int) -> str:
        return list(self.io)[index]

    def get_tensor_mode(self, name: str) -> str:
        return "INPUT" if isinstance(self.io[name], FakeInput) else "OUTPUT"

    def get_tensor_dtype(self, name: str) -> str:
        return self.io[name].dtype

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        spec = self.io[name]
        return spec.shape if isinstance(spec, FakeInput) else (-1,)

    def get_tensor_profile_shape(self, name: str, profile: int) -> list[tuple[int, ...]]:
        assert profile == 0
        spec = self.io[name]
        assert isinstance(spec, FakeInput), f"{name} is an output: it has no profile"
        self.record["profile_queries"].append(name)
        return list(spec.profile)

    @property
    def num_optimization_profiles(self) -> int:
        return 1

    def create_execution_context(self) -> FakeContext | None:
        if self.record["no_context"]:
            return None
        context = FakeContext(self)
        self.record["contexts"].append(context)
        return context


class FakeRuntime:
    def __init__(self, logger: object, record: dict[str, Any]) -> None:
        self.logger = logger
        self.record = record

    def deserialize_cuda_engine(self, plan: bytes) -> FakeEngine | None:
        self.record["deserialized"].append(bytes(plan))
        return FakeEngine(self.record["io"], self.record) if plan == PLAN else None


class FakeStream:
    cuda_stream = STREAM_HANDLE

    def __init__(self, record: dict[str, Any]) -> None:
        self.record = record

    def synchronize(self) -> None:
        self.record["events"].append(("synchronize",))


def fake_tensorrt() -> tuple[types.ModuleType, dict[str, Any]]:
    record: dict[str, Any] = {
        "io": model(),
        "events": [],
        "inputs": [],
        "contexts": [],
        "deserialized": [],
        "profile_queries": [],
        "unknown_shape": set(),
        "refuse_shape": False,
        "fail_execute": False,
        "no_context": False,
    }
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.99.0-fake"
    trt.Logger = type("Logger", (), {"WARNING": "warning", "__init__": lambda self, level: None})
    trt.Runtime = lambda logger: FakeRuntime(logger, record)
    trt.TensorIOMode = types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT", NONE="NONE")
    trt.DataType = types.SimpleNamespace(**{name: name for name in [*_TORCH, "INT8", "UINT8"]})
    return trt, record


@pytest.fixture
def trt(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    module, record = fake_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    monkeypatch.setattr(builder, "_gpu_present", lambda: True)
    return record


@pytest.fixture
def plan(tmp_path: Path) -> Path:
    path = tmp_path / "model.plan"
    path.write_bytes(PLAN)
    return path


def runner(plan: Path, record: dict[str, Any], outputs: tuple[str, ...] = ("total", "scaled")):
    return EngineRunner(plan, outputs, device="cpu", stream=FakeStream(record))


def feeds(batch: int = 2, candidates: int = 3) -> dict[str, np.ndarray]:
    ids = np.arange(1, batch * candidates + 1, dtype=np.int64).reshape(batch, candidates)
    weights = (np.arange(batch * 3, dtype=np.float32).reshape(batch, 3) + 1) / 4
    return {"ids": ids, "weights": weights}


# Running ----------------------------------------------------------------------------------------
def test_outputs_come_back_in_the_asked_order_as_float32(trt: dict[str, Any], plan: Path) -> None:
    run = runner(plan, trt)
    fed = feeds()
    total, scaled = run(fed)

    (seen,) = trt["inputs"]  # what the engine read at the bound addresses
    np.testing.assert_array_equal(seen["ids"].numpy(), fed["ids"])
    np.testing.assert_array_equal(seen["weights"].numpy(), fed["weights"])
    assert seen["ids"].dtype == torch.int64 and seen["weights"].dtype == torch.float32

    ids, weights = fed["ids"], fed["weights"]
    assert total.dtype == scaled.dtype == np.float32  # bf16 and fp16 on the engine's side
    assert total.shape == (2,) and scaled.shape == (2, 3)
    np.testing.assert_array_equal(total, ids.sum(-1) + weights[:, 0])  # exact in bf16
    np.testing.assert_array_equal(scaled, ids * weights.sum(-1, keepdims=True))  # exact in fp16

    (doubled,) = runner(plan, trt, ("doubled",))(fed)
    np.testing.assert_array_equal(doubled, 2 * weights)


def test_shapes_then_addresses_then_execute_then_synchronize(
    trt: dict[str, Any], plan: Path
) -> None:
    run = runner(plan, trt)
    assert run.input_names == ("ids", "weights")  # the engine's order
    assert run.output_names == ("total", "scaled")
    assert run.profile_bounds("ids") == ((1, 1), (4, 8))
    assert run.profile_bounds("weights") == ((1, 3), (4, 3))
    run(feeds(batch=4, candidates=8))  # the profile's maximum is inside it
    events = trt["events"]
    assert events[:2] == [
        ("set_input_shape", "ids", (4, 8)),
        ("set_input_shape", "weights", (4, 3)),
    ]
    assert sorted(e[1] for e in events[2:7]) == ["doubled", "ids", "scaled", "total", "weights"]
    assert {e[0] for e in events[2:7]} == {"set_tensor_address"}
    assert events[7:] == [("execute_async_v3", STREAM_HANDLE), ("synchronize",)]


def test_one_runner_runs_many_shapes(trt: dict[str, Any], plan: Path) -> None:
    run = runner(plan, trt)
    for batch, candidates in [(1, 1), (3, 5), (2, 8)]:
        fed = feeds(batch, candidates)
        total, scaled = run(fed)
        assert total.shape == (batch,) and scaled.shape == (batch, candidates)
        want = torch.from_numpy(fed["ids"].sum(-1) + fed["weights"][:, 0]).bfloat16().float()
        np.testing.assert_array_equal(total, want.numpy())  # rounded to bf16 by the engine
    assert len(trt["contexts"]) == 1


def test_feeds_are_cast_within_their_kind(trt: dict[str, Any], plan: Path) -> None:
    fed = feeds()
    cast = {"ids": fed["ids"].astype(np.uint8), "weights": fed["weights"].astype(np.float64)}
    cast["weights"].flags.writeable = False
    got = runner(plan, trt)(cast)
    want = runner(plan, trt)(fed)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)
    assert trt["inputs"][0]["ids"].dtype == torch.int64
    assert trt["inputs"][0]["weights"].dtype == torch.float32


# Refusals ---------------------------------------------------------------------------------------
def _refused(run: EngineRunner, fed: dict[str, np.ndarray], match: str, trt: dict[str, Any]):
    with pytest.raises(ExportError, match=match):
        run(fed)
    assert not any(e[0] == "execute_async_v3" for e in trt["events"])
    assert trt["inputs"] == []


def test_missing_feed_is_named(trt: dict[str, Any], plan: Path) -> None:
    fed = feeds()
    del fed["weights"]
    _refused(runner(plan, trt), fed, r"^weights: missing from the feeds", trt)


def test_unknown_feed_is_named(trt: dict[str, Any], plan: Path) -> None:
    _refused(runner(plan, trt), {**feeds(), "idz": np.zeros(1)}, r"feeds: 'idz' not among", trt)


def test_wrong_rank_is_named(trt: dict[str, Any], plan: Path) -> None:
    fed = {**feeds(), "ids": np.arange(3)}
    _refused(runner(plan, trt), fed, r"^ids: rank 1 \(shape \(3,\)\); the engine takes rank 2", trt)


@pytest.mark.parametrize(
    ("name", "shape", "bounds"),
    [
        ("ids", (2, 9), r"\(1, 1\) to \(4, 8\)"),  # too many candidates
        ("ids", (5, 3), r"\(1, 1\) to \(4, 8\)"),  # batch too large
        ("ids", (2, 0), r"\(1, 1\) to \(4, 8\)"),  # no candidates
        ("weights", (2, 4), r"\(1, 3\) to \(4, 3\)"),  # a fixed dimension
    ],
)
def test_shapes_outside_the_profile_are_refused(
    trt: dict[str, Any], plan: Path, name: str, shape: tuple[int, ...], bounds: str
) -> None:
    fed = feeds()
    fed[name] = np.ones(shape, dtype=fed[name].dtype)
    _refused(runner(plan, trt), fed, rf"^{name}: shape .* outside the engine's .*{bounds}", trt)
    assert not any(e[0] == "set_input_shape" for e in trt["events"])


@pytest.mark.parametrize(
    ("name", "value", "match"),
    [
        ("ids", np.ones((2, 3), dtype=np.float32), r"^ids: dtype float32.* \(int, not float\)"),
        ("weights", np.ones((2, 3), dtype=np.int64), r"^weights: dtype int64.*\(float, not int\)"),
        ("ids", np.ones((2, 3), dtype=bool), r"^ids: dtype bool"),
        ("ids", np.full((2, 3), 2**63, dtype=np.uint64), r"^ids: values from .* do not fit"),
    ],
)
def test_feeds_of_the_wrong_kind_are_refused(
    trt: dict[str, Any], plan: Path, name: str, value: np.ndarray, match: str
) -> None:
    _refused(runner(plan, trt), {**feeds(), name: value}, match, trt)


def test_narrower_engine_integers_must_fit(trt: dict[str, Any], plan: Path) -> None:
    trt["io"]["ids"].dtype = "INT32"
    run = runner(plan, trt)
    fed = feeds()
    total, _ = run(fed)
    assert trt["inputs"][0]["ids"].dtype == torch.int32
    np.testing.assert_array_equal(total, fed["ids"].sum(-1) + fed["weights"][:, 0])
    fed["ids"][1, 2] = 2**31
    with pytest.raises(ExportError, match=r"^ids: values from 1 to 2147483648 do not fit"):
        run(fed)


def test_unknown_output_name_is_refused(trt: dict[str, Any], plan: Path) -> None:
    with pytest.raises(ExportError, match=r"output_names: 'dwell' not among .*doubled, scaled"):
        runner(plan, trt, ("total", "dwell"))


def test_output_named_twice_is_refused(trt: dict[str, Any], plan: Path) -> None:
    with pytest.raises(ExportError, match="names an output twice"):
        runner(plan, trt, ("total", "total"))


def test_unsupported_engine_dtype_is_named(trt: dict[str, Any], plan: Path) -> None:
    trt["io"]["doubled"].dtype = "FP8"
    with pytest.raises(ExportError, match=r"tensor 'doubled' has TensorRT dtype FP8"):
        runner(plan, trt)


def test_plan_that_does_not_deserialize(trt: dict[str, Any], plan: Path) -> None:
    plan.write_bytes(b"ENGINE-FROM-ANOTHER-TENSORRT")
    with pytest.raises(ExportError, match=r"could not deserialize .*model\.plan"):
        runner(plan, trt)
    assert trt["deserialized"] == [b"ENGINE-FROM-ANOTHER-TENSORRT"]


def test_missing_plan(trt: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"model\.plan: no TensorRT engine there"):
        runner(tmp_path / "model.plan", trt)


def test_no_execution_context(trt: dict[str, Any], plan: Path) -> None:
    trt["no_context"] = True
    with pytest.raises(ExportError, match="could not create an execution context"):
        runner(plan, trt)


def test_failed_execution(trt: dict[str, Any], plan: Path) -> None:
    trt["fail_execute"] = True
    with pytest.raises(ExportError, match="execute_async_v3 returned False"):
        runner(plan, trt)(feeds())
    assert ("synchronize",) not in trt["events"]


def test_refused_input_shape_is_named(trt: dict[str, Any], plan: Path) -> None:
    trt["refuse_shape"] = True
    with pytest.raises(ExportError, match=r"^ids: TensorRT refused the shape \(2, 3\)"):
        runner(plan, trt)(feeds())


def test_data_dependent_output_shape_is_refused(trt: dict[str, Any], plan: Path) -> None:
    trt["unknown_shape"].add("scaled")
    with pytest.raises(ExportError, match=r"^scaled: the engine cannot tell"):
        runner(plan, trt)(feeds())


def test_without_tensorrt(monkeypatch: pytest.MonkeyPatch, plan: Path) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(ExportError, match="--target tensorrt needs TensorRT"):
        EngineRunner(plan, ["total"], device="cpu")


# Metadata ---------------------------------------------------------------------------------------
def _metadata(**changes: Any) -> EngineMetadata:
    fields = {
        "tensorrt_version": "10.99.0-fake",
        "gpu": "Fake GPU",
        "compute_capability": "9.0",
        "cuda_version": "12.8",
        "precision": "fp16",
        "profiles": {"ids": {"min": [1, 1], "opt": [2, 4], "max": [4, 8]}},
        "build_seconds": 1.5,
        "onnx_file": "model.onnx",
        "layers_kept_fp32": 7,
        "layers_total": 40,
        "plan_bytes": len(PLAN),
        "plan_sha256": hashlib.sha256(PLAN).hexdigest(),
    }
    return EngineMetadata(**{**fields, **changes})


def test_parity_is_added_by_replace_and_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "engine.json"
    metadata = _metadata()
    assert metadata.parity is None
    write_engine_metadata(path, metadata)
    assert json.loads(path.read_text())["parity"] is None

    checked = dataclasses.replace(metadata, parity={"max_abs_diff": 1.5e-3, "tolerance": 2e-2})
    write_engine_metadata(path, checked)
    assert EngineMetadata(**json.loads(path.read_text())) == checked
    assert sorted(p.name for p in tmp_path.iterdir()) == ["engine.json"]  # no temporary left


# A real TensorRT engine -------------------------------------------------------------------------
CONFIG = get_config("tiny")
MAX_CANDIDATES = 64
LIMITS = ProfileLimits(max_batch=8, max_candidates=MAX_CANDIDATES, opt_batch=2, opt_candidates=32)
#: Largest |TensorRT - ONNX Runtime| accepted per unit of an output's largest |value| (at least 1):
#: fp32 engines use TF32 matmuls by default; fp16/bf16 ones keep norms and softmax in fp32.
REAL_TOLERANCE = {"fp32": 5e-3, "fp16": 3e-2, "bf16": 8e-2}


@pytest.fixture
def real_trt() -> Any:
    """The real `tensorrt` module; skips (before any export) without it or without a GPU."""
    trt = pytest.importorskip("tensorrt")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT engines run on a GPU; none is visible")
    return trt


@pytest.fixture(scope="module")
def ranker_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ranker") / "model.onnx"
    return export_onnx(
        RANKER, Checkpoint.initialise(CONFIG), CONFIG, path, max_candidates=MAX_CANDIDATES
    )


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_real_engine_matches_onnx_runtime(
    real_trt: Any, ranker_onnx: Path, tmp_path: Path, precision: str
) -> None:
    import onnxruntime as ort

    inputs, outputs = model_io(RANKER, CONFIG)
    plan = tmp_path / "model.plan"
    metadata = build_engine(ranker_onnx, plan, inputs, LIMITS, precision=precision)

    engine_json = json.loads((tmp_path / "engine.json").read_text())
    assert engine_json == dataclasses.asdict(metadata)
    assert engine_json["plan_sha256"] == hashlib.sha256(plan.read_bytes()).hexdigest()
    assert engine_json["plan_bytes"] == plan.stat().st_size
    major, minor = torch.cuda.get_device_capability(0)
    assert engine_json["compute_capability"] == f"{major}.{minor}"
    assert engine_json["cuda_version"] == torch.version.cuda
    assert engine_json["parity"] is None
    if precision == "fp32":
        assert engine_json["layers_kept_fp32"] is None
    else:
        assert 0 < engine_json["layers_kept_fp32"] < engine_json["layers_total"]

    names = [spec.name for spec in outputs]
    run = EngineRunner(plan, names[::-1])  # the order asked for, not the engine's
    session = ort.InferenceSession(str(ranker_onnx), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(0)
    for batch, count in [(1, 1), (3, 7), (LIMITS.max_batch, MAX_CANDIDATES)]:
        args = example_inputs(RANKER, CONFIG, batch, count, generator)
        fed = {spec.name: arg.numpy() for spec, arg in zip(inputs, args, strict=True)}
        want = session.run(names, fed)[::-1]
        got = run(fed)
        for name, a, b in zip(names[::-1], got, want, strict=True):
            assert a.dtype == np.float32 and a.shape == b.shape, name
            tolerance = REAL_TOLERANCE[precision] * max(1.0, float(np.abs(b).max()))
            diff = float(np.abs(a - b).max())
            assert diff <= tolerance, f"{name}: {diff:.3g} > {tolerance:.3g} ({batch}x{count})"

    too_many = example_inputs(RANKER, CONFIG, 1, MAX_CANDIDATES + 1, generator)
    fed = {spec.name: arg.numpy() for spec, arg in zip(inputs, too_many, strict=True)}
    with pytest.raises(ExportError, match=r"^candidate_\w+: shape \(1, 65\b.* is outside"):
        run(fed)
