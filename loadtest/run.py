"""Run Locust headless on one target and collect what it measured.

Locust runs as its own process (`python -m locust`): it monkey-patches the standard library for
gevent, which must not happen to a process that also runs the stack. It writes its CSV statistics
and HTML report into the output directory; we add the request log and `summary.json`.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

import loadtest.locustfiles
from loadtest.env import (
    CANDIDATES_ENV,
    LOG_ENV,
    MIX_ENV,
    SHAPE_ENV,
    TOKEN_ENV,
    USER_RPS_ENV,
    WRITES_ENV,
)
from loadtest.shape_spec import LoadShapeSpec
from loadtest.summary import StepStats, Summary, read_request_log, step_stats, summarise
from phoenix.errors import ServingError

log = logging.getLogger(__name__)

LOCUSTFILES = Path(loadtest.locustfiles.__file__).parent
#: Seconds Locust may take beyond the run to stop users and write its files.
_GRACE_S = 120


class LoadTestSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    target: Literal["feed", "triton"]
    users: int = Field(default=10, ge=1, le=10_000)
    spawn_rate: float = Field(default=10.0, gt=0)
    duration_s: float = Field(default=60.0, gt=0, le=86_400)
    user_rps: float = Field(default=1.0, gt=0, description="requests per second per user")
    writes: float = Field(default=0.1, ge=0, le=1, description="feed target: share of writes")
    candidates: int = Field(default=256, ge=1, description="triton target: per request")
    shape: Literal["constant", "ramp", "steps"] = "constant"
    start_users: int = Field(default=5, ge=1)
    step_users: int = Field(default=5, ge=1)
    step_s: float = Field(default=30.0, gt=0)

    def shape_spec(self) -> LoadShapeSpec | None:
        if self.shape == "constant":
            return None
        return LoadShapeSpec(
            kind=self.shape,
            users=self.users,
            duration_s=self.duration_s,
            spawn_rate=self.spawn_rate,
            start=self.start_users,
            step=self.step_users,
            step_s=self.step_s,
        )

    def steps(self) -> list[tuple[int, float, float]]:
        """(users, start, end) of each step of a step load."""
        spec = self.shape_spec()
        if spec is None or spec.kind != "steps":
            return []
        out = []
        start = 0.0
        while start < self.duration_s:
            end = min(start + self.step_s, self.duration_s)
            out.append((spec.users_at(start), start, end))
            start = end
        return out


class LoadTestResult(BaseModel):
    summary: Summary
    steps: list[StepStats]
    out_dir: Path


def run_locust(
    settings: LoadTestSettings,
    host: str,
    out_dir: Path,
    *,
    mix_file: Path | None = None,
    token: str | None = None,
) -> LoadTestResult:
    """Run Locust against `host` and return its summary (also written to summary.json); `token`
    is the feed service's bearer token (default: PHOENIX_LOADTEST_TOKEN as set)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    request_log = out_dir / "requests.jsonl"
    env = {
        **os.environ,
        USER_RPS_ENV: str(settings.user_rps),
        WRITES_ENV: str(settings.writes),
        CANDIDATES_ENV: str(settings.candidates),
        LOG_ENV: str(request_log),
    }
    spec = settings.shape_spec()
    if spec is not None:
        env[SHAPE_ENV] = spec.model_dump_json()
    else:
        env.pop(SHAPE_ENV, None)
    if mix_file is not None:
        env[MIX_ENV] = str(mix_file)
    if token is not None:
        env[TOKEN_ENV] = token
    command = [
        sys.executable, "-m", "locust",
        "-f", str(LOCUSTFILES / f"{settings.target}.py"),
        "--headless",
        "--host", host,
        "--users", str(settings.users),
        "--spawn-rate", str(settings.spawn_rate),
        "--run-time", f"{settings.duration_s:g}s",
        "--stop-timeout", "10",
        "--csv", str(out_dir / "locust"),
        "--html", str(out_dir / "report.html"),
        "--only-summary",
        "--loglevel", "WARNING",
        "--exit-code-on-error", "0",
    ]  # fmt: skip
    log.info("locust: %d users, %s load, %gs against %s", settings.users, settings.shape,
             settings.duration_s, host)  # fmt: skip
    with (out_dir / "locust.log").open("w") as locust_log:
        try:
            done = subprocess.run(
                command,
                env=env,
                stdout=locust_log,
                stderr=subprocess.STDOUT,
                timeout=settings.duration_s + _GRACE_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise ServingError(f"locust did not finish; see {out_dir / 'locust.log'}") from exc
    stats = out_dir / "locust_stats.csv"
    if done.returncode != 0 or not stats.is_file():
        tail = (out_dir / "locust.log").read_text()[-2000:]
        raise ServingError(f"locust failed (exit status {done.returncode}):\n{tail}")
    summary = summarise(
        stats,
        target=settings.target,
        host=host,
        duration_s=settings.duration_s,
        settings=settings.model_dump(),
    )
    steps = step_stats(read_request_log(request_log), settings.steps()) if settings.steps() else []
    result = LoadTestResult(summary=summary, steps=steps, out_dir=out_dir)
    (out_dir / "summary.json").write_text(
        json.dumps({**summary.model_dump(), "steps": [s.model_dump() for s in steps]}, indent=2)
        + "\n"
    )
    return result
