"""`bench_ranker` and `phoenix bench ranker`: shapes of the results, never speeds."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from export.benchmarks.peak import matmul_peak_tflops
from export.benchmarks.ranker import (
    AGREEMENT_TOLERANCE,
    FORMS,
    FormTiming,
    RankerBenchRow,
    bench_ranker,
    check_agreement,
    chunked_forward,
    format_flops_table,
    format_peak,
    format_table,
    forward_flops,
    full_history_inputs,
    make_model,
    probabilities,
    to_json,
)
from phoenix.cli import main
from phoenix.config import get_config
from phoenix.errors import ConfigError

#: A tiny config with a short history: each case takes milliseconds.
SMALL = get_config("tiny").with_overrides(history_len=16)
A, K = SMALL.num_action_columns, SMALL.num_continuous
FAST = {"warmup": 1, "min_time_s": 0.0, "repeats": 3, "progress": False, "peak_size": 64}
TABLE_HEADER = "| config | candidates | history | one-pass ms (median / p90) |"
FLOPS_HEADER = "| config | candidates | chunk | one-pass GFLOP |"
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def rows() -> list[RankerBenchRow]:
    return bench_ranker([SMALL], [4, 16], chunk=8, **FAST)


def test_one_row_per_case_with_a_full_history(rows: list[RankerBenchRow]) -> None:
    assert [(r.config, r.candidates, r.history_len) for r in rows] == [
        ("tiny", 4, 16),
        ("tiny", 16, 16),
    ]
    assert all(r.device == "cpu" and r.dtype == "float32" for r in rows)


def test_timings_are_positive_and_complete(rows: list[RankerBenchRow]) -> None:
    for row in rows:
        assert row.chunked is not None
        for form in (row.one_pass, row.reference, row.chunked):
            assert form.samples >= 3
            assert 0 < form.median_ms <= form.p90_ms
        assert row.one_pass_cand_per_s > 0 and row.reference_cand_per_s > 0
        assert row.chunked_cand_per_s is not None and row.chunked_cand_per_s > 0


def test_speedup_is_the_ratio_of_throughputs(rows: list[RankerBenchRow]) -> None:
    for row in rows:
        expected = row.one_pass_cand_per_s / row.reference_cand_per_s
        assert math.isclose(row.speedup, expected, rel_tol=1e-12)
        assert math.isclose(row.speedup, row.reference.median_ms / row.one_pass.median_ms)
        assert row.chunked is not None and row.speedup_vs_chunked is not None
        assert math.isclose(row.speedup_vs_chunked, row.chunked.median_ms / row.one_pass.median_ms)


def test_tflops_are_flops_over_the_median_and_relative_to_the_peak(
    rows: list[RankerBenchRow],
) -> None:
    for row in rows:
        assert row.peak_tflops is not None and row.peak_tflops > 0
        assert row.chunk == 8 and row.one_pass_flops > 0
        # One chunk computes what one-pass does; more chunks recompute the history.
        more = row.candidates > row.chunk
        assert (
            row.chunked_flops > row.one_pass_flops
            if more
            else row.chunked_flops == row.one_pass_flops
        )
        for form in FORMS:
            timing = getattr(row, form)
            achieved = row.tflops(form)
            assert achieved == pytest.approx(getattr(row, f"{form}_flops") / timing.median_ms / 1e9)
            assert row.percent_of_peak(form) == pytest.approx(100 * achieved / row.peak_tflops)


def test_all_forms_agree(rows: list[RankerBenchRow]) -> None:
    assert all(0 <= r.max_abs_diff < 1e-4 for r in rows)
    assert all(0 <= r.chunked_max_abs_diff < 1e-4 for r in rows)


def test_chunked_form_agrees_with_one_pass_when_chunks_are_uneven() -> None:
    model = make_model(SMALL, CPU, torch.float32)
    inputs = full_history_inputs(SMALL, 70, CPU)  # chunks of 32, 32 and 6
    with torch.inference_mode():
        chunked = chunked_forward(model, 32)(inputs)
        one_pass = model(inputs)
        assert chunked.logits.shape == (1, 70, A)
        assert chunked.continuous.shape == (1, 70, K)
        # Every output, not only what `probabilities` keeps, and in candidate order.
        torch.testing.assert_close(chunked.logits, one_pass.logits, rtol=0, atol=1e-5)
        torch.testing.assert_close(chunked.continuous, one_pass.continuous, rtol=0, atol=1e-5)
        gap = (probabilities(chunked) - probabilities(one_pass)).abs().max().item()
        assert gap < AGREEMENT_TOLERANCE[torch.float32]
        assert check_agreement(model, inputs, 1e-4, chunked_forward(model, 32), "chunked") == gap


def test_probabilities_are_the_action_probabilities_and_the_dwell_fraction() -> None:
    model = make_model(SMALL, CPU, torch.float32)
    with torch.inference_mode():
        out = model(full_history_inputs(SMALL, 5, CPU))
    p = probabilities(out)
    assert p.shape == (1, 5, A + 1)
    torch.testing.assert_close(p[..., :A], 1 / (1 + torch.exp(-out.logits)))
    torch.testing.assert_close(p[..., A], out.continuous[..., 1] / 30.0)


def test_agreement_check_refuses_forms_that_disagree() -> None:
    model = make_model(SMALL, CPU, torch.float32)
    inputs = full_history_inputs(SMALL, 5, CPU)

    def shifted(i):  # type: ignore[no-untyped-def]
        out = model(i)
        return type(out)(out.logits + 0.5, out.continuous)

    with torch.inference_mode(), pytest.raises(RuntimeError, match="disagree"):
        check_agreement(model, inputs, 1e-4, shifted, "shifted")


def test_forward_flops_by_hand_for_one_layer() -> None:
    # D=8, N=1, Hq=2, Hkv=1, dk=4, W=2 (semantic ids of width W, projected to D), S=3 (L = 2
    # prefix + 3 history = 5 context tokens), F=32 (ffn_dim rounds 16 up to 32), count MLP 5+1 -> 4,
    # 64 action columns, 8 continuous outputs.
    config = SMALL.with_overrides(
        emb_dim=8, num_layers=1, num_q_heads=2, num_kv_heads=1, key_size=4, hash_width=2,
        history_len=3, count_mlp_dim=4,
    )  # fmt: skip
    assert config.ffn_dim == 32 and (config.num_action_columns, config.num_continuous) == (64, 8)

    def by_hand(c: int, pairs: int) -> int:
        t = 5 + c
        post_author = 2 * (2 * 2) * 8 * 2  # two rows of W=2 -> D, post and author
        sid_proj = 2 * 2 * 8  # W=2 -> D
        counts = 2 * 6 * 4 + 2 * 4 * 8  # (5 counts + 1) -> 4 -> D
        embed = (3 + c) * (post_author + sid_proj + counts) + 3 * 2 * 64 * 8  # + history actions
        projections = 2 * t * 8 * (2 * 4) + 2 * t * 8 * (1 * 4) * 2 + 2 * t * (2 * 4) * 8
        attention = 2 * (2 * 4) * pairs * 2  # scores and values, 2 query heads of 4
        ffn = 2 * t * 8 * 32 * 2  # up and down
        heads = 2 * c * 8 * (64 + 8)
        return embed + projections + attention + ffn + heads

    # C=2: one-pass pairs 5*5 context + 2 candidates * (5 context + 1 self); reference 7*7.
    assert forward_flops(config, 3, 2, "one_pass") == by_hand(2, 25 + 2 * 6)
    assert forward_flops(config, 3, 2, "reference") == by_hand(2, 49)
    # Chunks of 1: the context twice, each with one candidate.
    assert forward_flops(config, 3, 2, "chunked", chunk=1) == 2 * by_hand(1, 25 + 6)
    assert forward_flops(config, 3, 2, "chunked", chunk=64) == by_hand(2, 25 + 2 * 6)
    gated = config.with_overrides(gated_ffn=True)
    extra_gate = 2 * (5 + 2) * 8 * 32
    assert forward_flops(gated, 3, 2, "one_pass") == by_hand(2, 37) + extra_gate
    # A semantic-id table as wide as D needs no projection (X creates none).
    no_sid_proj = config.with_overrides(sid_dim=8)
    assert forward_flops(no_sid_proj, 3, 2, "one_pass") == by_hand(2, 37) - (3 + 2) * 2 * 2 * 8


def test_x_nano_flops_include_the_wide_semantic_id_projection() -> None:
    x_nano = get_config("x-nano")
    assert (x_nano.sid_width, x_nano.emb_dim) == (1024, 512)
    narrow = x_nano.with_overrides(sid_dim=512)  # no projection
    s, c = x_nano.history_len, 64
    gap = forward_flops(x_nano, s, c, "one_pass") - forward_flops(narrow, s, c, "one_pass")
    assert gap == (s + c) * 2 * 1024 * 512
    # It matters: several percent of the whole forward.
    assert gap / forward_flops(x_nano, s, c, "one_pass") > 0.03


def prefix_token_flops(config) -> int:  # type: ignore[no-untyped-def]
    """What `forward_flops` leaves out as negligible: the prefix tokens' own projections (user
    rows, IP rows, location features 4 * num_location_freqs wide, installed apps), per forward."""
    d, w = config.emb_dim, config.hash_width
    ip = 2 * (2 * w) * d if config.num_ip_rows else 0
    return 2 * (2 * w) * d + ip + 2 * 4 * config.num_location_freqs * d + 2 * config.num_apps * d


@pytest.mark.parametrize("form", FORMS)
def test_forward_flops_match_torch_flop_counter(form: str) -> None:
    """torch counts every matmul; the one-pass self-key terms are elementwise, so they differ by
    exactly 4 * Hq * dk per candidate per layer there, and the prefix tokens' projections, left out
    of the count, come on top once per forward (three chunks: three times)."""
    model = make_model(SMALL, CPU, torch.float32)
    inputs = full_history_inputs(SMALL, 70, CPU)
    forward = {"one_pass": model.forward, "reference": model.forward_reference}.get(form)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        (forward or chunked_forward(model, 32))(inputs)
    self_terms = 0 if form == "reference" else 4 * SMALL.num_q_heads * SMALL.key_size * 70
    forwards = 3 if form == "chunked" else 1
    expected = forward_flops(SMALL, SMALL.history_len, 70, form, chunk=32)
    counted = counter.get_total_flops()
    assert counted == expected - self_terms * SMALL.num_layers + forwards * prefix_token_flops(
        SMALL
    )
    # What is left out is negligible.
    assert forwards * prefix_token_flops(SMALL) / counted < 0.01


def test_forward_flops_refuses_unknown_form_and_bad_chunk() -> None:
    with pytest.raises(ConfigError, match="form"):
        forward_flops(SMALL, 16, 4, "nope")
    with pytest.raises(ConfigError, match="chunk"):
        forward_flops(SMALL, 16, 4, "chunked", chunk=0)


def test_matmul_peak_is_positive() -> None:
    assert matmul_peak_tflops("cpu", torch.float32, size=64, repeats=2) > 0


def test_table_and_json(rows: list[RankerBenchRow]) -> None:
    lines = format_table(rows).splitlines()
    assert lines[0].startswith(TABLE_HEADER)
    assert len(lines) == 2 + len(rows)
    assert all(line.count(" | ") == lines[0].count(" | ") for line in lines)
    assert "| chunked ms (median / p90) |" in lines[0] and "| vs chunked |" in lines[0]
    flops = format_flops_table(rows).splitlines()
    assert flops[0].startswith(FLOPS_HEADER) and "| chunked TFLOP/s (% peak) |" in flops[0]
    assert len(flops) == 2 + len(rows)
    assert all(line.count(" | ") == flops[0].count(" | ") for line in flops)
    assert "%)" in flops[2]
    assert format_peak(rows).startswith("matmul peak: ")
    data = json.loads(to_json(rows, {"cpu": "test"}))
    assert data["machine"] == {"cpu": "test"}
    assert data["peak_tflops"] == rows[0].peak_tflops > 0
    row = data["rows"][1]
    assert row["candidates"] == 16
    assert row["speedup"] == rows[1].speedup
    assert row["one_pass"]["samples"] == rows[1].one_pass.samples
    assert row["chunked"]["samples"] == rows[1].chunked.samples
    assert row["chunk"] == 8 and row["speedup_vs_chunked"] == rows[1].speedup_vs_chunked
    assert row["chunked_cand_per_s"] == rows[1].chunked_cand_per_s
    for form in FORMS:
        assert row[f"{form}_flops"] == getattr(rows[1], f"{form}_flops")
        assert row[f"{form}_tflops"] == rows[1].tflops(form)
        assert row[f"{form}_percent_of_peak"] == rows[1].percent_of_peak(form)


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
        ({"chunk": 0}, "chunk"),
    ],
)
def test_bad_arguments_name_the_field(kwargs: dict, field: str) -> None:
    args = {"configs": [SMALL], "candidate_counts": [4], **FAST, **kwargs}
    with pytest.raises(ConfigError, match=field):
        bench_ranker(**args)


def test_x_nano_geometry_benchmarks() -> None:
    # X's home_direct_packed_nano (semantic-id table 1024 wide, IP rows, 64 action columns) with a
    # short history, so the case takes seconds; `--config x-nano` runs the full 1,022 slots.
    config = get_config("x-nano").with_overrides(history_len=14)
    (row,) = bench_ranker([config], [5], chunk=2, **FAST)
    assert (row.config, row.candidates, row.history_len) == ("x-nano", 5, 14)
    assert 0 <= row.max_abs_diff < 1e-4 and 0 <= row.chunked_max_abs_diff < 1e-4
    assert row.one_pass_flops == forward_flops(config, 14, 5, "one_pass")
    assert row.chunked_flops == forward_flops(config, 14, 5, "chunked", chunk=2)


def test_cli_prints_machine_and_table(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "small.json"  # --config also takes a config file: a short history here
    config.write_text(SMALL.to_json())
    out = tmp_path / "bench.json"
    argv = ["bench", "ranker", "--config", str(config), "--json", str(out), "--no-progress"]
    argv += ["--candidates", "4", "8", "--min-time", "0", "--repeats", "2", "--warmup", "1"]
    argv += ["--chunk", "3"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("machine: ")
    assert "matmul peak: " in printed and "chunk 3" in printed
    assert TABLE_HEADER in printed and FLOPS_HEADER in printed
    assert "| tiny | 8 | 16 |" in printed
    assert "| tiny | 8 | 3 |" in printed  # the FLOP table: config, candidates, chunk
    data = json.loads(out.read_text())
    assert [r["candidates"] for r in data["rows"]] == [4, 8]
    assert all(r["chunk"] == 3 for r in data["rows"]) and data["peak_tflops"] > 0


@pytest.mark.parametrize(
    ("option", "value"),
    [("--config", "nope"), ("--candidates", "0"), ("--threads", "0"), ("--chunk", "0")],
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
