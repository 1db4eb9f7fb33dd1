"""TensorRT: optimization profiles, the early refusals, and the engine builder.

The builder is exercised against a fake `tensorrt` module that records every call (TensorRT does
not install on most machines); `test_real_engine_*` builds a real engine where TensorRT and a GPU
are present.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import types
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar

import onnx
import pytest

from export.checkpoint import Checkpoint, save_checkpoint
from export.onnx.exporter import export_onnx
from export.onnx.wrappers import CANDIDATE_TOWER, MODEL_NAMES, RANKER, TensorSpec, model_io
from export.repository import build
from export.repository.build import ExportSettings, export_repository
from export.tensorrt import builder
from export.tensorrt.builder import build_engine, require_tensorrt
from export.tensorrt.profiles import ProfileLimits, ShapeRange, shape_ranges
from phoenix.config import get_config
from phoenix.errors import ExportError

CONFIG = get_config("tiny")
MAX_CANDIDATES = 64
LIMITS = ProfileLimits(max_batch=16, max_candidates=MAX_CANDIDATES, opt_batch=4, opt_candidates=32)


# Profiles ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_shape_ranges_cover_every_input_consistently(name: str) -> None:
    inputs, _ = model_io(name, CONFIG)
    ranges = shape_ranges(inputs, LIMITS)
    assert list(ranges) == [spec.name for spec in inputs]
    for spec in inputs:
        r = ranges[spec.name]
        assert len(r.min) == len(r.opt) == len(r.max) == 1 + len(spec.shape)
        assert all(lo <= mid <= hi for lo, mid, hi in zip(r.min, r.opt, r.max, strict=True))
        assert (r.min[0], r.opt[0], r.max[0]) == (1, 4, 16)  # batch
        for axis, size in enumerate(spec.shape, start=1):
            dims = (r.min[axis], r.opt[axis], r.max[axis])
            assert dims == ((1, 32, MAX_CANDIDATES) if size == -1 else (size, size, size))


def test_ranker_ranges_spelled_out() -> None:
    inputs, _ = model_io(RANKER, CONFIG)
    ranges = shape_ranges(inputs, LIMITS)
    s, a = CONFIG.history_len, CONFIG.num_action_columns
    assert ranges["history_actions"] == ShapeRange((1, s, a), (4, s, a), (16, s, a))
    assert ranges["candidate_post_hash"] == ShapeRange((1, 1, 2), (4, 32, 2), (16, 64, 2))
    assert ranges["candidate_surface"] == ShapeRange((1, 1), (4, 32), (16, 64))
    assert ranges["user_hash"] == ShapeRange((1, 2), (4, 2), (16, 2))


def test_tower_ranges_have_no_candidate_dimension() -> None:
    inputs, _ = model_io(CANDIDATE_TOWER, CONFIG)
    ranges = shape_ranges(inputs, LIMITS)
    assert ranges == {
        "post_hash": ShapeRange((1, 2), (4, 2), (16, 2)),
        "author_hash": ShapeRange((1, 2), (4, 2), (16, 2)),
        "sids": ShapeRange((1, 6), (4, 6), (16, 6)),
    }


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_batch": 4, "max_candidates": 8, "opt_batch": 5, "opt_candidates": 8}, "opt_batch"),
        ({"max_batch": 0, "max_candidates": 8, "opt_candidates": 8}, "opt_batch"),
        ({"max_batch": 4, "max_candidates": 8, "opt_candidates": 9}, "opt_candidates"),
        ({"max_batch": 4, "max_candidates": 8, "opt_candidates": 0}, "opt_candidates"),
    ],
)
def test_profile_limits_must_be_ordered(kwargs: dict[str, int], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ProfileLimits(**kwargs)


# Refusals ---------------------------------------------------------------------------------------
@pytest.fixture
def no_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    """`import tensorrt` fails, even where it is installed."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)


@pytest.mark.usefixtures("no_tensorrt")
def test_require_tensorrt_explains_the_way_out() -> None:
    with pytest.raises(ExportError) as info:
        require_tensorrt()
    message = str(info.value)
    assert "--target tensorrt needs TensorRT" in message
    assert "does not import here" in message
    assert "--target cpu" in message


