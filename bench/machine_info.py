"""One line naming the machine a benchmark ran on (for bench/RESULTS.md)."""

from __future__ import annotations

import platform
from pathlib import Path

import torch


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (else ``platform.processor()``)."""
    info = Path("/proc/cpuinfo")
    if info.is_file():
        for line in info.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def describe_machine(device: str, threads: int | None = None) -> str:
    """'<GPU name>; torch X' on CUDA, '<CPU name>, N threads; torch X' otherwise."""
    if device == "cuda":
        return f"{torch.cuda.get_device_name()}; torch {torch.__version__}"
    threads = threads or torch.get_num_threads()
    return f"{cpu_name()}, {threads} threads; torch {torch.__version__}"
