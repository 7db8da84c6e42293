"""Soak test: many sweeps back to back through the window's code path; memory, threads, files.

Runs ``--toy-runs`` sweeps (default 200) on the embedded toy model and ``--gpt2-runs`` (default
30) on a random GPT-2-small-shaped model, each through
:func:`patchlab.gui.preview.preview_then_exact` (the generator the window's worker runs: the
attribution preview, then the exact sweep), draining every event as the worker would and
keeping only the latest result, as the window does. After each run it records the resident
memory (``VmRSS``), the number of OS threads and of open file descriptors; it prints the
least-squares resident-memory slope per run after a warm-up, and the thread and file-handle
counts at the start and end of each phase.

Run: ``.venv/bin/python benchmarks/soak.py [--toy-runs 200] [--gpt2-runs 30] [--json out.json]``
Goal (issue 11): slope < 1 MB per run after warm-up, no thread or file-handle growth.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402


def rss_mb() -> float:
    """Resident set size of this process in MB (Linux ``/proc``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def n_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def n_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def slope(ys: list[float]) -> float:
    """Least-squares slope of ``ys`` against the run index (units of ys per run)."""
    if len(ys) < 2:
        return float("nan")
    return float(np.polyfit(np.arange(len(ys)), np.asarray(ys), 1)[0])


def drain(gen):
    """Run a worker generator to the end as the window's worker does; return its result."""
    n = 0
    while True:
        try:
            next(gen)
            n += 1
        except StopIteration as stop:
            return stop.value, n


def soak(model, pairs, runs: int, targets: list[str], warmup: int, label: str) -> dict:
    from patchlab.gui.preview import preview_then_exact

    rss, threads, fds, times = [], [], [], []
    kept = None  # the window keeps its latest result only
    for i in range(runs):
        t0 = time.perf_counter()
        result, _ = drain(preview_then_exact(model, pairs, target=targets[i % len(targets)],
                                             metric="logit_diff_recovered", direction="denoise"))
        assert np.isfinite(result.values).all(), "a sweep left NaN cells"
        kept = result
        times.append(time.perf_counter() - t0)
        gc.collect()
        rss.append(rss_mb())
        threads.append(n_threads())
        fds.append(n_fds())
        if (i + 1) % max(1, runs // 10) == 0:
            print(f"  {label}: run {i + 1}/{runs}  rss {rss[-1]:.1f} MB  threads {threads[-1]}  "
                  f"fds {fds[-1]}  {times[-1]:.2f} s/run", flush=True)
    del kept
    after = rss[warmup:]
    return {
        "label": label, "runs": runs, "warmup": warmup, "targets": targets,
        "rss_start_mb": rss[warmup] if len(rss) > warmup else float("nan"), "rss_end_mb": rss[-1],
        "rss_slope_mb_per_run": slope(after),
        "rss_max_minus_min_after_warmup_mb": (max(after) - min(after)) if after else float("nan"),
        "threads_start": threads[0], "threads_end": threads[-1], "threads_max": max(threads),
        "fds_start": fds[0], "fds_end": fds[-1], "fds_max": max(fds),
        "s_per_run": float(np.median(times)),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--toy-runs", type=int, default=200)
    parser.add_argument("--gpt2-runs", type=int, default=30)
    parser.add_argument("--warmup", type=float, default=0.2, help="fraction of runs ignored for the slope")
    parser.add_argument("--gpt2-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: cores - 1)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)

    import torch

    import patchlab

    torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 2) - 1))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}", flush=True)
    out = []
    if args.toy_runs:
        model = patchlab.load_model("toy-attn2", device="cpu")
        pairs = [patchlab.examples(model)[0].pair]
        out.append(soak(model, pairs, args.toy_runs, ["attn_head_out_all_pos", "resid_pre", "attn_head_out_by_pos"],
                        int(args.toy_runs * args.warmup), "toy-attn2"))
        del model
    if args.gpt2_runs:
        from bench_patching import build_model, make_pair

        with tempfile.TemporaryDirectory() as tmp:
            folder = build_model(Path(tmp) / "gpt2-small-shape")
            model = patchlab.load_model(str(folder), device="cpu")
            pairs = [make_pair(model, args.gpt2_tokens)]
            out.append(soak(model, pairs, args.gpt2_runs, ["attn_head_out_all_pos", "resid_pre"],
                            int(args.gpt2_runs * args.warmup), "gpt2-small-shape"))
    print()
    print("| model | runs (warm-up) | RSS after warm-up -> end (MB) | slope (MB/run) | threads start/end/max | fds start/end/max | s/run |")
    print("|---|---|---|---|---|---|---|")
    for r in out:
        print(f"| {r['label']} | {r['runs']} ({r['warmup']}) | {r['rss_start_mb']:.1f} -> {r['rss_end_mb']:.1f} | "
              f"{r['rss_slope_mb_per_run']:+.3f} | {r['threads_start']}/{r['threads_end']}/{r['threads_max']} | "
              f"{r['fds_start']}/{r['fds_end']}/{r['fds_max']} | {r['s_per_run']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    ok = all(r["rss_slope_mb_per_run"] < 1.0 and r["threads_end"] <= r["threads_start"]
             and r["fds_end"] <= r["fds_start"] for r in out)
    print("goal met (slope < 1 MB/run, no thread or file-handle growth):", "yes" if ok else "NO")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
