"""`export_repository` per target: the `pytorch` target's version directories and config, the
precision defaults and refusals, the parity check that guards every publication, the TensorRT
wiring (build, then parity, into engine.json) and the `phoenix export` options of the new target.

TensorRT is replaced by fakes of `build_engine` and `EngineRunner` (the builder itself is tested
against a fake `tensorrt` module in test_tensorrt.py); the ONNX export, which the TensorRT wiring
does not depend on, is stubbed there too, so that this file stays fast.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tritonclient.grpc import model_config_pb2 as mc

from export.checkpoint import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    Checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from export.onnx.wrappers import CANDIDATE_TOWER, MODEL_NAMES, RANKER, model_io, wrap
from export.parity import TOLERANCE_PER_UNIT
from export.repository import build
from export.repository.build import (
    GPU_QUEUE_DELAY_US,
    TORCH_MODEL_SOURCE,
    ExportSettings,
    PublishedModel,
    export_repository,
)
from export.repository.model_config import parse_pbtxt
from export.tensorrt.builder import EngineMetadata
from export.torch_serving.runner import TorchRunner
from phoenix.cli import main
from phoenix.config import ModelConfig, get_config
from phoenix.errors import ConfigError, ExportError
from phoenix.serving import (
    CANDIDATE_BUCKETS_PARAMETER,
    MAX_CANDIDATES_PARAMETER,
    MODEL_CONFIG_PARAMETER,
)

CONFIG = get_config("tiny").with_overrides(
    history_len=8, num_user_rows=50, num_post_rows=300, num_author_rows=50
)
MAX_CANDIDATES = 64
PYTORCH_FILES = [
    "__pycache__",  # model.py compiled before publishing (writer.py)
    CONFIG_FILE,
    "io.json",
    "model.py",
    WEIGHTS_FILE,
    "provenance.json",
]


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    checkpoint = Checkpoint.initialise(CONFIG, seed=3)
    with torch.no_grad():  # non-trivial norms too
        for param in [*checkpoint.ranker.parameters(), *checkpoint.retrieval.parameters()]:
            param.add_(0.05 * torch.randn_like(param))
    return save_checkpoint(checkpoint, tmp_path_factory.mktemp("ckpt") / "checkpoint")


@pytest.fixture(scope="module")
def pytorch_export(
    checkpoint_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[PublishedModel]]:
    repository = tmp_path_factory.mktemp("pytorch") / "models"
    settings = ExportSettings(target="pytorch", precision="fp32", max_candidates=MAX_CANDIDATES)
    return repository, export_repository(checkpoint_dir, repository, settings)


def parameters(repository: Path, name: str) -> dict[str, str]:
    config = parse_pbtxt((repository / name / "config.pbtxt").read_text())
    return {key: value.string_value for key, value in config.parameters.items()}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(root: Path) -> list[str]:
    """Staging directories of the writer (hidden, beside the repository)."""
    return [p.name for p in root.iterdir() if p.name.startswith(".")]


@pytest.fixture
def no_export(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any work past the settings' checks fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the export started")

    monkeypatch.setattr(build, "load_checkpoint", refuse)
    monkeypatch.setattr(build, "export_onnx", refuse)
    monkeypatch.setattr(build, "TorchRunner", refuse)


# The pytorch target -----------------------------------------------------------------------------
def test_pytorch_version_dirs_hold_the_checkpoint_and_torch_model(
    pytorch_export: tuple[Path, list[PublishedModel]], checkpoint_dir: Path
) -> None:
    repository, published = pytorch_export
    assert sorted(p.name for p in repository.iterdir()) == sorted(MODEL_NAMES)
    assert [(m.name, m.version) for m in published] == [(name, 1) for name in MODEL_NAMES]
    for name in MODEL_NAMES:
        version = repository / name / "1"
        assert sorted(p.name for p in version.iterdir()) == sorted(PYTORCH_FILES), name
        assert (version / "model.py").read_bytes() == TORCH_MODEL_SOURCE.read_bytes()
        for file in (CONFIG_FILE, WEIGHTS_FILE):
            assert sha256(version / file) == sha256(checkpoint_dir / file), file
        pycache = [p.name for p in (version / "__pycache__").iterdir()]
        assert pycache == [f"model.{sys.implementation.cache_tag}.pyc"]
        io = json.loads((version / "io.json").read_text())
        assert io["max_candidates"] == MAX_CANDIDATES
        # The version directory is a loadable checkpoint: what torch_model.py serves from.
        assert load_checkpoint(version).config == CONFIG


def test_pytorch_config_pbtxt_is_a_python_backend_with_the_runtime_parameters(
    pytorch_export: tuple[Path, list[PublishedModel]],
) -> None:
    repository, _ = pytorch_export
    for name in MODEL_NAMES:
        config = parse_pbtxt((repository / name / "config.pbtxt").read_text())
        assert config.backend == "python" and config.platform == ""
        assert [group.kind for group in config.instance_group] == [mc.ModelInstanceGroup.KIND_CPU]
        assert config.dynamic_batching.max_queue_delay_microseconds == GPU_QUEUE_DELAY_US
        assert parameters(repository, name) == {
            "precision": "fp32",
            "device": "auto",
            MAX_CANDIDATES_PARAMETER: str(MAX_CANDIDATES),
            CANDIDATE_BUCKETS_PARAMETER: "16,64",  # the GPU sizes up to the limit of 64
            MODEL_CONFIG_PARAMETER: _served_config(name).model_dump_json(),
        }
        inputs, outputs = model_io(name, CONFIG)
        assert [t.name for t in config.input] == [spec.name for spec in inputs]
        assert [t.name for t in config.output] == [spec.name for spec in outputs]


def test_pytorch_provenance_and_parity(
    pytorch_export: tuple[Path, list[PublishedModel]], checkpoint_dir: Path
) -> None:
    repository, published = pytorch_export
    for model in published:
        assert model.runtime == "PyTorch fp32 on cpu"
        assert model.parity_max_abs_diff is not None
        assert 0 <= model.parity_max_abs_diff <= 1e-5
        provenance = json.loads((repository / model.name / "1" / "provenance.json").read_text())
        assert provenance["target"] == "pytorch"
        assert provenance["precision"] == "fp32"
        assert provenance["parity_max_abs_diff"] == model.parity_max_abs_diff
        assert provenance["checkpoint_sha256"] == sha256(checkpoint_dir / WEIGHTS_FILE)


def test_pytorch_cuda_graphs_and_device_become_parameters(
    checkpoint_dir: Path, tmp_path: Path
) -> None:
    repository = tmp_path / "models"
    settings = ExportSettings(
        target="pytorch",
        precision="fp32",
        device="cpu",
        cuda_graphs=True,  # on the CPU: the parity check runs the padded path
        max_candidates=MAX_CANDIDATES,
    )
    published = export_repository(checkpoint_dir, repository, settings)
    assert all(m.parity_max_abs_diff is not None for m in published)
    for name in MODEL_NAMES:
        got = parameters(repository, name)
        assert got["cuda_graphs"] == "true"
        assert got["device"] == "cpu" and got["precision"] == "fp32"
    settings = ExportSettings(target="pytorch", cuda_graphs=False, verify=False)
    export_repository(checkpoint_dir, tmp_path / "off", settings)
    assert parameters(tmp_path / "off", RANKER)["cuda_graphs"] == "false"


def test_pytorch_defaults_to_bf16(checkpoint_dir: Path, tmp_path: Path) -> None:
    settings = ExportSettings(target="pytorch", max_candidates=MAX_CANDIDATES)
    assert settings.resolved_precision == "bf16"
    repository = tmp_path / "models"
    published = export_repository(checkpoint_dir, repository, settings)
    for model in published:
        assert model.runtime.startswith("PyTorch bf16 on ")
        # bf16 rounding shows, and stays within the bf16 bound (checked by the export).
        assert model.parity_max_abs_diff is not None and model.parity_max_abs_diff > 1e-5
        provenance = json.loads((repository / model.name / "1" / "provenance.json").read_text())
        assert provenance["precision"] == "bf16"
        assert parameters(repository, model.name)["precision"] == "bf16"


def test_cpu_target_defaults_to_fp32(
    checkpoint_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fake_onnx(name: str, checkpoint: Any, config: Any, path: Path, **kwargs: Any) -> Path:
        path.write_bytes(b"ONNX")
        return path

    monkeypatch.setattr(build, "export_onnx", fake_onnx)
    settings = ExportSettings(verify=False)
    assert settings.resolved_precision == "fp32"
    assert settings.resolved_queue_delay_us == 0
    assert ExportSettings(max_queue_delay_us=300).resolved_queue_delay_us == 300
    assert ExportSettings(target="tensorrt").resolved_queue_delay_us == GPU_QUEUE_DELAY_US
    repository = tmp_path / "models"
    export_repository(checkpoint_dir, repository, settings)
    provenance = json.loads((repository / RANKER / "1" / "provenance.json").read_text())
    assert provenance["target"] == "cpu" and provenance["precision"] == "fp32"
    assert "precision" not in parameters(repository, RANKER)
    assert "device" not in parameters(repository, RANKER)


@pytest.mark.usefixtures("no_export")
@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"target": "cpu", "precision": "bf16"},
            "--precision bf16 needs --target tensorrt or pytorch",
        ),
        (
            {"target": "onnxruntime", "precision": "fp16"},
            "--precision fp16 needs --target tensorrt or pytorch",
        ),
        (
            {"target": "cpu", "device": "cpu"},
            "--device and --cuda-graphs apply to --target pytorch",
        ),
        (
            {"target": "onnxruntime", "cuda_graphs": False},
            "--device and --cuda-graphs apply to --target pytorch",
        ),
        (
            {"target": "tensorrt", "device": "cuda:0"},
            "--device and --cuda-graphs apply to --target pytorch",
        ),
    ],
)
def test_settings_of_another_target_are_refused_before_any_write(
    checkpoint_dir: Path, tmp_path: Path, settings: dict[str, Any], message: str
) -> None:
    repository = tmp_path / "models"
    with pytest.raises(ExportError, match=message):
        export_repository(checkpoint_dir, repository, ExportSettings(**settings))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_pytorch_on_cuda_without_cuda_publishes_nothing(
    checkpoint_dir: Path, tmp_path: Path
) -> None:
    repository = tmp_path / "models"
    settings = ExportSettings(target="pytorch", device="cuda", max_candidates=MAX_CANDIDATES)
    with pytest.raises(ConfigError, match="device: 'cuda'"):
        export_repository(checkpoint_dir, repository, settings)
    assert not repository.exists() or list(repository.iterdir()) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_pytorch_for_a_gpu_host_exports_here_without_the_check(
    checkpoint_dir: Path, tmp_path: Path
) -> None:
    """A repository meant for a GPU host can be written on a CPU machine with --no-verify."""
    repository = tmp_path / "models"
    settings = ExportSettings(
        target="pytorch", device="cuda", verify=False, max_candidates=MAX_CANDIDATES
    )
    published = export_repository(checkpoint_dir, repository, settings)
    assert [m.runtime for m in published] == ["PyTorch bf16 on cuda"] * len(MODEL_NAMES)
    config = parse_pbtxt((repository / RANKER / "config.pbtxt").read_text())
    assert config.parameters["device"].string_value == "cuda"


class PerturbedRunner(TorchRunner):
    """The serving runner with its last output (continuous for the ranker) shifted by 0.5."""

    def __call__(self, feeds: Any) -> list[np.ndarray]:
        outputs = super().__call__(feeds)
        return [*outputs[:-1], outputs[-1] + 0.5]


def test_pytorch_parity_failure_publishes_nothing(
    checkpoint_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(build, "TorchRunner", PerturbedRunner)
    repository = tmp_path / "models"
    settings = ExportSettings(target="pytorch", precision="fp32", max_candidates=MAX_CANDIDATES)
    with pytest.raises(ExportError) as info:
        export_repository(checkpoint_dir, repository, settings)
    message = str(info.value)
    assert message.startswith(f"{RANKER}: PyTorch fp32 on cpu differs from PyTorch on continuous")
    assert "by 0.5" in message
    assert list(repository.iterdir()) == []
    assert leftovers(tmp_path) == []


class PerturbedCandidateTower(TorchRunner):
    """The serving runner, off by 0.5 for the candidate tower only (the last model exported)."""

    def __call__(self, feeds: Any) -> list[np.ndarray]:
        outputs = super().__call__(feeds)
        return [out + 0.5 for out in outputs] if self.kind == CANDIDATE_TOWER else outputs


def test_a_later_model_failing_its_check_publishes_none_of_them(
    checkpoint_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ranker and user tower pass, the candidate tower fails: no model gets a new version."""
    settings = ExportSettings(target="pytorch", precision="fp32", max_candidates=MAX_CANDIDATES)
    repository = tmp_path / "models"
    export_repository(checkpoint_dir, repository, settings)  # version 1 of each, all good
    monkeypatch.setattr(build, "TorchRunner", PerturbedCandidateTower)
    with pytest.raises(ExportError, match=f"^{CANDIDATE_TOWER}: "):
        export_repository(checkpoint_dir, repository, settings)
    for name in MODEL_NAMES:
        assert sorted(p.name for p in (repository / name).iterdir()) == ["1", "config.pbtxt"]


