"""Benchmark: patchlab's attribution estimate vs TransformerLens's ``attribution_patch``.

On the GPT-2-small shape (random weights from a ``GPT2Config``: 12 layers, 12 heads, d_model
768, vocab 50257; built as ``bench_patching.py`` does) at 16 and 64 tokens, in one process:

- TL: ``transformer_lens.tools.analysis.attribution_patching.attribution_patch`` (one clean
  forward, one corrupted forward + backward, every head/MLP/embedding node at once);
- after: ``patchlab.patch(..., method="attribution")`` per target with the pass cache cleared
  (cold: the one forward + backward runs), and again with the pass cached (a target switch);
- before: the implementation of commit ``BEFORE_REV`` (loaded from git, run on a context
  prepared as that commit's ``iter_patch`` did);
- the window's preview generator ``patchlab.gui.preview.preview_then_exact``: time from the
  call to its first estimate event, with the old engine, with this one, and with the change to
  ``preview.py`` proposed in the attribution report (estimate first, no exact ``prepare``
  before it).

The machine may be shared: every number is the best of ``--repeats`` runs, and the runs of
all methods are interleaved (each repeat times every method once) so that a burst of load
hits them alike. The load average is printed with the table.

Run: ``.venv/bin/python benchmarks/attribution_speed.py [--repeats 5] [--tokens 16,64] [--targets ...]``
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from bench_patching import build_model, machine, make_pair  # noqa: E402

#: The implementation before the one-pass rewrite (the branch point of the attribution work).
BEFORE_REV = "5501e78"


def old_module() -> types.ModuleType | None:
    """``patchlab/engine/attribution.py`` as of ``BEFORE_REV``, or None without git."""
    root = Path(__file__).resolve().parent.parent
    try:
        src = subprocess.run(["git", "show", f"{BEFORE_REV}:patchlab/engine/attribution.py"], cwd=root,
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    mod = types.ModuleType("attribution_before")
    exec(compile(src, "attribution_before.py", "exec"), mod.__dict__)  # noqa: S102 - our own file at a pinned commit
    return mod


#: The clock: wall time, or this process's CPU time (``--clock cpu``, one thread), which a
#: machine shared with other jobs disturbs far less than wall time.
CLOCK = time.perf_counter


def timed(fn, *args) -> float:
    t0 = CLOCK()
    fn(*args)
    return CLOCK() - t0


def tl_tool(model, tp):
    from transformer_lens.tools.analysis.attribution_patching import attribution_patch

    def metric(logits):
        return logits[0, -1, tp.answer_id] - logits[0, -1, tp.wrong_id]

    return attribution_patch(model, tp.clean, tp.corrupted, metric)


def after(model, pair, target):
    from patchlab.engine import attribution_pass

    attribution_pass.clear_cache()
    import patchlab

    return patchlab.patch(model, pair, target=target, metric="logit_diff", method="attribution")


def after_cached(model, pair, target):
    import patchlab

    return patchlab.patch(model, pair, target=target, metric="logit_diff", method="attribution")


def before(old, model, pair, target):
    """As ``iter_patch`` did at BEFORE_REV: prepare with the base caches, then every row."""
    from patchlab.engine.context import as_stop, prepare

    ctx = prepare(model, pair, target=target, metric="logit_diff", direction="denoise", method="attribution",
                  cache_base=True)
    for _ in old.iter_rows(ctx, as_stop(None)):
        pass


def preview_first(model, pair, target, old=None, proposed=False):
    """Seconds from calling the preview generator to its first estimate event."""
    from patchlab.engine import attribution_pass, sweep
    from patchlab.gui import preview

    attribution_pass.clear_cache()
    kw = dict(target=target, metric="logit_diff", direction="denoise")
    t0 = CLOCK()
    if proposed:  # preview.py with the estimate first: attribution prepares its own pass
        gen = sweep.iter_patch(model, pair, method="attribution", **kw)
    elif old is not None:  # the engine of BEFORE_REV behind today's preview generator
        saved = sys.modules["patchlab.engine.attribution"].iter_rows
        sys.modules["patchlab.engine.attribution"].iter_rows = old.iter_rows
        try:
            gen = preview.preview_then_exact(model, pair, **kw)
            event = next(gen)
        finally:
            sys.modules["patchlab.engine.attribution"].iter_rows = saved
        dt = CLOCK() - t0
        gen.close()
        assert event.phase == "estimate"
        return dt
    else:
        gen = preview.preview_then_exact(model, pair, **kw)
    event = next(gen)
    dt = CLOCK() - t0
    gen.close()
    assert event.phase == "estimate"
    return dt


def _keeper(best: dict):
    def keep(key, dt):
        best[key] = min(best.get(key, np.inf), dt)

    return keep


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", default="16,64")
    ap.add_argument("--targets", default=None, help="comma-separated (default: every target)")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="cpu: process CPU time with one torch thread (robust on a busy machine)")
    ap.add_argument("--no-before", action="store_true", help="skip the BEFORE_REV implementation")
    args = ap.parse_args(argv)
    global CLOCK
    if args.clock == "cpu":
        CLOCK, args.threads = time.process_time, 1
    torch.set_num_threads(args.threads)
    import patchlab
    from patchlab.engine import attribution  # noqa: F401 - registers the module for preview_first
    from patchlab.engine.tokens import tokenize_pair

    targets = args.targets.split(",") if args.targets else list(patchlab.TARGETS)
    old = None if args.no_before else old_module()
    load0 = os.getloadavg()
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        model = patchlab.load_model(str(build_model(Path(tmp))), device="cpu")
        for n_tok in (int(t) for t in args.tokens.split(",")):
            pair = make_pair(model, n_tok)
            tp = tokenize_pair(model, pair)
            after(model, pair, "resid_pre")  # warm-up (allocator, bridge)
            tl_tool(model, tp)
            best: dict[tuple[str, str], float] = {}
            keep = _keeper(best)

            for _ in range(args.repeats):
                keep(("tl", ""), timed(tl_tool, model, tp))
                for target in targets:
                    keep(("after", target), timed(after, model, pair, target))
                    keep(("cached", target), timed(after_cached, model, pair, target))
                    if old is not None:
                        keep(("before", target), timed(before, old, model, pair, target))
                keep(("preview_after", ""), preview_first(model, pair, "attn_head_out_by_pos"))
                keep(("preview_proposed", ""), preview_first(model, pair, "attn_head_out_by_pos", proposed=True))
                if old is not None:
                    keep(("preview_before", ""), preview_first(model, pair, "attn_head_out_by_pos", old=old))
                print(f"{n_tok} tokens: repeat done, TL {best['tl', '']:.3f}s", file=sys.stderr, flush=True)
            tl = best["tl", ""]
            for target in targets:
                b = best.get(("before", target))
                a = best["after", target]
                lines.append(f"| `{target}` | {n_tok} | {tl:.3f} | {'n/a' if b is None else f'{b:.3f}'} | {a:.3f} | "
                             f"{best['cached', target] * 1000:.1f} ms | **{tl / a:.2f}x** | "
                             f"{'n/a' if b is None else f'{b / a:.1f}x'} |")
            pb = best.get(("preview_before", ""))
            pa, pp = best["preview_after", ""], best["preview_proposed", ""]
            ratio = "n/a" if pb is None else f"{pb / pa:.1f}x ({pb / pp:.1f}x)"
            lines.append(f"| preview: first estimate event (`attn_head_out_by_pos`) | {n_tok} | | "
                         f"{'n/a' if pb is None else f'{pb:.3f}'} | {pa:.3f} (proposed preview.py: {pp:.3f}) | | | "
                         f"{ratio} |")
    load1 = os.getloadavg()
    head = ("| target | tokens | TL `attribution_patch` (s) | before (s) | after, cold (s) | after, pass cached | "
            "TL / after | before / after |\n|---|---|---|---|---|---|---|---|")
    print(f"Machine: {machine()}. Best of {args.repeats} interleaved runs; load average (1, 5, 15 min) "
          f"{load0[0]:.1f}, {load0[1]:.1f}, {load0[2]:.1f} at the start and {load1[0]:.1f}, {load1[1]:.1f}, "
          f"{load1[2]:.1f} at the end. Clock: {args.clock}. Before = commit {BEFORE_REV}.\n")
    print(head)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
