"""The host a benchmark runs on, without PyTorch: CPU name and the CPUs this process may use."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo, else whatever `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def usable_cpus() -> int:
    """CPUs this process may run on (what `nproc` prints), not every CPU in the box."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def host_facts() -> dict[str, str | int]:
    """What every benchmark records about the host: CPU, usable CPUs, OS and Python."""
    return {
        "cpu": cpu_model(),
        "nproc": usable_cpus(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def host_line(info: dict[str, str | int]) -> str:
    """The first line of a benchmark's output, from `host_facts()` (or a superset of it)."""
    return f"machine: {info['cpu']}, nproc {info['nproc']}, {info['platform']}"
