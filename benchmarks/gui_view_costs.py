"""GUI-thread CPU per sweep event, replayed without a model (issue 11 item 4). Not a test.

Builds the real main window off screen (no model) and feeds its sweep presenter the events
of a ``--layers`` x ``--tokens`` ``resid_pre`` sweep with the preview on (default 12 x 512,
the GPT-2-small shape of ``gui_stalls.py``): the finished estimate, the estimate rows, one
exact row per layer and the final result, with random values. After each event it forces the
throttled heatmap and scatter redraws and lets Qt paint (``processEvents``), and reads the GUI
thread's own CPU time (``time.thread_time``): the work a real sweep puts on the GUI thread
per event, independent of how busy the machine is (the model's forward passes are not run).
The replay runs twice: with the Patching tab shown, and with the "Estimate vs exact" tab shown.

Run: ``.venv/bin/python benchmarks/gui_view_costs.py [--tokens 512] [--layers 12] [--repeats 3]``
Goal: every event well under 50 ms (aim ~20 ms) of GUI-thread CPU.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402


def replay(w, app, n_layers: int, n_tokens: int, rng) -> list[tuple[str, float]]:
    """One sweep's events through ``w.sweep``; (event name, GUI-thread ms) per event."""
    from patchlab.core.pairs import PromptPair
    from patchlab.core.result import PatchResult
    from patchlab.engine.sweep import SweepEvent
    from patchlab.gui.jobs import Outcome
    from patchlab.gui.preview import PreviewReady
    from patchlab.gui.state import RunSpec

    toks = tuple(f" w{i}" for i in range(n_tokens))
    spec = RunSpec(model="fake", pairs=(PromptPair("a", "b", " x", " y"),), target="resid_pre",
                   metric="logit_diff_recovered", direction="denoise", method="exact", preview=True,
                   tokens=((toks, toks),))
    axes = ("layer", "pos")
    labels = {"layer": [f"L{i}" for i in range(n_layers)], "pos": list(toks)}
    shape = (n_layers, n_tokens)

    def result(values, method):
        return PatchResult(values=values, axes=axes, labels=dict(labels), per_pair=values[None].copy(),
                           meta={"method": method, "metric": "logit_diff_recovered", "direction": "denoise",
                                 "target": "resid_pre", "model": "fake"})

    costs: list[tuple[str, float]] = []

    def timed(name, fn, *args):
        t0 = time.thread_time()
        fn(*args)
        w.heatmap._redraw()  # what the throttle timers would do next (only what is visible)
        w.scatter._redraw()
        app.processEvents()  # layout and paint
        costs.append((name, (time.thread_time() - t0) * 1000))

    timed("start", w.sweep.start, spec)
    est = rng.normal(size=shape)
    timed("preview ready", w.sweep.on_progress, PreviewReady(result(est, "attribution"), 0.5))
    timed("estimate rows", w.sweep.on_progress,
          SweepEvent(done=est.size, total=est.size, values=est.copy(), layer=None, elapsed=0.5,
                     phase="estimate"))
    exact = np.full(shape, np.nan)
    for layer in range(n_layers):
        exact = exact.copy()
        exact[layer] = est[layer] + 0.1 * rng.normal(size=n_tokens)
        timed(f"exact row {layer}", w.sweep.on_progress,
              SweepEvent(done=(layer + 1) * n_tokens, total=exact.size, values=exact.copy(), layer=layer,
                         elapsed=1.0 + layer))
    timed("done", w.sweep.on_done, Outcome(run_id=0, kind="sweep", value=result(exact, "exact")))
    return costs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=3, help="sweeps replayed per tab (the first warms up)")
    args = ap.parse_args(argv)

    from PySide6.QtCore import QSettings

    from patchlab.gui.app import ensure_app, make_window

    app = ensure_app([])
    try:  # as the app does: no collection inside a timed event by another thread
        from patchlab.gui import gc_guard

        gc_guard.install(app)
    except ImportError:  # an older checkout, for comparison
        pass
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        w = make_window(settings=QSettings(str(Path(tmp) / "s.ini"), QSettings.IniFormat),
                        autosave_path=None, restore=False, load_default=False)
        w.quiet = True
        w.resize(1280, 720)
        w.show()
        app.processEvents()
        print(f"{args.layers} layers x {args.tokens} tokens ({args.layers * args.tokens} cells), "
              f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
        print("| tab shown | event | GUI-thread CPU (ms), max over repeats |\n|---|---|---|", flush=True)
        for tab in ("heatmap", "scatter"):
            w.tabs.setCurrentIndex(0 if tab == "heatmap" else w.tabs.indexOf(w.scatter))
            app.processEvents()
            runs = [replay(w, app, args.layers, args.tokens, rng) for _ in range(args.repeats)]
            kept = runs[1:] or runs
            names = [n for n, _ in kept[0]]
            worst = {n: max(r[i][1] for r in kept) for i, n in enumerate(names)}
            for n in names:
                print(f"| {tab} | {n} | {worst[n]:.1f} |", flush=True)
            print(f"| {tab} | **max of any event** | **{max(worst.values()):.1f}** |", flush=True)
        w.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
