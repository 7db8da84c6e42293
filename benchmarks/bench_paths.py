"""Benchmark: patchlab path patching and the neuron screen vs TransformerLens, same run.

GPT-2-small shape (12 layers, 12 heads, d_model 768, d_mlp 3072, vocab 50257, random weights),
16-token prompts from ``bench_patching.make_pair``. TransformerLens's
``get_act_patch_direct_path_all_sources`` runs one forward pass per (sender, later head): 9,504
passes for q; it is timed on sampled senders with ``get_act_patch_direct_path`` (the function
``_all_sources`` loops over) and extrapolated per pass unless ``--full``. patchlab runs every
sender (``path_patch(model, pair, "heads", "q")``) in full, and the same sampled senders.
The neuron screen (``neurons``, one 3072-neuron layer, exact top 50) is timed end to end.

Run: ``.venv/bin/python benchmarks/bench_paths.py [--threads 2] [--full] [--device cpu]``
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from bench_patching import build_model, make_pair  # noqa: E402

SAMPLE_SENDERS = [(0, 0), (5, 3), (10, 7)]


def best(fn, repeats: int = 1):
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--full", action="store_true", help="run TransformerLens's all-sources loop in full")
    ap.add_argument("--tokens", type=int, default=16)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    import transformer_lens.patching as tlp

    import patchlab
    from patchlab.engine.neurons import neurons
    from patchlab.engine.paths import path_patch
    from patchlab.engine.tokens import tokenize_pairs

    folder = Path(tempfile.mkdtemp()) / "gpt2-small-shape"
    build_model(folder)
    model = patchlab.load_model(str(folder), device=args.device)
    pair = make_pair(model, args.tokens)
    tp = tokenize_pairs(model, [pair])[0]
    dev = tp.clean.device
    print(f"# {platform.processor() or platform.machine()}, torch threads {args.threads}, device {args.device}, "
          f"{tp.n_pos} tokens, load {os.getloadavg()[0]:.1f}", file=sys.stderr)
    with torch.no_grad():
        _, sc = model.run_with_cache(tp.clean)
        _, bc = model.run_with_cache(tp.corrupted)

    def metric(logits):
        return logits[0, -1, tp.answer_id] - logits[0, -1, tp.wrong_id]

    rows = []
    # same cells: one sender into every later head's q
    tl_pass = []
    worst = 0.0
    for sl, sh in SAMPLE_SENDERS:
        with torch.no_grad():
            t_tl, ref = best(lambda sl=sl, sh=sh: tlp.get_act_patch_direct_path(
                model, tp.corrupted, sc, bc, metric, sl, sh, "q", verbose=False))
        t_pl, res = best(lambda sl=sl, sh=sh: path_patch(model, pair, (sl, sh), "q", metric="logit_diff"), 2)
        n_pass = (model.cfg.n_layers - sl - 1) * model.cfg.n_heads
        tl_pass.append(t_tl / n_pass)
        err = float(np.nanmax(np.abs(res.values[sl + 1 :] - ref.double().cpu().numpy()[sl + 1 :])))
        worst = max(worst, err)
        rows.append((f"L{sl}H{sh} -> q ({n_pass} receivers)", t_tl, t_pl, err))
    per_pass = float(np.median(tl_pass))
    n_all = sum((model.cfg.n_layers - sl - 1) * model.cfg.n_heads for sl in range(model.cfg.n_layers)) * model.cfg.n_heads
    t_pl, res = best(lambda: path_patch(model, pair, "heads", "q", metric="logit_diff"))
    if args.full:
        with torch.no_grad():
            t_tl, ref = best(lambda: tlp.get_act_patch_direct_path_all_sources(
                model, tp.corrupted, sc, bc, metric, "q", verbose=False))
        label = f"all heads -> q ({n_all} paths, TL full)"
    else:
        t_tl = per_pass * n_all
        label = f"all heads -> q ({n_all} paths, TL extrapolated from {per_pass * 1000:.0f} ms/pass)"
    rows.append((label, t_tl, t_pl, float("nan")))
    t_n, nres = best(lambda: neurons(model, pair, 6, k=50, metric="logit_diff"), 2)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    print(f"\n| path patching, GPT-2-small shape, {tp.n_pos} tokens | TransformerLens | patchlab | speed-up | max abs diff |")
    print("|---|---|---|---|---|")
    for label, a, b, err in rows:
        e = "" if np.isnan(err) else f"{err:.1e}"
        print(f"| {label} | {a:.1f} s | {b:.2f} s | {a / b:.0f}x | {e} |")
    print(f"\nneuron screen, layer 6 ({nres.d_mlp} neurons, estimate all + exact top 50): {t_n:.2f} s end to end "
          f"(includes tokenising and the clean/corrupted runs)")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
