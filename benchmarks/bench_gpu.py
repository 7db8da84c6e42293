"""GPU table (issue 13, item 9): a GPT-2-small-shaped head x position sweep at 16 tokens.

One command::

    python benchmarks/bench_gpu.py [--device cuda] [--dtype float32] [--targets attn_head_out_by_pos,...]

For each target it prints the time to the first finished layer row (what the window shows
first), the whole sweep, the engine that ran (and why not the fast one), and the peak GPU
memory (``torch.cuda.max_memory_allocated``). Goals: the sweep under 1 s, the first row under
0.3 s. Without a GPU it says "no GPU" and exits 0 (``--device cpu`` runs the same table on the
CPU, without the memory column).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import torch  # noqa: E402

TARGETS = ("attn_head_out_by_pos", "attn_head_out_all_pos", "resid_pre")


def sweep_row(model, pair, target: str, device: str) -> dict:
    """Time one sweep: first layer row, whole sweep, peak memory, engine."""
    import patchlab
    from patchlab.engine.sweep import iter_patch

    cuda = device.startswith("cuda")
    patchlab.patch(model, pair, target=target)  # warm-up: kernels, weight cache, probe
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    t0 = time.perf_counter()
    first = None
    gen = iter_patch(model, pair, target=target)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            result = stop.value
            break
        if first is None:
            if cuda:
                torch.cuda.synchronize()
            first = time.perf_counter() - t0
    if cuda:
        torch.cuda.synchronize()
    total = time.perf_counter() - t0
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20 if cuda else float("nan")
    return {"target": target, "cells": result.values.size, "first_row_s": first or total, "sweep_s": total,
            "peak_mib": peak, "engine": result.meta["engine_path"], "why": result.meta.get("fallback_reason", "")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--targets", default=",".join(TARGETS))
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no GPU: torch.cuda.is_available() is False on this machine; nothing to measure "
              "(run with --device cpu for the same table on the CPU).")
        return 0
    from bench_patching import build_model, make_pair

    import patchlab

    with tempfile.TemporaryDirectory() as tmp:
        folder = build_model(Path(tmp) / "gpt2-small-shape")
        model = patchlab.load_model(str(folder), device=args.device, dtype=args.dtype)
        pair = make_pair(model, 16)
        name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
        print(f"GPT-2-small shape (12 layers x 12 heads, d_model 768), 16 tokens, {args.dtype}, {name}, "
              f"torch {torch.__version__}\n")
        print("| target | cells | first row (s) | sweep (s) | peak memory (MiB) | engine |")
        print("|---|---|---|---|---|---|")
        for target in args.targets.split(","):
            r = sweep_row(model, pair, target, args.device)
            engine = r["engine"] + (f" ({r['why']})" if r["why"] else "")
            peak = "-" if r["peak_mib"] != r["peak_mib"] else f"{r['peak_mib']:.0f}"  # NaN on the CPU
            print(f"| `{target}` | {r['cells']} | {r['first_row_s']:.3f} | {r['sweep_s']:.3f} | "
                  f"{peak} | {engine} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
