"""Soak test: many sweeps back to back through the window's code path; memory, threads, files.

Runs ``--toy-runs`` sweeps (default 200) on the embedded toy model and ``--gpt2-runs`` (default
30) on a random GPT-2-small-shaped model back to back. ``--mode window`` (the default) drives
the real main window off screen (``QT_QPA_PLATFORM=offscreen``): Run, the controller's superqt
worker, the heatmap, the scatter and the autosave, exactly as a user's clicks do.
``--mode generator`` runs :func:`patchlab.gui.preview.preview_then_exact` (the generator the
window's worker runs: the attribution preview, then the exact sweep) in this thread, keeping
only the latest result as the window does. After each run it records the resident
memory (``VmRSS``), the number of OS threads and of open file descriptors; it prints the
least-squares resident-memory slope per run after a warm-up, and the thread and file-handle
counts at the start and end of each phase.

In window mode the app's garbage-collection guard is installed (as ``patchlab app`` does) and
each run waits for the autosave the window writes after a sweep, so a writer thread still
running is not counted as thread growth. One line per run (``--every N``: every N-th).

Run: ``.venv/bin/python benchmarks/soak.py [--mode window|generator] [--toy-runs 200] [--gpt2-runs 30] [--json out.json]``
Quick check: ``--mode window --toy-runs 20 --gpt2-runs 0``.
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


def thread_names() -> list[str]:
    """OS thread names (``/proc/self/task/*/comm``): which thread appeared, if one did."""
    out = []
    for task in Path("/proc/self/task").iterdir():
        try:
            out.append((task / "comm").read_text().strip())
        except OSError:
            pass
    return sorted(out)


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


def soak(model, pairs, runs: int, targets: list[str], warmup: int, label: str, sweep=None,
         collect: bool = False, every: int = 1) -> dict:
    from patchlab.gui.preview import preview_then_exact

    def gen_sweep(target):
        return drain(preview_then_exact(model, pairs, target=target, metric="logit_diff_recovered",
                                        direction="denoise"))[0]

    sweep = sweep or gen_sweep
    rss, threads, fds, times, nones = [], [], [], [], []
    kept = None  # the window keeps its latest result only
    for i in range(runs):
        t0 = time.perf_counter()
        result = sweep(targets[i % len(targets)])
        assert np.isfinite(result.values).all(), "a sweep left NaN cells"
        kept = result
        times.append(time.perf_counter() - t0)
        if collect:
            gc.collect()  # costs ~1 s per run on a big heap; off by default (Python collects anyway)
        rss.append(rss_mb())
        threads.append(n_threads())
        fds.append(n_fds())
        # Python 3.11's None is not immortal: a C extension that drops one reference too many
        # per call shows as a falling count here, long before the "none_dealloc" abort
        nones.append(sys.getrefcount(None))
        if (i + 1) % max(1, every) == 0 or i + 1 == runs:
            print(f"  {label}: run {i + 1}/{runs}  rss {rss[-1]:.1f} MB  threads {threads[-1]}  "
                  f"fds {fds[-1]}  None refs {nones[-1]}  {times[-1]:.2f} s/run", flush=True)
    del kept
    after = rss[warmup:]
    return {
        "label": label, "runs": runs, "warmup": warmup, "targets": targets,
        "rss_start_mb": rss[warmup] if len(rss) > warmup else float("nan"), "rss_end_mb": rss[-1],
        "rss_slope_mb_per_run": slope(after),
        "rss_max_minus_min_after_warmup_mb": (max(after) - min(after)) if after else float("nan"),
        "threads_start": threads[0], "threads_end": threads[-1], "threads_max": max(threads),
        "threads_after_warmup": threads[min(warmup, runs - 1)], "thread_names_end": thread_names(),
        "fds_start": fds[0], "fds_end": fds[-1], "fds_max": max(fds), "fds_after_warmup": fds[min(warmup, runs - 1)],
        "s_per_run": float(np.median(times)),
        "none_refcount_slope_per_run": slope(nones[warmup:]), "none_refcount_end": nones[-1],
    }


class WindowRunner:
    """One off-screen main window; ``sweep(target)`` clicks Run and waits for the result."""

    def __init__(self, tmp: Path, gc_guard: bool = True):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        from PySide6.QtCore import QSettings

        from patchlab.gui.app import ensure_app, make_window

        self.app = ensure_app([])
        self.guard = None
        if gc_guard:
            from patchlab.gui import gc_guard as guard

            self.guard = guard.install(self.app)  # cyclic GC on this thread only, as the app does
        self.w = make_window(settings=QSettings(str(tmp / "settings.ini"), QSettings.IniFormat),
                             autosave_path=tmp / "autosave.patchlab", restore=False, load_default=False)
        self.w.quiet = True
        if self.guard is not None:
            self.w.controller.modelChanged.connect(self.guard.refreeze)
        self.w.resize(1280, 720)
        self.w.show()

    def wait(self, cond, timeout: float = 600.0) -> None:
        t0 = time.perf_counter()
        while not cond():
            self.app.processEvents()
            time.sleep(0.002)
            if time.perf_counter() - t0 > timeout:
                raise TimeoutError("the window did not finish in time")
        self.app.processEvents()

    def load(self, name: str, pair) -> None:
        w = self.w
        w.load_model(name, "cpu", "float32", "compat")
        self.wait(lambda: w.model is not None and w.controller.is_idle())
        w.pair_editor.set_pairs([pair])
        self.wait(w.controller.is_idle)

    def sweep(self, target: str):
        w = self.w
        w.experiment.set_settings({"target": target, "metric": "logit_diff_recovered",
                                   "direction": "denoise", "method": "exact"})
        before = w.state.result
        assert w.run(), "the window refused to run (pair invalid?)"
        self.wait(lambda: (w.state.result is not None and w.state.result is not before
                           and w.controller.is_idle()) or bool(w.last_error))
        assert not w.last_error, w.last_error
        w.writer.wait()  # the autosave after the run (the writer thread then ends)
        self.app.processEvents()
        return w.state.result

    def close(self) -> None:
        self.w.close()
        self.app.processEvents()


def soak_window(runner: WindowRunner, runs: int, targets: list[str], warmup: int, label: str,
                collect: bool = False, every: int = 1) -> dict:
    """As :func:`soak`, clicking Run in the window for each sweep."""
    return soak(None, None, runs, targets, warmup, label, sweep=runner.sweep, collect=collect, every=every)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["window", "generator"], default="window",
                        help="window: click Run in the off-screen main window (default); generator: "
                        "drain the worker's generator in this thread")
    parser.add_argument("--toy-runs", type=int, default=200)
    parser.add_argument("--gpt2-runs", "--gpt-runs", type=int, default=30)
    parser.add_argument("--warmup", type=float, default=0.2, help="fraction of runs ignored for the slope")
    parser.add_argument("--gpt2-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: cores - 1)")
    parser.add_argument("--gc", action="store_true", help="force a garbage collection before each reading")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--every", type=int, default=1, help="print a line every N runs (default: each run)")
    args = parser.parse_args(argv)

    import torch

    import patchlab

    torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 2) - 1))
    extra = ""
    if args.mode == "window":
        import PySide6

        extra = f", PySide6 {PySide6.__version__}, Python {sys.version.split()[0]}"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}{extra}", flush=True)
    out = []
    toy_targets = ["attn_head_out_all_pos", "resid_pre", "attn_head_out_by_pos"]
    gpt2_targets = ["attn_head_out_all_pos", "resid_pre"]
    with tempfile.TemporaryDirectory() as tmp:
        runner = WindowRunner(Path(tmp)) if args.mode == "window" else None
        if args.toy_runs:
            model = patchlab.load_model("toy-attn2", device="cpu")
            pair = patchlab.examples(model)[0].pair
            if runner:
                del model
                runner.load("toy-attn2", pair)
                out.append(soak_window(runner, args.toy_runs, toy_targets, int(args.toy_runs * args.warmup),
                                       "toy-attn2 (window)", collect=args.gc, every=args.every))
            else:
                out.append(soak(model, [pair], args.toy_runs, toy_targets, int(args.toy_runs * args.warmup),
                                "toy-attn2", collect=args.gc, every=args.every))
                del model
        if args.gpt2_runs:
            from bench_patching import build_model, make_pair

            folder = build_model(Path(tmp) / "gpt2-small-shape")
            model = patchlab.load_model(str(folder), device="cpu")
            pair = make_pair(model, args.gpt2_tokens)
            if runner:
                del model
                runner.load(str(folder), pair)
                out.append(soak_window(runner, args.gpt2_runs, gpt2_targets, int(args.gpt2_runs * args.warmup),
                                       "gpt2-small-shape (window)", collect=args.gc, every=args.every))
            else:
                out.append(soak(model, [pair], args.gpt2_runs, gpt2_targets, int(args.gpt2_runs * args.warmup),
                                "gpt2-small-shape", collect=args.gc, every=args.every))
        if runner:
            runner.close()
    print()
    print("| model | runs (warm-up) | RSS after warm-up -> end (MB) | slope (MB/run) | threads start/after warm-up/end/max | fds start/after warm-up/end/max | None refs/run | s/run |")
    print("|---|---|---|---|---|---|---|---|")
    for r in out:
        print(f"| {r['label']} | {r['runs']} ({r['warmup']}) | {r['rss_start_mb']:.1f} -> {r['rss_end_mb']:.1f} | "
              f"{r['rss_slope_mb_per_run']:+.3f} | {r['threads_start']}/{r['threads_after_warmup']}/{r['threads_end']}/"
              f"{r['threads_max']} | {r['fds_start']}/{r['fds_after_warmup']}/{r['fds_end']}/{r['fds_max']} | "
              f"{r['none_refcount_slope_per_run']:+.1f} | "
              f"{r['s_per_run']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    for r in out:
        print(f"{r['label']}: threads at the end: {', '.join(r['thread_names_end'])}")
    ok = all(r["rss_slope_mb_per_run"] < 1.0 and r["threads_end"] <= r["threads_after_warmup"]
             and r["fds_end"] <= r["fds_after_warmup"] for r in out)
    print("goal met (slope < 1 MB/run, no thread or file-handle growth after warm-up):", "yes" if ok else "NO")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