def test_require_tensorrt_needs_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.0.0"))
    monkeypatch.setattr(builder, "_gpu_present", lambda: False)
    with pytest.raises(ExportError, match=r"TensorRT 10\.0\.0 imports but no NVIDIA GPU"):
        require_tensorrt()


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    small = CONFIG.with_overrides(history_len=8, num_post_rows=100, num_author_rows=20)
    return save_checkpoint(Checkpoint.initialise(small), tmp_path_factory.mktemp("ckpt") / "c")


@pytest.fixture
def no_export(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the export started")

    monkeypatch.setattr(build, "export_onnx", refuse)
    monkeypatch.setattr(build, "load_checkpoint", refuse)


@pytest.mark.usefixtures("no_tensorrt", "no_export")
def test_tensorrt_export_fails_before_touching_the_repository(
    checkpoint_dir: Path, tmp_path: Path
) -> None:
    repository = tmp_path / "models"
    with pytest.raises(ExportError, match="--target tensorrt needs TensorRT"):
        export_repository(checkpoint_dir, repository, ExportSettings(target="tensorrt"))
    assert not repository.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.usefixtures("no_export")
@pytest.mark.parametrize("target", ["cpu", "onnxruntime"])
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_reduced_precision_needs_tensorrt(
    checkpoint_dir: Path, tmp_path: Path, target: str, precision: str
) -> None:
    repository = tmp_path / "models"
    settings = ExportSettings(target=target, precision=precision)
    with pytest.raises(ExportError, match=f"--precision {precision} needs --target tensorrt"):
        export_repository(checkpoint_dir, repository, settings)
    assert not repository.exists()


def test_unknown_precision_is_refused_before_tensorrt(tmp_path: Path) -> None:
    inputs, _ = model_io(RANKER, CONFIG)
    with pytest.raises(ExportError, match="--precision: 'int8'"):
        build_engine(tmp_path / "m.onnx", tmp_path / "m.plan", inputs, LIMITS, precision="int8")
    assert list(tmp_path.iterdir()) == []


# The builder, against a fake TensorRT -----------------------------------------------------------
_DTYPES = {
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.INT64: "int64",
    onnx.TensorProto.UINT64: "uint64",  # the exporter's unsigned view for bit shifts
    onnx.TensorProto.BOOL: "bool",
}


class FakeTensor:
    def __init__(self, name: str, dtype: str) -> None:
        self.name = name
        self.dtype = dtype


class FakeLayer:
    def __init__(self, name: str, kind: str, outputs: list[FakeTensor]) -> None:
        self.name = name
        self.type = kind
        self.outputs = outputs
        self.num_outputs = len(outputs)
        self.precision_set: str | None = None
        self.output_types: dict[int, str] = {}

    def get_output(self, index: int) -> FakeTensor:
        return self.outputs[index]

    @property
    def precision(self) -> str:
        return self.precision_set or "float32"

    @precision.setter
    def precision(self, value: str) -> None:
        self.precision_set = value

    def set_output_type(self, index: int, dtype: str) -> None:
        self.output_types[index] = dtype


class FakeNetwork:
    def __init__(self, flags: int) -> None:
        self.flags = flags
        self.inputs: list[FakeTensor] = []
        self.layers: list[FakeLayer] = []

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    def get_input(self, index: int) -> FakeTensor:
        return self.inputs[index]

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def get_layer(self, index: int) -> FakeLayer:
        return self.layers[index]


class FakeParser:
    """Like TensorRT's ONNX parser: one layer per node, named after it, outputs keep their names."""

    errors: ClassVar[list[str]] = []

    def __init__(self, network: FakeNetwork, logger: object) -> None:
        self.network = network
        self.num_errors = len(self.errors)

    def get_error(self, index: int) -> str:
        return self.errors[index]

    def parse_from_file(self, path: str) -> bool:
        if self.errors:
            return False
        graph = onnx.load(path, load_external_data=False).graph
        types_ = {
            v.name: _DTYPES[v.type.tensor_type.elem_type]
            for v in [*graph.input, *graph.value_info, *graph.output]
        }
        self.network.inputs = [FakeTensor(v.name, types_[v.name]) for v in graph.input]
        self.network.layers = [
            FakeLayer(
                node.name,
                "SOFTMAX" if node.op_type == "Softmax" else node.op_type.upper(),
                [FakeTensor(out, types_[out]) for out in node.output],
            )
            for node in graph.node
        ]
        return True


class FakeProfile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple[tuple[int, ...], ...]] = {}

    def set_shape(self, name: str, lo: Any, mid: Any, hi: Any) -> None:
        assert name not in self.shapes, f"{name} set twice"
        self.shapes[name] = (tuple(lo), tuple(mid), tuple(hi))


