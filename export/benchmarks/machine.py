"""What a benchmark ran on: printed above every table and saved with every JSON result."""

from __future__ import annotations

import torch

from phoenix.machine import host_facts, host_line


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


def describe_machine(device: torch.device, threads: int | None = None) -> dict[str, str | int]:
    """Facts for a result; `threads`: what the benchmark runs with (default: torch's)."""
    return {
        **host_facts(),
        "torch": torch.__version__,
        "threads": threads or torch.get_num_threads(),
        "device": device_name(device),
    }


def format_machine(info: dict[str, str | int]) -> str:
    """Two lines for the top of a benchmark's output."""
    threads = f"{info['threads']} thread{'' if info['threads'] == 1 else 's'}"
    return (
        f"{host_line(info)}\n"
        f"torch {info['torch']} (Python {info['python']}), {threads}, device {info['device']}"
    )
