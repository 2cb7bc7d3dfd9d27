"""The machine line every benchmark prints: OS, cores, memory, torch, CUDA, load average."""

from __future__ import annotations

import os
import platform


def machine_line(threads: str | None = None) -> str:
    """``Machine: Linux x86_64, 2 cores, 24 GiB, torch X (N threads), cuda no; load average ...``;
    ``threads`` replaces the torch thread count (e.g. ``"1 thread per process"``)."""
    import torch

    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(next(ln for ln in f if ln.startswith("MemTotal")).split()[1])
        mem = f", {kb / 2**20:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    threads = threads or f"{torch.get_num_threads()} threads"
    return (f"Machine: {platform.system()} {platform.machine()}, {os.cpu_count()} cores{mem}, "
            f"torch {torch.__version__} ({threads}), "
            f"cuda {'yes' if torch.cuda.is_available() else 'no'}; load average {load}")