class FakeCache:
    def __init__(self, blob: bytes) -> None:
        self.blob = bytes(blob)

    def serialize(self) -> bytes:
        return self.blob + b"|timings"


class FakeConfig:
    def __init__(self, record: dict[str, Any]) -> None:
        self.record = record
        self.cache: FakeCache | None = None

    def set_memory_pool_limit(self, pool: str, size: int) -> None:
        self.record["pools"][pool] = size

    def set_flag(self, flag: str) -> None:
        self.record["flags"].add(flag)

    def add_optimization_profile(self, profile: FakeProfile) -> int:
        self.record["profiles"].append(profile)
        return len(self.record["profiles"]) - 1

    def create_timing_cache(self, blob: bytes) -> FakeCache:
        self.record["cache_blobs"].append(bytes(blob))
        return FakeCache(blob)

    def set_timing_cache(self, cache: FakeCache, ignore_mismatch: bool) -> bool:
        self.record["cache_sets"].append((cache.blob, ignore_mismatch))
        if cache.blob.startswith(b"other-gpu"):
            return False
        self.cache = cache
        return True

    def get_timing_cache(self) -> FakeCache | None:
        return self.cache


class FakeBuilder:
    def __init__(self, logger: object, record: dict[str, Any]) -> None:
        self.record = record

    def create_network(self, flags: int = 0) -> FakeNetwork:
        network = FakeNetwork(flags)
        self.record["networks"].append(network)
        return network

    def create_builder_config(self) -> FakeConfig:
        return FakeConfig(self.record)

    def create_optimization_profile(self) -> FakeProfile:
        return FakeProfile()

    def build_serialized_network(self, network: FakeNetwork, config: FakeConfig) -> bytes | None:
        self.record["built"].append((network, config))
        return None if self.record["fail_build"] else memoryview(b"PLAN-BYTES")


def fake_tensorrt() -> tuple[types.ModuleType, dict[str, Any]]:
    record: dict[str, Any] = {
        "pools": {},
        "flags": set(),
        "profiles": [],
        "cache_blobs": [],
        "cache_sets": [],
        "networks": [],
        "built": [],
        "fail_build": False,
    }
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.99.0-fake"
    trt.Logger = type("Logger", (), {"WARNING": "warning", "__init__": lambda self, level: None})
    trt.Builder = lambda logger: FakeBuilder(logger, record)
    trt.OnnxParser = FakeParser
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="workspace")
    trt.BuilderFlag = types.SimpleNamespace(
        FP16="FP16",
        BF16="BF16",
        PREFER_PRECISION_CONSTRAINTS="PREFER_PRECISION_CONSTRAINTS",
        OBEY_PRECISION_CONSTRAINTS="OBEY_PRECISION_CONSTRAINTS",
    )
    trt.LayerType = types.SimpleNamespace(SOFTMAX="SOFTMAX")
    trt.float32, trt.float16, trt.bfloat16 = "float32", "float16", "bfloat16"
    return trt, record


