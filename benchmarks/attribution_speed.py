"""Benchmark: patchlab's attribution estimate vs TransformerLens's ``attribution_patch``.

On the GPT-2-small shape (random weights from a ``GPT2Config``: 12 layers, 12 heads, d_model
768, vocab 50257; built as ``bench_patching.py`` does) at 16 and 64 tokens, in one process,
one row per target family printed as soon as it is measured:

- TL: ``transformer_lens.tools.analysis.attribution_patching.attribution_patch`` (one clean
  forward, one corrupted forward + backward, every head/MLP/embedding node at once);
- bridge pass: ``patchlab.patch(..., method="attribution")`` with the plain-torch pass switched
  off (``attribution_pass.FAST = False``): the previous implementation, one forward + backward
  through the bridge's hooks;
- fast, cold: the same call with the plain-torch pass and the estimate cache cleared (its
  once-per-model-and-length self-check against the bridge already done: that first use is
  its own row);
- fast, cached: again with the pass cached (a target switch).

Then the window's preview: time from the call of ``patchlab.gui.preview.preview_then_exact``
(the generator the window's worker runs) to its first estimate event, with today's
``preview.py`` and as the previous one did (the exact sweep's ``prepare`` first); with
``--window``, also from clicking Run in the real main window (off screen) to the first
estimate row arriving in it.

The machine may be shared: every number is the best of ``--repeats`` runs, interleaved (each
repeat times every method once) so that a burst of load hits them alike.

Run: ``.venv/bin/python benchmarks/attribution_speed.py [--repeats 3] [--tokens 16,64] [--targets ...] [--window]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

import torch  # noqa: E402
from bench_patching import build_model, machine, make_pair  # noqa: E402

#: The clock: wall time, or this process's CPU time (``--clock cpu``, one thread), which a
#: machine shared with other jobs disturbs far less than wall time.
CLOCK = time.perf_counter
PREVIEW_TARGET = "attn_head_out_by_pos"


def timed(fn, *args) -> float:
    t0 = CLOCK()
    fn(*args)
    return CLOCK() - t0


def tl_tool(model, tp):
    from transformer_lens.tools.analysis.attribution_patching import attribution_patch

    def metric(logits):
        return logits[0, -1, tp.answer_id] - logits[0, -1, tp.wrong_id]

    return attribution_patch(model, tp.clean, tp.corrupted, metric)


def estimate(model, pair, target, fast=True, cold=True, first_use=False):
    import patchlab
    from patchlab.engine import attribution_fast, attribution_pass

    attribution_pass.FAST = fast
    if cold:
        attribution_pass.clear_cache()
    if first_use:
        attribution_fast.clear_checks()
    try:
        r = patchlab.patch(model, pair, target=target, metric="logit_diff", method="attribution")
    finally:
        attribution_pass.FAST = True
    want = "fast-torch" if fast else "bridge-hooks"
    assert r.meta["estimate"]["pass"] == want, r.meta["estimate"]
    return r


def preview_first(model, pair, target, old=False):
    """Seconds from calling the preview generator to its first estimate event.

    ``old``: as the previous ``preview.py`` did, the exact sweep's ``prepare`` (both prompts
    through the bridge, with caches) before the estimate.
    """
    from patchlab.engine import attribution_pass, sweep
    from patchlab.engine.context import prepare
    from patchlab.gui import preview

    attribution_pass.clear_cache()
    kw = dict(target=target, metric="logit_diff", direction="denoise")
    t0 = CLOCK()
    if old:
        ctx = prepare(model, pair, method="exact", cache_base=True, **kw)
        gen = sweep.iter_patch(model, pair, method="attribution", context=ctx, **kw)
    else:
        gen = preview.preview_then_exact(model, pair, **kw)
    event = next(gen)
    dt = CLOCK() - t0
    gen.close()
    assert event.phase == "estimate"
    return dt


def window_first_rows(folder: Path, pair, repeats: int) -> float:
    """Best seconds from clicking Run in the off-screen main window to its first estimate row."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from soak import WindowRunner

    from patchlab.engine import attribution_pass

    with tempfile.TemporaryDirectory() as tmp:
        runner = WindowRunner(Path(tmp))
        runner.load(str(folder), pair)
        w = runner.w
        w.experiment.set_settings({"target": PREVIEW_TARGET, "metric": "logit_diff_recovered",
                                   "direction": "denoise", "method": "exact"})
        w.experiment.preview.setChecked(True)
        best = float("inf")
        for i in range(repeats + 1):  # the first run warms the window's model up (self-check included)
            attribution_pass.clear_cache()
            t0 = time.perf_counter()
            assert w.run(), "the window refused to run"
            runner.wait(lambda: w.sweep.live.estimate_values is not None or bool(w.last_error))
            dt = time.perf_counter() - t0
            assert not w.last_error, w.last_error
            w.cancel()
            runner.wait(w.controller.is_idle)
            if i:
                best = min(best, dt)
        runner.close()
    return best


