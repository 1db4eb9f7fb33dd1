"""`bench_ranker` and `phoenix bench ranker`: shapes of the results, never speeds."""

from __future__ import annotations

import json
import math

import pytest
import torch

from export.benchmarks.ranker import (
    FormTiming,
    RankerBenchRow,
    bench_ranker,
    format_table,
    to_json,
)
from phoenix.cli import main
from phoenix.config import get_config
from phoenix.errors import ConfigError

#: A tiny config with a short history: each case takes milliseconds.
SMALL = get_config("tiny").with_overrides(history_len=16)
FAST = {"warmup": 1, "min_time_s": 0.0, "repeats": 3, "progress": False}
TABLE_HEADER = "| config | candidates | history | one-pass ms (median / p90) |"


@pytest.fixture(scope="module")
def rows() -> list[RankerBenchRow]:
    return bench_ranker([SMALL], [4, 16], **FAST)


def test_one_row_per_case_with_a_full_history(rows: list[RankerBenchRow]) -> None:
    assert [(r.config, r.candidates, r.history_len) for r in rows] == [
        ("tiny", 4, 16),
        ("tiny", 16, 16),
    ]
    assert all(r.device == "cpu" and r.dtype == "float32" for r in rows)


def test_timings_are_positive_and_complete(rows: list[RankerBenchRow]) -> None:
    for row in rows:
        for form in (row.one_pass, row.reference):
            assert form.samples >= 3
            assert 0 < form.median_ms <= form.p90_ms
        assert row.one_pass_cand_per_s > 0 and row.reference_cand_per_s > 0


def test_speedup_is_the_ratio_of_throughputs(rows: list[RankerBenchRow]) -> None:
    for row in rows:
        expected = row.one_pass_cand_per_s / row.reference_cand_per_s
        assert math.isclose(row.speedup, expected, rel_tol=1e-12)
        assert math.isclose(row.speedup, row.reference.median_ms / row.one_pass.median_ms)


def test_both_forms_agree(rows: list[RankerBenchRow]) -> None:
    assert all(0 <= r.max_abs_diff < 1e-4 for r in rows)


def test_table_and_json(rows: list[RankerBenchRow]) -> None:
    lines = format_table(rows).splitlines()
    assert lines[0].startswith(TABLE_HEADER)
    assert len(lines) == 2 + len(rows)
    assert all(line.count(" | ") == lines[0].count(" | ") for line in lines)
    data = json.loads(to_json(rows, {"cpu": "test"}))
    assert data["machine"] == {"cpu": "test"}
    assert data["rows"][1]["candidates"] == 16
    assert data["rows"][1]["speedup"] == rows[1].speedup
    assert data["rows"][1]["one_pass"]["samples"] == rows[1].one_pass.samples


def test_form_timing_from_seconds() -> None:
    timing = FormTiming.from_seconds([0.001, 0.002, 0.003, 0.004, 0.010])
    assert timing.median_ms == pytest.approx(3.0)
    assert timing.p90_ms == pytest.approx(7.6)
    assert timing.candidates_per_s(30) == pytest.approx(10_000)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"candidate_counts": [0]}, "candidate_counts"),
        ({"candidate_counts": [SMALL.max_candidates + 1]}, "candidate_counts"),
        ({"repeats": 0}, "repeats"),
        ({"threads": 0}, "threads"),
        ({"dtype": torch.int64}, "dtype"),
    ],
)
def test_bad_arguments_name_the_field(kwargs: dict, field: str) -> None:
    args = {"configs": [SMALL], "candidate_counts": [4], **FAST, **kwargs}
    with pytest.raises(ConfigError, match=field):
        bench_ranker(**args)


def test_cli_prints_machine_and_table(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "small.json"  # --config also takes a config file: a short history here
    config.write_text(SMALL.to_json())
    out = tmp_path / "bench.json"
    argv = ["bench", "ranker", "--config", str(config), "--json", str(out), "--no-progress"]
    argv += ["--candidates", "4", "8", "--min-time", "0", "--repeats", "2", "--warmup", "1"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("machine: ")
    assert TABLE_HEADER in printed
    assert "| tiny | 8 | 16 |" in printed
    assert [r["candidates"] for r in json.loads(out.read_text())["rows"]] == [4, 8]


@pytest.mark.parametrize(
    ("option", "value"),
    [("--config", "nope"), ("--candidates", "0"), ("--threads", "0")],
)
def test_cli_bad_option_is_one_line_naming_it(
    option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "ranker", option, value, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("phoenix bench: error:") and option in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cli_cuda_without_cuda_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "ranker", "--device", "cuda", "--no-progress"]) == 2
    assert "--device" in capsys.readouterr().err
