"""Event-loop stalls of the main window during a long sweep (issue 11 item 4). Not a test.

Drives the real main window off screen (``QT_QPA_PLATFORM=offscreen``) on a random
GPT-2-small-shaped model (12 layers x 12 heads, d_model 768, built offline by
``bench_patching.build_model``) and a ``--tokens`` long pair (default 512), clicks Run
(``resid_pre`` by default, the preview on) and, while the sweep runs on the worker thread,
measures the gaps between the ticks of a 5 ms timer on the GUI thread: the largest gap is the
worst stall a user would feel (goal: < 50 ms). ``--max-seconds`` cancels the sweep after that
long (the stalls are measured up to then), so a loaded CPU still gives a figure. The app's
garbage-collection guard is installed as ``patchlab app`` does (``--no-gc-guard`` to compare).

For each gap it also records the GUI thread's own CPU time: a gap with CPU ~ gap is our code
on the GUI thread; one with little CPU is the thread waiting (the GIL held by the worker, or
the OS running other work). It prints a line every few seconds while the sweep runs, then a
Markdown row for docs/benchmarks.md (with the machine's load average) and the worst gaps.
``benchmarks/gui_view_costs.py`` measures the GUI-thread work per event without a model.

Run: ``.venv/bin/python benchmarks/gui_stalls.py [--tokens 512] [--target resid_pre] [--max-seconds 300]``
Quick check: ``--tokens 32 --max-seconds 30``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--target", default="resid_pre")
    parser.add_argument("--max-seconds", type=float, default=300.0)
    parser.add_argument("--no-preview", action="store_true")
    parser.add_argument("--no-gc-guard", action="store_true", help="leave automatic garbage collection on")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: cores - 1)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 2) - 1))

    from bench_patching import build_model, make_pair
    from PySide6.QtCore import QObject, QTimer, Slot
    from soak import WindowRunner

    import patchlab

    class Probe(QObject):
        def __init__(self):
            super().__init__()
            self.gaps: list[float] = []
            self.cpu: list[float] = []  # GUI-thread CPU time used during each gap
            self.at: list[float] = []
            self.last: float | None = None
            self.last_cpu = 0.0
            self.timer = QTimer(self)
            self.timer.setInterval(5)
            self.timer.timeout.connect(self.tick)

        @Slot()
        def tick(self):
            now, cpu = time.perf_counter(), time.thread_time()
            if self.last is not None:
                self.gaps.append(now - self.last)
                self.cpu.append(cpu - self.last_cpu)
                self.at.append(now)
            self.last, self.last_cpu = now, cpu

    with tempfile.TemporaryDirectory() as tmp:
        folder = build_model(Path(tmp) / "gpt2-small-shape")
        model = patchlab.load_model(str(folder), device="cpu")
        pair = make_pair(model, args.tokens)
        del model
        runner = WindowRunner(Path(tmp), gc_guard=not args.no_gc_guard)
        runner.load(str(folder), pair)
        w = runner.w
        w.experiment.set_settings({"target": args.target, "metric": "logit_diff_recovered",
                                   "direction": "denoise", "method": "exact"})
        w.experiment.preview.setChecked(not args.no_preview)
        probe = Probe()
        probe.timer.start()
        t0 = time.perf_counter()
        assert w.run(), "the window refused to run"
        cancelled = False
        next_line = t0 + 5.0
        while not (w.state.result is not None and w.controller.is_idle()) and not w.last_error:
            runner.app.processEvents()
            time.sleep(0.001)
            now = time.perf_counter()
            if not cancelled and now - t0 > args.max_seconds:
                w.cancel()
                cancelled = True
            if now > next_line and probe.gaps:
                next_line = now + 5.0
                g = np.array(probe.gaps) * 1000 - 5.0
                c = np.array(probe.cpu) * 1000
                shown = w.heatmap.values
                cells = int(np.isfinite(shown).sum()) if shown is not None else 0
                print(f"  t {now - t0:6.1f} s  cells shown {cells}  {w.experiment.progress_text.text()[:40]!r}  "
                      f"max stall {g.max():.0f} ms  max GUI CPU in a gap {c.max():.0f} ms", flush=True)
        elapsed = time.perf_counter() - t0
        probe.timer.stop()
        r = w.state.result
        done = int(np.isfinite(r.values).sum()) if r is not None else 0
        total = r.values.size if r is not None else 0
        gaps = np.array(probe.gaps) * 1000 - 5.0  # the stall beyond the timer's own interval
        cpu = np.array(probe.cpu) * 1000
        at = np.array(probe.at) - t0
        worst = np.argsort(-gaps)[:5]
        runner.close()
    load = os.getloadavg()
    print(f"| gpt2-small shape, {args.tokens} tokens, {args.target}, preview "
          f"{'off' if args.no_preview else 'on'} | {done}/{total} cells in {elapsed:.1f} s"
          f"{' (cancelled at the time limit)' if cancelled else ''} | max stall {gaps.max():.0f} ms | "
          f"p99 {np.percentile(gaps, 99):.0f} ms | stalls > 50 ms: {(gaps > 50).sum()} | "
          f"load {load[0]:.1f} on {os.cpu_count()} cores |")
    # a stall in which the GUI thread itself was busy (CPU time ~ gap) is our code; one in
    # which it used little CPU was the thread waiting (GIL, or the OS running other work)
    print("worst gaps (ms) at t (s), GUI-thread CPU during the gap (ms):",
          ", ".join(f"{gaps[i]:.0f} at {at[i]:.1f} s cpu {cpu[i]:.0f}" for i in worst))
    busy = gaps[cpu > 0.8 * (gaps + 5.0)] if gaps.size else gaps
    print(f"max stall with the GUI thread busy itself: {busy.max() if busy.size else 0:.0f} ms")
    print(f"GUI-thread CPU per gap: max {cpu.max():.1f} ms, p99 {np.percentile(cpu, 99):.1f} ms, "
          f"gaps with > 20 ms of GUI CPU: {(cpu > 20).sum()}, with > 50 ms: {(cpu > 50).sum()}; "
          f"GUI thread CPU in all {cpu.sum() / 1000:.1f} s of {elapsed:.1f} s")
    if w.last_error:
        print("error:", w.last_error)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
