"""`loadtest.triton_bench` and `phoenix bench triton`: the statistics on known values, the case
runner on a fake client, the staged repository (cpu and pytorch targets), the in-process runtime
and the agreement check, bad options, and tiny runs on a real server (cpu through the command,
pytorch in fp32 on the CPU through `bench_triton`)."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from export.checkpoint import Checkpoint, save_checkpoint
from export.onnx.wrappers import RANKER, model_io, wrap
from export.parity import TOLERANCE_PER_UNIT
from export.repository.model_config import Target, build_model_config, parse_pbtxt, to_pbtxt
from export.torch_serving.runner import TorchRunner, TorchServingOptions
from loadtest.triton_bench import (
    BATCHED,
    GRPC,
    HTTP,
    IN_PROCESS,
    UNBATCHED,
    BenchSettings,
    CaseResult,
    agreement_tolerance,
    average_batch,
    bench_triton,
    format_report,
    format_table,
    percentile_ms,
    plan_cases,
    run_case,
    stage_repository,
    to_json,
    with_ratios,
)
from loadtest.triton_bench import clients as clients_module
from loadtest.triton_bench import runner as runner_module
from loadtest.triton_bench.clients import (
    InProcess,
    InProcessClient,
    make_request_pool,
    open_in_process,
)
from loadtest.triton_bench.results import TritonBenchReport
from phoenix.cli import main
from phoenix.config import get_config
from phoenix.errors import ConfigError, ServingError

SMALL = get_config("tiny").with_overrides(history_len=16)
ROW_CELLS = 11  # columns of the table


def _row(path: str, concurrency: int, batching: bool | None, req_per_s: float) -> CaseResult:
    """A case whose req/s is exactly `req_per_s` (that many requests in one second)."""
    return CaseResult(
        path=path,
        concurrency=concurrency,
        batching=batching,
        candidates=10,
        requests=int(req_per_s),
        wall_s=1.0,
        p50_ms=1.0,
        p99_ms=2.0,
        avg_batch=None if batching is None else 1.0,
    )


# Statistics -----------------------------------------------------------------------------------


def test_percentiles_interpolate_linearly_in_milliseconds() -> None:
    seconds = [i / 1000 for i in range(1, 101)]  # 1 ms ... 100 ms
    assert percentile_ms(seconds, 50) == pytest.approx(50.5)
    assert percentile_ms(seconds, 99) == pytest.approx(99.01)
    assert percentile_ms([0.004], 99) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="no samples"):
        percentile_ms([], 50)


def test_average_batch_is_inferences_per_execution_between_snapshots() -> None:
    assert average_batch((10, 5), (42, 13)) == pytest.approx(4.0)
    assert average_batch((7, 7), (17, 17)) == pytest.approx(1.0)
    assert average_batch((3, 3), (3, 3)) is None  # nothing ran


def test_ratios_against_in_process_and_batching_off() -> None:
    rows = with_ratios(
        [
            _row(IN_PROCESS, 1, None, 100),
            _row(HTTP, 1, True, 50),
            _row(HTTP, 1, False, 25),
            _row(IN_PROCESS, 4, None, 200),
            _row(GRPC, 4, True, 300),
            _row(GRPC, 4, False, 100),
        ]
    )
    assert [r.vs_in_process for r in rows] == pytest.approx([1.0, 0.5, 0.25, 1.0, 1.5, 0.5])
    assert [r.batching_gain for r in rows] == [None, pytest.approx(2.0), None, None, 3.0, None]
    assert rows[4].cand_per_s == pytest.approx(3000)


def test_cases_per_concurrency_in_table_order() -> None:
    assert plan_cases([1, 4]) == [
        (IN_PROCESS, 1, None),
        (HTTP, 1, True),
        (HTTP, 1, False),
        (GRPC, 1, True),
        (GRPC, 1, False),
        (IN_PROCESS, 4, None),
        (HTTP, 4, True),
        (HTTP, 4, False),
        (GRPC, 4, True),
        (GRPC, 4, False),
    ]


def test_table_has_one_line_per_row_and_dashes_for_missing_values() -> None:
    rows = with_ratios([_row(IN_PROCESS, 1, None, 100), _row(HTTP, 1, False, 50)])
    lines = format_table(rows).splitlines()
    assert len(lines) == 4
    assert all(line.count(" | ") == ROW_CELLS - 1 for line in lines)
    assert _cells(lines[2])[:3] == ["in-process", "1", "n/a"]
    assert _cells(lines[2])[8] == "—" and _cells(lines[3])[8] == "1.00"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"candidates": 0}, "candidates"),
        ({"concurrency": ()}, "concurrency"),
        ({"concurrency": (1, 0)}, "concurrency"),
        ({"concurrency": (2, 2)}, "concurrency"),
        ({"requests": 0}, "requests"),
        ({"requests": None, "min_time_s": 0.0}, "min_time_s"),
        ({"warmup": -1}, "warmup"),
        ({"ort_threads": 0}, "ort_threads"),
        ({"max_queue_delay_us": -1}, "max_queue_delay_us"),
        ({"pool_size": 0}, "pool_size"),
        ({"target": "tensorrt"}, "target"),
        ({"target": "pytorch", "precision": "int8"}, "precision"),
        ({"precision": "bf16"}, "precision"),  # the cpu target serves the fp32 graph only
        ({"target": "cpu", "precision": "fp16"}, "precision"),
    ],
)
def test_settings_refuse_bad_values_by_name(kwargs: dict, field: str) -> None:
    with pytest.raises(ValidationError) as exc:
        BenchSettings(**kwargs)
    assert [e["loc"] for e in exc.value.errors()] == [(field,)]


@pytest.mark.parametrize(
    ("kwargs", "precision"),
    [
        ({}, "fp32"),
        ({"precision": "fp32"}, "fp32"),
        ({"target": "pytorch"}, "bf16"),  # the pytorch export's default
        ({"target": "pytorch", "precision": "fp16"}, "fp16"),
        ({"target": "pytorch", "precision": "fp32"}, "fp32"),
    ],
)
def test_settings_resolve_the_precision_of_each_target(kwargs: dict, precision: str) -> None:
    settings = BenchSettings(**kwargs)
    assert settings.target == kwargs.get("target", "cpu")
    assert settings.resolved_precision == precision


def test_agreement_tolerance_is_1e_4_in_fp32_and_the_parity_bound_in_reduced_precision() -> None:
    assert agreement_tolerance("fp32") == 1e-4
    assert agreement_tolerance("bf16") == TOLERANCE_PER_UNIT["bf16"]
    assert agreement_tolerance("fp16") == TOLERANCE_PER_UNIT["fp16"]
    with pytest.raises(ValueError, match="int8"):
        agreement_tolerance("int8")


@pytest.mark.parametrize("kwargs", [{"requests": None}, {"requests": 5, "min_time_s": 1.0}])
def test_settings_need_exactly_one_budget(kwargs: dict) -> None:
    with pytest.raises(ValidationError, match="set exactly one of requests and min_time_s"):
        BenchSettings(**kwargs)


# The case runner, on a fake client ------------------------------------------------------------


class FakeClient:
    """Sleeps `delay_s` per request; counts what it was sent; fails on request number `fail_at`."""

    opened: list[FakeClient]

    def __init__(self, delay_s: float = 0.001, fail_at: int | None = None) -> None:
        self.delay_s, self.fail_at = delay_s, fail_at
        self.calls = 0
        self.closed = False
        self.thread = threading.get_ident()

    def infer(self, request: dict[str, np.ndarray]) -> np.ndarray:
        self.calls += 1
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise RuntimeError("fake failure")
        time.sleep(self.delay_s)
        return request["x"]

    def close(self) -> None:
        self.closed = True


def _opener(**kwargs: float | int | None) -> tuple[list[FakeClient], object]:
    opened: list[FakeClient] = []

    def open_client() -> FakeClient:
        client = FakeClient(**kwargs)  # type: ignore[arg-type]
        opened.append(client)
        return client

    return opened, open_client


POOL = [{"x": np.full((1, 2), i, dtype=np.float32)} for i in range(5)]


def test_run_case_sends_exactly_the_requests_asked_for_from_one_client_per_thread() -> None:
    opened, open_client = _opener()
    settings = BenchSettings(requests=30, warmup=2, concurrency=(3,), ort_threads=1)
    calls_when_ready: list[int] = []
    timing = run_case(
        open_client,  # type: ignore[arg-type]
        POOL,
        3,
        settings,
        on_ready=lambda: calls_when_ready.append(sum(c.calls for c in opened)),
    )
    assert len(timing.latencies_s) == 30
    assert all(s >= 0.001 for s in timing.latencies_s)
    assert timing.wall_s >= 30 * 0.001 / 3
    assert len(opened) == 3 and len({c.thread for c in opened}) == 3
    assert calls_when_ready == [3 * 2]  # after every warm-up, before any timed request
    assert sum(c.calls for c in opened) == 3 * 2 + 30
    assert all(c.closed for c in opened)


def test_run_case_with_min_time_runs_at_least_that_long() -> None:
    _, open_client = _opener()
    settings = BenchSettings(requests=None, min_time_s=0.05, warmup=0, ort_threads=1)
    timing = run_case(open_client, POOL, 2, settings)  # type: ignore[arg-type]
    assert timing.wall_s >= 0.05
    assert len(timing.latencies_s) >= 2


@pytest.mark.parametrize("fail_at", [1, 4])  # while warming up, while timed
def test_run_case_raises_the_first_client_error_and_stops_every_thread(fail_at: int) -> None:
    opened, open_client = _opener(fail_at=fail_at)
    settings = BenchSettings(requests=1000, warmup=2, ort_threads=1)
    threads_before = threading.active_count()
    with pytest.raises(RuntimeError, match="fake failure"):
        run_case(open_client, POOL, 4, settings)  # type: ignore[arg-type]
    assert threading.active_count() == threads_before  # every worker joined
    assert len(opened) == 4 and sum(c.calls for c in opened) < 1000
    assert all(c.closed for c in opened)


def test_run_case_stops_every_thread_when_on_ready_fails() -> None:
    opened, open_client = _opener()
    settings = BenchSettings(requests=1000, warmup=1, ort_threads=1)
    threads_before = threading.active_count()

    def on_ready() -> None:
        raise KeyError("statistics unavailable")

    with pytest.raises(KeyError, match="statistics unavailable"):
        run_case(open_client, POOL, 3, settings, on_ready)  # type: ignore[arg-type]
    assert threading.active_count() == threads_before
    assert sum(c.calls for c in opened) == 3  # the warm-up only


# The staged repository ------------------------------------------------------------------------


def _fake_export(
    root: Path,
    *,
    delay_us: int = 2000,
    max_candidates: int = 64,
    target: str = "cpu",
    parameters: dict[str, str] | None = None,
    provenance_target: str | None = "same",
) -> Path:
    """A repository laid out like `phoenix export --target cpu|pytorch` writes it (the files'
    contents do not matter for staging) at version 2. `provenance_target`: "same" records
    `target` in provenance.json, None leaves the key out (as older exports did)."""
    inputs, outputs = model_io(RANKER, SMALL)
    config = build_model_config(
        RANKER,
        Target(target),
        inputs,
        outputs,
        max_batch_size=8,
        max_queue_delay_us=delay_us,
        parameters=parameters,
    )
    version = root / RANKER / "2"
    version.mkdir(parents=True)
    (root / RANKER / "config.pbtxt").write_text(to_pbtxt(config))
    if target == "cpu":
        (version / "model.onnx").write_bytes(b"graph")
    else:
        (version / "config.json").write_text("{}")
        (version / "model.safetensors").write_bytes(b"weights")
    (version / "model.py").write_text("# model\n")
    io: dict = {"max_candidates": max_candidates}
    if target == "pytorch":
        io["model"] = RANKER  # the network, whatever name it is served under
    (version / "io.json").write_text(json.dumps(io))
    provenance: dict = {"model_config": SMALL.model_dump()}
    if provenance_target is not None:
        provenance["target"] = target if provenance_target == "same" else provenance_target
    (version / "provenance.json").write_text(json.dumps(provenance))
    return root


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_stage_repository_serves_the_ranker_with_and_without_batching(tmp_path: Path) -> None:
    source = _fake_export(tmp_path / "source")
    before = _tree(source)
    served = stage_repository(source, tmp_path / "bench")
    assert _tree(source) == before  # the source is never modified
    assert sorted(p.name for p in served.repository.iterdir()) == [BATCHED, UNBATCHED]
    batched = parse_pbtxt((served.repository / BATCHED / "config.pbtxt").read_text())
    unbatched = parse_pbtxt((served.repository / UNBATCHED / "config.pbtxt").read_text())
    assert batched.name == BATCHED and batched.HasField("dynamic_batching")
    assert unbatched.name == UNBATCHED and not unbatched.HasField("dynamic_batching")
    assert unbatched.max_batch_size == batched.max_batch_size == 8
    for name in (BATCHED, UNBATCHED):
        assert (served.repository / name / "1" / "model.onnx").read_bytes() == b"graph"
    assert served.onnx_path == served.repository / BATCHED / "1" / "model.onnx"
    assert served.version_dir == served.repository / BATCHED / "1"
    assert (served.target, served.precision) == ("cpu", "fp32")
    assert served.config == SMALL
    assert (served.max_candidates, served.max_batch_size, served.max_queue_delay_us) == (
        64,
        8,
        2000,
    )


def test_stage_repository_can_override_the_batcher_delay(tmp_path: Path) -> None:
    served = stage_repository(_fake_export(tmp_path / "source"), tmp_path / "bench", 500)
    config = parse_pbtxt((served.repository / BATCHED / "config.pbtxt").read_text())
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert served.max_queue_delay_us == 500
    source = parse_pbtxt((tmp_path / "source" / RANKER / "config.pbtxt").read_text())
    assert source.dynamic_batching.max_queue_delay_microseconds == 2000


def test_stage_repository_refuses_a_repository_without_a_cpu_ranker(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=f"^--repository: no {BATCHED}"):
        stage_repository(tmp_path / "empty", tmp_path / "bench")
    source = _fake_export(tmp_path / "source")
    (source / RANKER / "2" / "model.py").unlink()
    with pytest.raises(ConfigError, match=r"^--repository: .* has no model\.py"):
        stage_repository(source, tmp_path / "bench2")


TORCH_PARAMETERS = TorchServingOptions(precision="fp16", cuda_graphs=True).to_parameters()


@pytest.mark.parametrize("provenance_target", ["same", None])  # from provenance, from the files
def test_stage_repository_serves_a_pytorch_export(
    tmp_path: Path, provenance_target: str | None
) -> None:
    source = _fake_export(
        tmp_path / "source",
        target="pytorch",
        parameters=TORCH_PARAMETERS,
        provenance_target=provenance_target,
    )
    before = _tree(source)
    served = stage_repository(source, tmp_path / "bench", 700)
    assert _tree(source) == before
    version = source / RANKER / "2"
    for name in (BATCHED, UNBATCHED):
        staged = served.repository / name / "1"
        assert sorted(p.name for p in staged.iterdir()) == sorted(p.name for p in version.iterdir())
        assert (staged / "model.safetensors").read_bytes() == b"weights"
        assert (staged / "config.json").read_text() == "{}"
        config = parse_pbtxt((served.repository / name / "config.pbtxt").read_text())
        assert config.backend == "python" and config.name == name
        assert config.HasField("dynamic_batching") == (name == BATCHED)
        assert config.parameters["precision"].string_value == "fp16"
        assert (staged / "model.py").read_text() == "# model\n"  # both run the exported one
    assert (served.target, served.precision) == ("pytorch", "fp16")
    assert served.version_dir == served.repository / BATCHED / "1"
    assert served.onnx_path is None
    assert served.parameters["precision"] == "fp16"
    assert served.parameters["cuda_graphs"] == "true"
    assert TorchServingOptions.from_parameters(served.parameters).cuda_graphs is True
    assert (served.max_candidates, served.max_batch_size, served.max_queue_delay_us) == (
        64,
        8,
        700,
    )


def test_stage_repository_refuses_other_targets_and_incomplete_pytorch_exports(
    tmp_path: Path,
) -> None:
    source = _fake_export(tmp_path / "trt", provenance_target="tensorrt")
    with pytest.raises(ConfigError, match=r"^--repository: .* holds the tensorrt target; .*cpu"):
        stage_repository(source, tmp_path / "bench")
    source = _fake_export(tmp_path / "torch", target="pytorch", parameters=TORCH_PARAMETERS)
    (source / RANKER / "2" / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match=r"^--repository: .* has no model\.safetensors"):
        stage_repository(source, tmp_path / "bench2")
    source = _fake_export(tmp_path / "bare", provenance_target=None)
    (source / RANKER / "2" / "model.onnx").unlink()
    with pytest.raises(ConfigError, match=r"^--repository: .* holds no model file"):
        stage_repository(source, tmp_path / "bench3")
    # Exported before io.json named the network: its model.py cannot serve the unbatched twin.
    source = _fake_export(tmp_path / "old", target="pytorch", parameters=TORCH_PARAMETERS)
    (source / RANKER / "2" / "io.json").write_text(json.dumps({"max_candidates": 64}))
    with pytest.raises(ConfigError, match=r"^--repository: .*io\.json does not name the network"):
        stage_repository(source, tmp_path / "bench4")
    assert not (tmp_path / "bench4").exists()  # refused before staging anything


# The in-process runtime and the agreement check -----------------------------------------------


class ConcurrencyProbe:
    """A runtime that records how many calls were inside `run` at once."""

    def __init__(self, delay_s: float = 0.005) -> None:
        self.delay_s = delay_s
        self.inside = 0
        self.most = 0
        self.calls = 0
        self._count = threading.Lock()

    def run(self, output_names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with self._count:
            self.inside += 1
            self.calls += 1
            self.most = max(self.most, self.inside)
        time.sleep(self.delay_s)
        with self._count:
            self.inside -= 1
        assert output_names[0] == "action_log_probs"
        return [feeds["x"], feeds["x"]]


@pytest.mark.parametrize("locked", [True, False])
def test_in_process_clients_share_the_runtime_taking_its_lock_if_it_has_one(locked: bool) -> None:
    probe = ConcurrencyProbe()
    in_process = InProcess(probe, "probe", "cpu", threading.Lock() if locked else None)
    settings = BenchSettings(requests=24, warmup=1, ort_threads=1)
    timing = run_case(lambda: InProcessClient(in_process), POOL, 4, settings)
    assert len(timing.latencies_s) == 24 and probe.calls == 24 + 4
    if locked:
        assert probe.most == 1
    else:
        assert probe.most > 1  # ONNX Runtime's run is thread safe: no lock around it
    # The runtime answers log probabilities; the client hands back probabilities.
    np.testing.assert_allclose(InProcessClient(in_process).infer(POOL[3]), np.exp(POOL[3]["x"]))


def _pytorch_version(tmp_path: Path, parameters: dict[str, str]) -> tuple[Checkpoint, Path]:
    """A staged pytorch export of a real (random) SMALL checkpoint."""
    checkpoint = Checkpoint.initialise(SMALL, seed=3)
    saved = save_checkpoint(checkpoint, tmp_path / "checkpoint")
    source = _fake_export(tmp_path / "source", target="pytorch", parameters=parameters)
    for name in ("config.json", "model.safetensors"):
        (source / RANKER / "2" / name).write_bytes((saved / name).read_bytes())
    return checkpoint, source


def test_in_process_pytorch_runs_a_locked_torch_runner_with_the_served_options(
    tmp_path: Path,
) -> None:
    import torch

    parameters = TorchServingOptions(precision="fp32", device="cpu", cuda_graphs=True)
    checkpoint, source = _pytorch_version(tmp_path, parameters.to_parameters())
    served = stage_repository(source, tmp_path / "bench")
    threads = torch.get_num_threads()  # what the runner sets: leave this process as it was
    in_process = open_in_process(served, threads)
    runner = in_process.runtime
    assert isinstance(runner, TorchRunner) and runner.kind == RANKER
    assert in_process.lock is not None and in_process.device == "cpu"
    assert runner.options == TorchServingOptions.from_parameters(served.parameters, threads=threads)
    assert runner.static_shapes and not runner.captures  # cuda_graphs on a CPU: padded buckets
    assert len(runner._slots) == len(runner.buckets.shapes())  # warmed up before timing
    assert in_process.description == f"PyTorch {torch.__version__} fp32 on cpu, padded to buckets"

    request = make_request_pool(SMALL, 16, 1, seed=0)[0]
    got = InProcessClient(in_process).infer(request)
    inputs, _ = model_io(RANKER, SMALL)
    with torch.no_grad():
        want = wrap(RANKER, checkpoint).eval()(*(torch.from_numpy(request[s.name]) for s in inputs))
    assert got.shape == (1, 16, SMALL.num_action_columns)
    np.testing.assert_allclose(got, np.exp(want[0].numpy()), atol=1e-5)  # probabilities


def test_in_process_cpu_is_an_ort_session_without_a_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnxruntime as ort

    opened: list[tuple[Path, int]] = []
    monkeypatch.setattr(
        clients_module, "ort_session", lambda path, threads: opened.append((path, threads))
    )
    served = stage_repository(_fake_export(tmp_path / "source"), tmp_path / "bench")
    in_process = open_in_process(served, 3)
    assert opened == [(served.onnx_path, 3)]
    assert in_process.lock is None and in_process.device == "cpu"
    assert in_process.description == f"ONNX Runtime {ort.__version__}"


class FixedClient:
    """Stands in for HttpClient and GrpcClient: answers every request with `answer`."""

    answer = np.full((1, 4, 2), 0.5, dtype=np.float32)  # probabilities, as the clients answer

    def __init__(self, url: str, model: str) -> None:
        pass

    def infer(self, request: dict[str, np.ndarray]) -> np.ndarray:
        return self.answer

    def close(self) -> None:
        pass


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_agreement_check_refuses_differences_over_the_precisions_tolerance(
    monkeypatch: pytest.MonkeyPatch, precision: str
) -> None:
    monkeypatch.setattr(runner_module, "HttpClient", FixedClient)
    monkeypatch.setattr(runner_module, "GrpcClient", FixedClient)
    want = FixedClient.answer + 0.01  # within bf16's bound, far over fp32's
    # The in-process runtime answers log-probabilities (as the served model does); its client
    # turns them into probabilities before they are compared.
    log_want = np.log(want)
    in_process = InProcess(ConcurrencyProbe(0.0), "the probe", "cpu")
    check = runner_module.check_agreement
    tolerance = agreement_tolerance(precision)
    if precision == "fp32":
        refused = r"in-process the probe: max \|Δp\| = 0\.01 > 0\.0001"
        with pytest.raises(ServingError, match=refused):
            check(in_process, "http", "grpc", {"x": log_want}, tolerance)
    else:
        got = check(in_process, "http", "grpc", {"x": log_want}, tolerance)
        assert got == pytest.approx(0.01, rel=1e-4)
    nan = np.full_like(want, np.nan)
    with pytest.raises(ServingError, match="nan"):
        check(in_process, "http", "grpc", {"x": nan}, tolerance)


# The report -----------------------------------------------------------------------------------


def _report(**kwargs: object) -> TritonBenchReport:
    values: dict = {
        "config_name": "tiny",
        "history_len": 16,
        "settings": BenchSettings(ort_threads=1),
        "max_batch_size": 8,
        "max_queue_delay_us": 2000,
        "triton_version": "2.59.0",
        "target": "cpu",
        "precision": "fp32",
        "runtime": "ONNX Runtime 1.32.0",
        "device": "cpu",
        "agreement_max_abs_diff": 3e-7,
        "agreement_tolerance": 1e-4,
        "rows": with_ratios([_row(IN_PROCESS, 1, None, 100), _row(HTTP, 1, True, 50)]),
    }
    return TritonBenchReport(**{**values, **kwargs})


def test_report_header_names_the_runtime_and_its_threads_on_a_cpu() -> None:
    text = format_report(_report())
    assert (
        "Triton 2.59.0 (Python backend, cpu target), runtime ONNX Runtime 1.32.0, 1 intra-op "
        "thread in the served model and in-process alike\n"
    ) in text
    assert "max |Δp| 3.0e-07 (tolerance 0.0001, fp32)" in text
    assert "share one onnxruntime.InferenceSession" in text
    data = json.loads(to_json(_report()))["report"]
    assert (data["target"], data["precision"], data["runtime"]) == (
        "cpu",
        "fp32",
        "ONNX Runtime 1.32.0",
    )
    assert "onnxruntime_version" not in data


def test_report_header_of_the_pytorch_target_on_a_gpu() -> None:
    runtime = "PyTorch 2.13.0 bf16 on cuda, CUDA graphs"
    report = _report(
        settings=BenchSettings(ort_threads=16, target="pytorch", precision="bf16"),
        target="pytorch",
        precision="bf16",
        runtime=runtime,
        device="cuda",
        agreement_max_abs_diff=0.004,
        agreement_tolerance=TOLERANCE_PER_UNIT["bf16"],
    )
    text = format_report(report)
    assert (
        f"Triton 2.59.0 (Python backend, pytorch target), runtime {runtime} in the served "
        "model and in-process alike\n"
    ) in text
    assert "intra-op" not in text  # CPU threads do not apply on the GPU
    assert "max |Δp| 4.0e-03 (tolerance 0.08, bf16)" in text
    assert "share one TorchRunner, one call at a time" in text
    data = json.loads(to_json(report))["report"]
    assert data["settings"]["target"] == "pytorch" and data["device"] == "cuda"
    assert data["agreement_tolerance"] == TOLERANCE_PER_UNIT["bf16"]


# The command ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "option"),
    [
        (["--candidates", "0"], "--candidates"),
        (["--candidates", "5000"], "--candidates"),  # tiny's max_candidates is 2800
        (["--concurrency", "1", "0"], "--concurrency"),
        (["--concurrency", "2", "2"], "--concurrency"),
        (["--requests", "0"], "--requests"),
        (["--min-time", "0"], "--min-time"),
        (["--warmup", "-1"], "--warmup"),
        (["--ort-threads", "0"], "--ort-threads"),
        (["--max-queue-delay-us", "-5"], "--max-queue-delay-us"),
        (["--config", "no-such-preset"], "--config"),
        (["--checkpoint", "/no/such/checkpoint"], "--checkpoint"),
        (["--repository", "/no/such/repository"], "--repository"),
        (["--precision", "bf16"], "--precision"),  # the cpu target is fp32 only
        (["--target", "cpu", "--precision", "fp16"], "--precision"),
    ],
)
def test_bad_options_exit_2_naming_the_option(
    extra: list[str], option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "triton", "--no-progress", *extra]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"phoenix bench: error: {option}:")
    assert captured.out == ""


@pytest.mark.parametrize(
    "extra",
    [
        ["--requests", "5", "--min-time", "1"],
        ["--config", "tiny", "--repository", "."],
    ],
)
def test_exclusive_options_are_refused_by_the_parser(
    extra: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bench", "triton", *extra])
    assert exc.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize(("target", "precision"), [("tensorrt", None), (None, "int8")])
def test_unknown_targets_and_precisions_are_refused_by_the_parser(
    target: str | None, precision: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = ["--target", target] if target else ["--target", "pytorch", "--precision", precision]
    with pytest.raises(SystemExit) as exc:
        main(["bench", "triton", *extra])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--precision", "fp32"], "--precision: applies when the benchmark exports"),
        (["--target", "pytorch"], "--target: .* holds a cpu export, not pytorch"),
    ],
)
def test_a_repository_is_served_as_exported(
    tmp_path: Path, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _fake_export(tmp_path / "source")
    assert main(["bench", "triton", "--no-progress", "--repository", str(source), *extra]) == 2
    captured = capsys.readouterr()
    assert re.match(f"phoenix bench: error: {message}", captured.err)
    assert captured.out == ""


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


@pytest.mark.triton
def test_tiny_run_prints_every_case_and_plausible_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_path = tmp_path / "small.json"
    config_path.write_text(SMALL.to_json())
    json_path = tmp_path / "out" / "bench.json"
    args = ["bench", "triton", "--config", str(config_path), "--candidates", "16"]
    args += ["--concurrency", "1", "4", "--requests", "12", "--warmup", "1", "--ort-threads", "1"]
    assert main([*args, "--no-progress", "--json", str(json_path)]) == 0
    out = capsys.readouterr().out

    assert out.startswith("machine: ")
    assert "16 candidates" in out and "1 intra-op thread " in out
    table = [line for line in out.splitlines() if line.startswith("| ")]
    header, rows = _cells(table[0]), [_cells(line) for line in table[2:]]
    assert header[:3] == ["path", "concurrency", "dynamic batching"] and len(header) == ROW_CELLS
    expected = [
        (p, str(c), "n/a" if b is None else "on" if b else "off") for p, c, b in plan_cases([1, 4])
    ]
    assert [tuple(r[:3]) for r in rows] == expected

    assert "(Python backend, cpu target), runtime ONNX Runtime " in out
    report = json.loads(json_path.read_text())["report"]
    assert report["history_len"] == 16 and report["agreement_max_abs_diff"] <= 1e-4
    assert (report["target"], report["precision"], report["device"]) == ("cpu", "fp32", "cpu")
    assert report["runtime"].startswith("ONNX Runtime ")
    for row in report["rows"]:
        assert row["requests"] == 12
        assert row["req_per_s"] > 0 and row["cand_per_s"] == pytest.approx(16 * row["req_per_s"])
        assert 0 < row["p50_ms"] <= row["p99_ms"]
        assert row["vs_in_process"] > 0
        if row["batching"] is None:
            assert row["avg_batch"] is None
        elif row["batching"]:
            assert row["avg_batch"] >= 1 and row["batching_gain"] > 0
        else:
            assert row["avg_batch"] == 1 and row["batching_gain"] is None


@pytest.mark.triton
def test_tiny_pytorch_run_in_fp32_on_the_cpu(tmp_path: Path) -> None:
    """The pytorch target end to end: exported, served twice (the unbatched twin too, whose
    model.py builds the network io.json names), run in-process by a TorchRunner, every case
    timed."""
    settings = BenchSettings(
        target="pytorch",
        precision="fp32",
        candidates=16,
        concurrency=(1,),
        requests=6,
        warmup=1,
        ort_threads=1,
        pool_size=4,
    )
    report = bench_triton(settings, config=SMALL, progress=False)

    assert (report.target, report.precision, report.device) == ("pytorch", "fp32", "cpu")
    assert report.runtime.startswith("PyTorch ") and " fp32 on cpu, eager" in report.runtime
    assert report.settings.target == "pytorch" and report.settings.precision == "fp32"
    assert report.agreement_tolerance == 1e-4
    assert 0 <= report.agreement_max_abs_diff <= 1e-4
    assert [(r.path, r.concurrency, r.batching) for r in report.rows] == plan_cases([1])
    for row in report.rows:
        assert row.requests == 6 and row.req_per_s > 0
        assert 0 < row.p50_ms <= row.p99_ms
        if row.batching is not None:
            assert row.avg_batch == 1  # one client thread: nothing to batch together
