"""The load test's parts that need no stack: shapes, Locust's CSV, per-step numbers and the knee,
the viewer mix, and the command's option checks (the real runs: tests/integration)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from loadtest.run import LoadTestSettings
from loadtest.shape_spec import LoadShapeSpec
from loadtest.summary import StepStats, format_steps, knee, read_locust_stats, step_stats
from loadtest.viewer_mix import ViewerMix
from phoenix.cli import main
from phoenix.cli.loadtest import _duration
from phoenix.world.generate import generate_world
from phoenix.world.io import load_world
from phoenix.world.spec import WorldSpec

_COLUMNS = (
    "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,"
    "Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,"
    "50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%"
)
STATS_CSV = (
    _COLUMNS
    + """
POST,/v1/feed,90,1,40,45.0,20,300,5000,9.0,0.1,40,45,50,55,70,90,150,200,300,300,300
POST,/v1/posts,10,0,12,13.0,10,20,150,1.0,0.0,12,12,13,14,15,18,20,20,20,20,20
,Aggregated,100,1,38,42.0,10,300,4500,10.0,0.1,38,44,49,54,69,88,140,190,300,300,300
"""
)


def test_steps_and_ramps_offer_the_users_they_say() -> None:
    steps = LoadShapeSpec(kind="steps", users=20, duration_s=100, start=5, step=5, step_s=10)
    assert [steps.users_at(t) for t in (0, 9.9, 10, 25, 35, 99)] == [5, 5, 10, 15, 20, 20]
    ramp = LoadShapeSpec(kind="ramp", users=21, duration_s=10, start=1)
    assert [ramp.users_at(t) for t in (0, 5, 10, 20)] == [1, 11, 21, 21]


def test_the_step_windows_cover_the_run() -> None:
    settings = LoadTestSettings(
        target="feed", users=15, duration_s=25, shape="steps", start_users=5, step_users=5,
        step_s=10,
    )  # fmt: skip
    assert settings.steps() == [(5, 0.0, 10.0), (10, 10.0, 20.0), (15, 20.0, 25.0)]
    assert LoadTestSettings(target="feed").steps() == []


def test_locust_stats_are_read_by_name(tmp_path: Path) -> None:
    path = tmp_path / "locust_stats.csv"
    path.write_text(STATS_CSV)
    rows = read_locust_stats(path)
    assert rows["/v1/feed"].requests == 90 and rows["/v1/feed"].failures == 1
    assert rows["Aggregated"].p99_ms == 190 and rows["Aggregated"].requests_per_s == 10.0
    path.write_text(STATS_CSV.splitlines()[0] + "\n")
    with pytest.raises(ValueError, match="Aggregated"):
        read_locust_stats(path)


def test_step_statistics_and_the_knee() -> None:
    # (t, latency ms, failed): 10 req/s at 20 ms for 10 s, then 20 req/s at 100 ms, then 30 req/s
    # at 400 ms with failures.
    rows = []
    for step, (rate, ms, failed) in enumerate(((10, 20.0, 0), (20, 100.0, 0), (30, 400.0, 1))):
        for i in range(rate * 10):
            rows.append((step * 10 + i / rate, ms, float(failed and i % 10 == 0)))
    log = np.array(rows)
    steps = step_stats(log, [(5, 0, 10), (10, 10, 20), (15, 20, 30)], settle_s=2)
    assert [round(s.requests_per_s) for s in steps] == [10, 20, 30]
    assert [s.p99_ms for s in steps] == [20.0, 100.0, 400.0]
    assert steps[2].failures > 0 and steps[0].failures == 0
    assert knee(steps, 150.0) is steps[1]
    assert knee(steps, 10.0) is None
    table = format_steps(steps, 150.0)
    assert "| 10 | 10-20 | 20.0 | 100 | 100 | 0 | knee |" in table


def test_an_empty_step_has_no_latency() -> None:
    (step,) = step_stats(np.zeros((0, 3)), [(5, 0, 10)])
    assert step == StepStats(
        users=5, start_s=0, end_s=10, requests_per_s=0.0, p50_ms=step.p50_ms,
        p99_ms=step.p99_ms, failures=0,
    )  # fmt: skip
    assert np.isnan(step.p99_ms)


def test_the_viewer_mix_weights_viewers_by_activity(tmp_path: Path) -> None:
    world = load_world(
        generate_world(
            WorldSpec(seed=2, num_users=60, num_authors=10), tmp_path / "w", progress=False
        )
    )
    mix = ViewerMix.of(world)
    users = world.users.to_pydict()
    assert mix.viewers == users["user_id"] and len(mix.weights) == len(mix.viewers)
    assert max(mix.weights) / min(mix.weights) > 2  # heavy and light users differ
    assert set(mix.authors) == {
        u for u, a in zip(users["user_id"], users["is_author"], strict=True) if a
    }
    assert ViewerMix.read(mix.write(tmp_path / "mix.json")) == mix


def test_durations() -> None:
    assert [_duration(t) for t in ("60", "60s", "1.5m", "1h")] == [60, 60, 90, 3600]
    for bad in ("0s", "soon", "-5s"):
        with pytest.raises(Exception, match=r"duration|positive"):
            _duration(bad)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--users", "0"], "--users"),
        (["--writes", "2"], "--writes"),
        (["--max-failure-rate", "5"], "--max-failure-rate"),
        (["--step-seconds", "0"], "--step-seconds"),
    ],
)
def test_bad_options_are_named(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, options: list[str], message: str
) -> None:
    code = main(["loadtest", "--target", "feed", "--out", str(tmp_path), *options])
    assert code == 2 and message in capsys.readouterr().err


def test_without_an_export_the_command_says_what_to_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(
        ["loadtest", "--target", "triton", "--out", str(tmp_path / "o"),
         "--repository", str(tmp_path / "none")]
    )  # fmt: skip
    assert code == 2 and "phoenix demo" in capsys.readouterr().err
