"""`loadtest.triton_bench` and `phoenix bench triton`: the statistics on known values, the case
runner on a fake client, the staged repository, bad options, and one tiny run on a real server."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from export.onnx.wrappers import RANKER, model_io
from export.repository.model_config import Target, build_model_config, parse_pbtxt, to_pbtxt
from loadtest.triton_bench import (
    BATCHED,
    GRPC,
    HTTP,
    IN_PROCESS,
    UNBATCHED,
    BenchSettings,
    CaseResult,
    average_batch,
    format_table,
    percentile_ms,
    plan_cases,
    run_case,
    stage_repository,
    with_ratios,
)
from phoenix.cli import main
from phoenix.config import get_config
from phoenix.errors import ConfigError

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
    assert _cells(lines[2])[:3] == ["in-process ORT", "1", "n/a"]
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
    ],
)
def test_settings_refuse_bad_values_by_name(kwargs: dict, field: str) -> None:
    with pytest.raises(ValidationError) as exc:
        BenchSettings(**kwargs)
    assert [e["loc"] for e in exc.value.errors()] == [(field,)]


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


def _fake_export(root: Path, *, delay_us: int = 2000, max_candidates: int = 64) -> Path:
    """A repository laid out like `phoenix export --target cpu` writes it (the files' contents
    do not matter for staging) at version 2."""
    inputs, outputs = model_io(RANKER, SMALL)
    config = build_model_config(
        RANKER, Target.CPU, inputs, outputs, max_batch_size=8, max_queue_delay_us=delay_us
    )
    version = root / RANKER / "2"
    version.mkdir(parents=True)
    (root / RANKER / "config.pbtxt").write_text(to_pbtxt(config))
    (version / "model.onnx").write_bytes(b"graph")
    (version / "model.py").write_text("# model\n")
    (version / "io.json").write_text(json.dumps({"max_candidates": max_candidates}))
    (version / "provenance.json").write_text(json.dumps({"model_config": SMALL.model_dump()}))
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

    report = json.loads(json_path.read_text())["report"]
    assert report["history_len"] == 16 and report["agreement_max_abs_diff"] <= 1e-4
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