@pytest.fixture
def trt(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    module, record = fake_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    monkeypatch.setattr(builder, "_gpu_present", lambda: True)
    monkeypatch.setattr(builder, "_gpu_name", lambda: "Fake GPU 80GB")
    monkeypatch.setattr(builder, "_compute_capability", lambda: "9.0")
    monkeypatch.setattr(builder, "_cuda_version", lambda: "12.8")
    monkeypatch.setattr(FakeParser, "errors", [])
    return record


@pytest.fixture(scope="module")
def ranker_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ranker") / "model.onnx"
    return export_onnx(
        RANKER, Checkpoint.initialise(CONFIG), CONFIG, path, max_candidates=MAX_CANDIDATES
    )


@pytest.fixture
def work(ranker_onnx: Path, tmp_path: Path) -> Path:
    """A version-to-be directory holding the ranker's graph."""
    (tmp_path / "model.onnx").write_bytes(ranker_onnx.read_bytes())
    return tmp_path


def test_builds_plan_with_one_profile_covering_every_input(trt: dict[str, Any], work: Path) -> None:
    inputs, _ = model_io(RANKER, CONFIG)
    metadata = build_engine(
        work / "model.onnx", work / "model.plan", inputs, LIMITS, precision="fp32"
    )
    assert (work / "model.plan").read_bytes() == b"PLAN-BYTES"
    (network,) = trt["networks"]
    assert network.flags == 0  # TensorRT 10: explicit batch is implied; the flag is deprecated
    (profile,) = trt["profiles"]
    ranges = shape_ranges(inputs, LIMITS)
    assert profile.shapes == {n: (r.min, r.opt, r.max) for n, r in ranges.items()}
    assert trt["pools"] == {"workspace": 8 << 30}
    assert trt["flags"] == set()  # fp32: no reduced precision, no constraints
    assert all(layer.precision_set is None for layer in network.layers)

    engine = json.loads((work / "engine.json").read_text())
    assert engine == {
        "tensorrt_version": "10.99.0-fake",
        "gpu": "Fake GPU 80GB",
        "compute_capability": "9.0",
        "cuda_version": "12.8",
        "precision": "fp32",
        "profiles": {
            n: {"min": list(r.min), "opt": list(r.opt), "max": list(r.max)}
            for n, r in ranges.items()
        },
        "build_seconds": metadata.build_seconds,
        "onnx_file": "model.onnx",
        "layers_kept_fp32": None,  # fp32: nothing to constrain
        "layers_total": network.num_layers,
        "plan_bytes": len(b"PLAN-BYTES"),
        "plan_sha256": hashlib.sha256(b"PLAN-BYTES").hexdigest(),
        "parity": None,
    }
    assert engine == asdict(metadata)


def _sensitive_layers(graph_path: Path) -> set[str]:
    """Nodes inside an RMSNorm module (by the exporter's class hierarchy) and softmax nodes."""
    graph = onnx.load(str(graph_path), load_external_data=False).graph
    names = set()
    for node in graph.node:
        classes = {p.key: p.value for p in node.metadata_props}.get(
            "pkg.torch.onnx.class_hierarchy", ""
        )
        if node.op_type == "Softmax" or "RMSNorm" in classes:
            names.add(node.name)
    return names


@pytest.mark.parametrize(("precision", "flag"), [("fp16", "FP16"), ("bf16", "BF16")])
def test_reduced_precision_keeps_norms_and_softmax_in_fp32(
    trt: dict[str, Any], work: Path, precision: str, flag: str
) -> None:
    inputs, _ = model_io(RANKER, CONFIG)
    build_engine(work / "model.onnx", work / "model.plan", inputs, LIMITS, precision=precision)
    assert trt["flags"] == {flag, "PREFER_PRECISION_CONSTRAINTS"}
    (network,) = trt["networks"]
    kept = {layer.name for layer in network.layers if layer.precision_set == "float32"}
    expected = _sensitive_layers(work / "model.onnx")
    # 2 blocks x 2 norms + the final norm, each several layers; one softmax per attention pass.
    assert sum(1 for layer in network.layers if layer.type == "SOFTMAX") >= 2
    assert len(expected) > 20
    assert kept == expected
    for layer in network.layers:
        if layer.name in kept:
            float_outputs = {
                j: "float32" for j, out in enumerate(layer.outputs) if out.dtype == "float32"
            }
            assert layer.output_types == float_outputs, layer.name
        else:
            assert layer.output_types == {}, layer.name
    engine = json.loads((work / "engine.json").read_text())
    assert engine["precision"] == precision
    assert engine["layers_kept_fp32"] == len(kept)
    assert engine["layers_total"] == len(network.layers)
    assert engine["plan_sha256"] == hashlib.sha256((work / "model.plan").read_bytes()).hexdigest()
    assert engine["plan_bytes"] == (work / "model.plan").stat().st_size


def test_timing_cache_is_loaded_and_saved(trt: dict[str, Any], work: Path) -> None:
    cache = work / "timing.cache"
    cache.write_bytes(b"earlier-timings")
    inputs, _ = model_io(RANKER, CONFIG)
    build_engine(work / "model.onnx", work / "model.plan", inputs, LIMITS, timing_cache=cache)
    assert trt["cache_blobs"] == [b"earlier-timings"]
    assert trt["cache_sets"] == [(b"earlier-timings", False)]
    assert cache.read_bytes() == b"earlier-timings|timings"
    assert sorted(p.name for p in work.iterdir()) == [
        "engine.json",
        "model.onnx",
        "model.plan",
        "timing.cache",
    ]


def test_missing_timing_cache_starts_fresh_and_is_created(trt: dict[str, Any], work: Path) -> None:
    cache = work / "caches" / "timing.cache"
    cache.parent.mkdir()
    inputs, _ = model_io(RANKER, CONFIG)
    build_engine(work / "model.onnx", work / "model.plan", inputs, LIMITS, timing_cache=cache)
    assert trt["cache_blobs"] == [b""]
    assert cache.read_bytes() == b"|timings"


def test_no_timing_cache_file_means_none_written(trt: dict[str, Any], work: Path) -> None:
    inputs, _ = model_io(RANKER, CONFIG)
    build_engine(work / "model.onnx", work / "model.plan", inputs, LIMITS)
    assert trt["cache_blobs"] == [b""]
    assert sorted(p.name for p in work.iterdir()) == ["engine.json", "model.onnx", "model.plan"]


def test_timing_cache_from_another_gpu_is_replaced(
    trt: dict[str, Any], work: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = work / "timing.cache"
    cache.write_bytes(b"other-gpu-timings")
    inputs, _ = model_io(RANKER, CONFIG)
    with caplog.at_level(logging.WARNING, logger=builder.__name__):
        build_engine(work / "model.onnx", work / "model.plan", inputs, LIMITS, timing_cache=cache)
    assert trt["cache_sets"] == [(b"other-gpu-timings", False), (b"", False)]
    assert cache.read_bytes() == b"|timings"
    assert "does not fit this TensorRT/GPU" in caplog.text


def test_parse_errors_are_reported(
    trt: dict[str, Any], work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(FakeParser, "errors", ["node_mean: unsupported", "node_pow_1: bad"])
    inputs, _ = model_io(RANKER, CONFIG)
    with pytest.raises(ExportError, match="node_mean: unsupported; node_pow_1: bad"):
        build_engine(work / "model.onnx", work / "model.plan", inputs, LIMITS)
    assert sorted(p.name for p in work.iterdir()) == ["model.onnx"]


def test_failed_build_writes_nothing(trt: dict[str, Any], work: Path) -> None:
    trt["fail_build"] = True
    cache = work / "timing.cache"
    cache.write_bytes(b"earlier")
    inputs, _ = model_io(RANKER, CONFIG)
    with pytest.raises(ExportError, match="TensorRT failed to build an engine"):
        build_engine(work / "model.onnx", work / "model.plan", inputs, LIMITS, timing_cache=cache)
    assert sorted(p.name for p in work.iterdir()) == ["model.onnx", "timing.cache"]
    assert cache.read_bytes() == b"earlier"


def test_inputs_must_match_the_graph(trt: dict[str, Any], work: Path) -> None:
    inputs, _ = model_io(RANKER, CONFIG)
    renamed = [*inputs[:-1], TensorSpec("candidate_surfaces", "int64", (-1,))]
    with pytest.raises(ExportError, match="candidate_surfaces"):
        build_engine(work / "model.onnx", work / "model.plan", renamed, LIMITS)
    assert not (work / "model.plan").exists()


# A real TensorRT build --------------------------------------------------------------------------
@pytest.fixture
def real_trt() -> Any:
    """The real `tensorrt` module; skips (before any export) without it or without a GPU."""
    trt = pytest.importorskip("tensorrt")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT engines are built on a GPU; none is visible")
    return trt


@pytest.mark.gpu
@pytest.mark.slow
def test_real_engine_has_the_model_io(real_trt: Any, ranker_onnx: Path, tmp_path: Path) -> None:
    trt = real_trt
    inputs, outputs = model_io(RANKER, CONFIG)
    plan = tmp_path / "model.plan"
    metadata = build_engine(ranker_onnx, plan, inputs, LIMITS, precision="fp16")
    assert metadata.tensorrt_version == trt.__version__
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(plan.read_bytes())
    assert engine is not None
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    modes = {name: engine.get_tensor_mode(name) for name in names}
    assert sorted(n for n in names if modes[n] == trt.TensorIOMode.INPUT) == sorted(
        s.name for s in inputs
    )
    assert sorted(n for n in names if modes[n] == trt.TensorIOMode.OUTPUT) == sorted(
        s.name for s in outputs
    )
    ranges = shape_ranges(inputs, LIMITS)
    for spec in inputs:
        got = [tuple(d) for d in engine.get_tensor_profile_shape(spec.name, 0)]
        r = ranges[spec.name]
        assert got == [r.min, r.opt, r.max], spec.name
