"""config.pbtxt: Triton's own ModelConfig, per target, matching the model contract and the graph."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from export.checkpoint import Checkpoint
from export.onnx.exporter import export_onnx, onnx_io
from export.onnx.wrappers import MODEL_NAMES, RANKER, TensorSpec, model_io
from export.repository.model_config import (
    MODEL_FILES,
    Target,
    build_model_config,
    parse_pbtxt,
    to_pbtxt,
)
from phoenix.config import get_config

CONFIG = get_config("tiny")
MAX_CANDIDATES = 64

#: numpy dtype name (of a TensorSpec or of `onnx_io`) -> Triton's DataType enum value name.
TRITON_TYPES = {"int64": "TYPE_INT64", "float32": "TYPE_FP32"}


def pbtxt(name: str, target: Target, **kwargs: int) -> str:
    inputs, outputs = model_io(name, CONFIG)
    kwargs.setdefault("max_batch_size", 16)
    return to_pbtxt(build_model_config(name, target, inputs, outputs, **kwargs))


def tensors(entries: object) -> list[tuple[str, str, tuple[int, ...]]]:
    """(name, Triton type name, dims) of config.pbtxt inputs or outputs."""
    return [
        (e.name, mc.DataType.Name(e.data_type), tuple(e.dims))
        for e in entries  # type: ignore[attr-defined]
    ]


def expected(specs: list[TensorSpec]) -> list[tuple[str, str, tuple[int, ...]]]:
    return [(s.name, TRITON_TYPES[s.dtype], s.shape) for s in specs]


@pytest.mark.parametrize("target", list(Target))
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_pbtxt_round_trips_and_matches_the_contract(name: str, target: Target) -> None:
    text = pbtxt(name, target, max_batch_size=32, max_queue_delay_us=500, instances=2)
    parsed = parse_pbtxt(text)
    assert isinstance(parsed, mc.ModelConfig)
    assert to_pbtxt(parsed) == text
    assert parsed.name == name
    assert parsed.max_batch_size == 32
    assert parsed.HasField("dynamic_batching")
    assert parsed.dynamic_batching.max_queue_delay_microseconds == 500
    assert parsed.version_policy.WhichOneof("policy_choice") == "latest"
    assert parsed.version_policy.latest.num_versions == 2
    assert [(g.count, mc.ModelInstanceGroup.Kind.Name(g.kind)) for g in parsed.instance_group] == [
        (
            2,
            {
                "cpu": "KIND_CPU",
                "onnxruntime": "KIND_AUTO",
                "tensorrt": "KIND_GPU",
                "pytorch": "KIND_CPU",  # the model places itself (its `device` parameter)
            }[target.value],
        )
    ]
    inputs, outputs = model_io(name, CONFIG)
    assert tensors(parsed.input) == expected(inputs)
    assert tensors(parsed.output) == expected(outputs)


@pytest.mark.parametrize(
    ("target", "backend", "platform", "filename"),
    [
        (Target.CPU, "python", "", ""),  # the Python backend loads model.py by default
        (Target.ONNXRUNTIME, "", "onnxruntime_onnx", "model.onnx"),
        (Target.TENSORRT, "", "tensorrt_plan", "model.plan"),
        (Target.PYTORCH, "python", "", ""),
    ],
)
def test_backend_platform_and_model_file(
    target: Target, backend: str, platform: str, filename: str
) -> None:
    parsed = parse_pbtxt(pbtxt(RANKER, target))
    assert (parsed.backend, parsed.platform, parsed.default_model_filename) == (
        backend,
        platform,
        filename,
    )
    if filename:
        assert MODEL_FILES[target] == filename


def test_model_files_cover_every_target() -> None:
    assert MODEL_FILES == {
        Target.CPU: "model.onnx",  # run by model.py through ONNX Runtime
        Target.ONNXRUNTIME: "model.onnx",
        Target.TENSORRT: "model.plan",
        Target.PYTORCH: "model.safetensors",  # run by model.py through PyTorch
    }


def test_ranker_candidate_dims_are_dynamic_and_history_fixed() -> None:
    parsed = parse_pbtxt(pbtxt(RANKER, Target.CPU))
    dims = {t.name: list(t.dims) for t in [*parsed.input, *parsed.output]}
    s, a, k = CONFIG.history_len, CONFIG.num_action_columns, CONFIG.num_continuous
    assert (s, a, k) == (126, 64, 8)
    assert dims["user_hash"] == [2] and dims["user_ip_hash"] == [2]
    assert dims["user_apps"] == [CONFIG.num_apps]
    assert dims["history_actions"] == [s, a]
    assert dims["history_post_hash"] == [s, 2]
    assert dims["history_sids"] == [s, CONFIG.sid_levels]
    assert dims["history_dwell"] == [s]
    assert dims["candidate_post_hash"] == [-1, 2]
    assert dims["candidate_surface"] == [-1]
    assert dims["candidate_sids"] == [-1, CONFIG.sid_levels]
    assert dims["candidate_stale"] == [-1]
    # X's serving outputs: log sigmoid of the 64 action logits, and the 8 continuous outputs
    assert dims["action_log_probs"] == [-1, a]
    assert dims["continuous"] == [-1, k]


def test_dynamic_batching_present_with_zero_delay() -> None:
    """Every field at its default must still switch dynamic batching on."""
    text = pbtxt(RANKER, Target.CPU, max_queue_delay_us=0)
    assert "dynamic_batching {" in text
    parsed = parse_pbtxt(text)
    assert parsed.HasField("dynamic_batching")
    assert parsed.dynamic_batching.max_queue_delay_microseconds == 0


def test_max_batch_size_must_be_positive() -> None:
    inputs, outputs = model_io(RANKER, CONFIG)
    with pytest.raises(ValueError, match="max_batch_size"):
        build_model_config(RANKER, Target.CPU, inputs, outputs, max_batch_size=0)


def test_unknown_dtype_names_the_tensor() -> None:
    inputs, outputs = model_io(RANKER, CONFIG)
    odd = [*inputs, TensorSpec("weird_input", "complex64", (3,))]
    with pytest.raises(ValueError, match=r"weird_input: dtype 'complex64'"):
        build_model_config(RANKER, Target.CPU, odd, outputs, max_batch_size=4)


def test_parse_pbtxt_rejects_misspelt_fields() -> None:
    with pytest.raises(text_format.ParseError, match="max_batch_sise"):
        parse_pbtxt('name: "x"\nmax_batch_sise: 4\n')


@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("graphs")
    checkpoint = Checkpoint.initialise(CONFIG)
    return {
        name: export_onnx(
            name, checkpoint, CONFIG, out / name / "model.onnx", max_candidates=MAX_CANDIDATES
        )
        for name in MODEL_NAMES
    }


@pytest.mark.parametrize("target", list(Target))
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_pbtxt_tensors_equal_the_exported_graph(
    graphs: dict[str, Path], name: str, target: Target
) -> None:
    graph_inputs, graph_outputs = onnx_io(graphs[name])
    parsed = parse_pbtxt(pbtxt(name, target))
    assert tensors(parsed.input) == expected(graph_inputs)
    assert tensors(parsed.output) == expected(graph_outputs)
    if name == RANKER:  # the candidate dimension is symbolic in the graph, -1 in the config
        assert ("candidate_post_hash", "TYPE_INT64", (-1, 2)) in expected(graph_inputs)


def test_served_parameters_carry_the_model_config_and_candidate_limit() -> None:
    """Clients rebuild the exact ModelConfig (hashing, history length) from config.pbtxt."""
    import json

    from export.repository.build import served_parameters
    from phoenix.config import ModelConfig
    from phoenix.serving import MAX_CANDIDATES_PARAMETER, MODEL_CONFIG_PARAMETER

    inputs, outputs = model_io(RANKER, CONFIG)
    params = served_parameters(CONFIG, MAX_CANDIDATES, Target.CPU)
    text = to_pbtxt(
        build_model_config(RANKER, Target.CPU, inputs, outputs, max_batch_size=8, parameters=params)
    )
    parsed = parse_pbtxt(text).parameters
    assert ModelConfig.from_dict(json.loads(parsed[MODEL_CONFIG_PARAMETER].string_value)) == CONFIG
    assert int(parsed[MAX_CANDIDATES_PARAMETER].string_value) == MAX_CANDIDATES


@pytest.mark.parametrize("target", list(Target))
def test_each_target_names_the_candidate_counts_to_pad_to(target: Target) -> None:
    """The CPU target pads to multiples of 64 (padding costs there); the GPU targets keep the
    few buckets their batcher and CUDA graphs want. Both end at the candidate limit."""
    from export.repository.build import served_parameters
    from phoenix.serving import CANDIDATE_BUCKETS, CANDIDATE_BUCKETS_PARAMETER, parse_buckets

    buckets = parse_buckets(served_parameters(CONFIG, 1000, target)[CANDIDATE_BUCKETS_PARAMETER])
    assert buckets[-1] == 1000 and list(buckets) == sorted(set(buckets))
    if target is Target.CPU:
        assert buckets == (*range(64, 1000, 64), 1000)
    else:
        assert buckets == (*(b for b in CANDIDATE_BUCKETS if b < 1000), 1000)