def test_pytorch_parity_is_skipped_with_no_verify(
    checkpoint_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(build, "TorchRunner", PerturbedRunner)
    settings = ExportSettings(target="pytorch", verify=False, max_candidates=MAX_CANDIDATES)
    published = export_repository(checkpoint_dir, tmp_path / "models", settings)
    assert [m.parity_max_abs_diff for m in published] == [None] * len(MODEL_NAMES)


# TensorRT: build, then check against PyTorch ----------------------------------------------------
class FakeEngines:
    """Stand-ins for `build_engine` and `EngineRunner`: the 'engine' is the PyTorch model plus
    `offset` on every output; it records what it was asked."""

    def __init__(self, checkpoint: Checkpoint, offset: float) -> None:
        self.checkpoint = checkpoint
        self.offset = offset
        self.builds: list[tuple[str, str]] = []
        self.kinds = {
            tuple(spec.name for spec in model_io(kind, checkpoint.config)[1]): kind
            for kind in MODEL_NAMES
        }

    def build_engine(
        self,
        onnx_path: Path,
        plan_path: Path,
        inputs: Sequence[Any],
        limits: Any,
        *,
        precision: str,
        timing_cache: Path | None = None,
    ) -> EngineMetadata:
        assert onnx_path.read_bytes() == b"ONNX"
        assert limits.max_candidates == MAX_CANDIDATES
        self.builds.append((plan_path.parent.name, precision))
        plan_path.write_bytes(b"PLAN")
        return EngineMetadata(
            tensorrt_version="10.99.0-fake",
            gpu="Fake GPU",
            compute_capability="9.0",
            cuda_version="12.8",
            precision=precision,
            profiles={},
            build_seconds=0.5,
            onnx_file=onnx_path.name,
            layers_kept_fp32=None,
            layers_total=1,
            plan_bytes=4,
            plan_sha256=hashlib.sha256(b"PLAN").hexdigest(),
        )

    def runner(self, plan_path: Path, output_names: Sequence[str]) -> Any:
        assert plan_path.read_bytes() == b"PLAN"
        kind = self.kinds[tuple(output_names)]
        model = wrap(kind, self.checkpoint).eval()
        inputs, _ = model_io(kind, self.checkpoint.config)
        offset = self.offset

        def run(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
            with torch.no_grad():
                out = model(*(torch.from_numpy(feeds[spec.name]) for spec in inputs))
            out = out if isinstance(out, tuple) else (out,)
            return [t.numpy() + offset for t in out]

        return run


def fake_engines(
    monkeypatch: pytest.MonkeyPatch, checkpoint_dir: Path, offset: float
) -> FakeEngines:
    engines = FakeEngines(load_checkpoint(checkpoint_dir), offset)

    def fake_onnx(name: str, checkpoint: Any, config: Any, path: Path, **kwargs: Any) -> Path:
        assert kwargs == {"max_candidates": MAX_CANDIDATES}
        path.write_bytes(b"ONNX")
        return path

    monkeypatch.setattr(build, "require_tensorrt", lambda: None)
    monkeypatch.setattr(build, "export_onnx", fake_onnx)
    monkeypatch.setattr(build, "verify_onnx", lambda *args, **kwargs: 0.0)
    monkeypatch.setattr(build, "build_engine", engines.build_engine)
    monkeypatch.setattr(build, "EngineRunner", engines.runner)
    return engines


@pytest.mark.parametrize(("precision", "bound"), [("fp32", "tf32"), ("bf16", "bf16")])
def test_tensorrt_parity_goes_into_engine_json(
    checkpoint_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    precision: str,
    bound: str,
) -> None:
    # 1e-3: beyond the fp32 bound (1e-4), inside the TF32 one that fp32 engines are held to.
    engines = fake_engines(monkeypatch, checkpoint_dir, offset=1e-3)
    repository = tmp_path / "models"
    settings = ExportSettings(target="tensorrt", precision=precision, max_candidates=64)
    published = export_repository(checkpoint_dir, repository, settings)
    assert [b[1] for b in engines.builds] == [precision] * len(MODEL_NAMES)
    for model in published:
        assert model.runtime == f"TensorRT {precision}"
        assert model.parity_max_abs_diff == pytest.approx(1e-3, rel=1e-2)
        version = repository / model.name / "1"
        assert sorted(p.name for p in version.iterdir()) == [
            "engine.json",
            "io.json",
            "model.plan",
            "provenance.json",
        ]
        assert (version / "model.plan").read_bytes() == b"PLAN"
        engine = json.loads((version / "engine.json").read_text())
        assert engine["parity"] == {
            "max_abs_diff": model.parity_max_abs_diff,
            "tolerance_per_unit": TOLERANCE_PER_UNIT[bound],
        }
        assert engine["precision"] == precision
        assert engine["plan_sha256"] == sha256(version / "model.plan")
        provenance = json.loads((version / "provenance.json").read_text())
        assert provenance["parity_max_abs_diff"] == model.parity_max_abs_diff
        config = parse_pbtxt((repository / model.name / "config.pbtxt").read_text())
        assert config.platform == "tensorrt_plan"


def test_tensorrt_parity_failure_publishes_nothing(
    checkpoint_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_engines(monkeypatch, checkpoint_dir, offset=0.2)  # beyond even the bf16 bound
    repository = tmp_path / "models"
    settings = ExportSettings(target="tensorrt", precision="fp16", max_candidates=64)
    with pytest.raises(ExportError, match=f"{RANKER}: TensorRT fp16 differs from PyTorch on"):
        export_repository(checkpoint_dir, repository, settings)
    assert list(repository.iterdir()) == []
    assert leftovers(tmp_path) == []


def test_tensorrt_no_verify_leaves_parity_empty(
    checkpoint_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_engines(monkeypatch, checkpoint_dir, offset=0.2)
    monkeypatch.setattr(build, "EngineRunner", None)  # never constructed
    repository = tmp_path / "models"
    settings = ExportSettings(target="tensorrt", max_candidates=64, verify=False)
    published = export_repository(checkpoint_dir, repository, settings)
    assert [m.parity_max_abs_diff for m in published] == [None] * len(MODEL_NAMES)
    engine = json.loads((repository / RANKER / "1" / "engine.json").read_text())
    assert engine["parity"] is None


# The command line -------------------------------------------------------------------------------
def test_export_help_mentions_the_pytorch_target(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["export", "--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "pytorch" in text
    assert "--device" in text
    assert "--cuda-graphs {auto,on,off}" in text


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--target", "pytorch", "--device", "cuda:x"], "--device: String should match pattern"),
        (["--target", "pytorch", "--device", "gpu"], "--device"),
        (["--cuda-graphs", "on"], "--device and --cuda-graphs apply to --target pytorch only"),
        (["--device", "cpu"], "--device and --cuda-graphs apply to --target pytorch only"),
    ],
)
def test_cli_refuses_bad_device_options(
    checkpoint_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    repository = tmp_path / "models"
    args = ["export", "--checkpoint", str(checkpoint_dir), "--out", str(repository), *extra]
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not repository.exists()


def test_cli_exports_the_pytorch_target(
    checkpoint_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repository = tmp_path / "models"
    args = ["export", "--checkpoint", str(checkpoint_dir), "--out", str(repository)]
    options = ["--target", "pytorch", "--precision", "fp32", "--device", "cpu"]
    assert main([*args, *options, "--cuda-graphs", "on", "--max-candidates", "64"]) == 0
    printed = capsys.readouterr().out
    for name in MODEL_NAMES:
        assert f"{repository / name / '1'}  (PyTorch fp32 on cpu vs PyTorch max |diff|" in printed
        assert parameters(repository, name) == {
            "precision": "fp32",
            "device": "cpu",
            "cuda_graphs": "true",
            MAX_CANDIDATES_PARAMETER: "64",
            CANDIDATE_BUCKETS_PARAMETER: "16,64",
            MODEL_CONFIG_PARAMETER: _served_config(name).model_dump_json(),
        }


def _served_config(name: str) -> ModelConfig:
    """The ranker serves its own config; the towers theirs (X's two-tower choices)."""
    return CONFIG if name == RANKER else CONFIG.retrieval_config()
