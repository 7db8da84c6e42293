"""Free-memory probes and batch-size choice (CPU RAM or GPU memory)."""

from __future__ import annotations

import os

import torch

_MIN_BUDGET = 64 << 20
_MAX_BUDGET = 4 << 30
_MAX_CPU_BUDGET = 1 << 30


def free_bytes(device: torch.device | str) -> int:
    """Bytes free for new tensors on ``device`` (best effort)."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 2 << 30


def budget_bytes(device: torch.device | str, fraction: float = 0.25) -> int:
    """A share of free memory for one batch, clamped to [64 MiB, 4 GiB] (1 GiB on a CPU).

    Batches beyond a few hundred rows gain nothing on a CPU, and a sweep should stay within
    about a gigabyte of the model's own size there.
    """
    cap = _MAX_BUDGET if torch.device(device).type == "cuda" else _MAX_CPU_BUDGET
    return max(_MIN_BUDGET, min(cap, int(free_bytes(device) * fraction)))


def choose_batch(bytes_per_row: int, device: torch.device | str, limit: int, cap: int = 256,
                 reserved: int = 0) -> int:
    """Rows per forward pass that fit the memory budget (at least 1, at most ``limit``).

    ``reserved`` bytes (caches still to be allocated beside the batch) come off the budget.
    """
    fit = max(0, budget_bytes(device) - reserved) // max(1, bytes_per_row)
    return int(max(1, min(limit, cap, fit)))


def is_oom(exc: BaseException) -> bool:
    """True for out-of-memory errors from any torch backend."""
    if isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError)):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