def row(cells) -> None:
    print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", default="16,64")
    ap.add_argument("--targets", default=None, help="comma-separated (default: every target)")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="cpu: process CPU time with one torch thread (robust on a busy machine)")
    ap.add_argument("--window", action="store_true", help="also time Run -> first estimate row in the window")
    args = ap.parse_args(argv)
    global CLOCK
    if args.clock == "cpu":
        CLOCK, args.threads = time.process_time, 1
    torch.set_num_threads(args.threads)
    import patchlab
    from patchlab.engine.tokens import tokenize_pair

    targets = args.targets.split(",") if args.targets else list(patchlab.TARGETS)
    load0 = os.getloadavg()
    print(f"Machine: {machine()}. Best of {args.repeats} interleaved runs; load average (1, 5, 15 min) "
          f"{load0[0]:.1f}, {load0[1]:.1f}, {load0[2]:.1f} at the start. Clock: {args.clock}, "
          f"{args.threads} torch thread(s).\n", flush=True)
    row(["target", "tokens", "TL `attribution_patch` (s)", "bridge pass (s)", "fast, cold (s)",
         "fast, pass cached", "TL / fast", "bridge / fast"])
    print("|---|---|---|---|---|---|---|---|", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_model(Path(tmp) / "gpt2-small-shape")
        model = patchlab.load_model(str(folder), device="cpu")
        pairs = {}
        for n_tok in (int(t) for t in args.tokens.split(",")):
            pair = pairs[n_tok] = make_pair(model, n_tok)
            tp = tokenize_pair(model, pair)
            first = min(timed(estimate, model, pair, "resid_pre", True, True, True) for _ in range(args.repeats))
            estimate(model, pair, "resid_pre", False)  # warm-up (allocator, bridge)
            tl_tool(model, tp)
            for target in targets:
                best = {}
                for _ in range(args.repeats):
                    for key, fn, a in (("tl", tl_tool, (model, tp)),
                                       ("bridge", estimate, (model, pair, target, False)),
                                       ("fast", estimate, (model, pair, target)),
                                       ("cached", estimate, (model, pair, target, True, False))):
                        best[key] = min(best.get(key, float("inf")), timed(fn, *a))
                row([f"`{target}`", n_tok, f"{best['tl']:.3f}", f"{best['bridge']:.3f}", f"{best['fast']:.3f}",
                     f"{best['cached'] * 1000:.1f} ms", f"**{best['tl'] / best['fast']:.2f}x**",
                     f"{best['bridge'] / best['fast']:.2f}x"])
            row(["first use on the model at this length (self-check against the bridge included), `resid_pre`",
                 n_tok, "", "", f"{first:.3f}", "", "", ""])
            new = old = float("inf")
            for _ in range(args.repeats):
                new = min(new, preview_first(model, pair, PREVIEW_TARGET))
                old = min(old, preview_first(model, pair, PREVIEW_TARGET, old=True))
            row([f"preview generator: call to first estimate event (`{PREVIEW_TARGET}`)", n_tok, "",
                 f"{old:.3f} (exact prepare first)", f"{new:.3f}", "", "", f"{old / new:.2f}x"])
        del model
        if args.window:
            for n_tok, pair in pairs.items():
                dt = window_first_rows(folder, pair, args.repeats)
                row([f"window: Run to first estimate row (`{PREVIEW_TARGET}`, wall clock)", n_tok, "", "",
                     f"{dt:.3f}", "", "", ""])
    load1 = os.getloadavg()
    print(f"\nLoad average at the end: {load1[0]:.1f}, {load1[1]:.1f}, {load1[2]:.1f}.", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
