"""How well attribution patching agrees with exact patching on the embedded models' examples.

For every embedded model with built-in examples, every example and every target, runs the
exact sweep and the attribution estimate (metric ``logit_diff``, denoising) and compares the
per-cell effects (patched value minus the unpatched value) over the cells that move: Pearson
correlation, top-k overlap of the cells with the largest |effect|, and the largest absolute
error relative to the largest exact effect. Prints a markdown table, one row per model and target (median
correlation, mean overlap, median relative error over the examples).

Run: ``.venv/bin/python benchmarks/attribution_agreement.py [--top 5] [--models toy-attn2]``
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch


def compare(exact: np.ndarray, est: np.ndarray, base: float, top: int) -> dict[str, float]:
    """Agreement of two effect maps over the cells that move (either map's |effect| > 1e-6).

    Cells that cannot change anything (e.g. positions before the prompts first differ: both
    maps give exactly 0) would inflate the correlation and fill the top-k with ties, so they
    are left out; with fewer than 3 moving cells the correlation is not reported.
    """
    a, b = exact.ravel() - base, est.ravel() - base
    moving = (np.abs(a) > 1e-6) | (np.abs(b) > 1e-6)
    a, b = a[moving], b[moving]
    corr = float(np.corrcoef(a, b)[0, 1]) if a.size >= 3 and a.std() > 1e-9 and b.std() > 1e-9 else float("nan")
    k = min(top, int((np.abs(a) > 1e-6).sum()))
    overlap = (len(set(np.argsort(-np.abs(a))[:k]) & set(np.argsort(-np.abs(b))[:k])) / k) if k else float("nan")
    scale = max(float(np.abs(a).max()), 1e-9) if a.size else 1.0
    rel = float(np.abs(a - b).max()) / scale if a.size else 0.0
    return {"corr": corr, "overlap": overlap, "rel_err": rel, "moving": float(a.size)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--top", type=int, default=5, help="k of the top-k overlap")
    ap.add_argument("--models", default=None, help="comma-separated embedded models (default: all with examples)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    import patchlab
    from patchlab.core.examples import load_examples
    from patchlab.engine.embedded import list_embedded, load_embedded

    names = args.models.split(",") if args.models else [c["name"] for c in list_embedded()]
    lines = [f"| model | target | examples | moving cells (median) | correlation (median, min, # < 0.5) | "
             f"top-{args.top} overlap (mean) | max error / max effect (median) |", "|---|---|---|---|---|---|---|"]
    t0 = time.perf_counter()
    passes: dict[str, set[str]] = {}  # model -> which attribution pass ran (and why the bridge's)
    for name in names:
        examples = load_examples(name)
        if not examples:
            continue
        model = load_embedded(name)
        for target in patchlab.TARGETS:
            stats = []
            for ex in examples:
                kw = dict(target=target, metric="logit_diff", direction="denoise")
                try:
                    exact = patchlab.patch(model, ex.pair, **kw)
                except patchlab.InputError:
                    break  # not a target of this architecture (e.g. mlp_out of attention-only)
                est = patchlab.patch(model, ex.pair, method="attribution", **kw)
                info = est.meta["estimate"]
                passes.setdefault(name, set()).add(info.get("pass", "?") + (
                    f" ({info['fallback_reason']})" if info.get("fallback_reason") else ""))
                if np.isnan(exact.values).any() or np.isnan(est.values).any():
                    continue  # e.g. resid_mid of an attention-only model: not a patchable cell
                base = float(exact.meta["runs"]["corrupted"]["logit_diff"])
                stats.append(compare(exact.values, est.values, base, args.top))
            if not stats:
                continue
            corr = np.array([st["corr"] for st in stats])
            ok = corr[~np.isnan(corr)]
            c = f"{np.median(ok):.3f} ({ok.min():.2f}, {int((ok < 0.5).sum())})" if ok.size else "n/a"
            over = np.array([st["overlap"] for st in stats])
            over = over[~np.isnan(over)]
            lines.append(f"| {name} | `{target}` | {len(stats)} | {np.median([st['moving'] for st in stats]):.0f} | {c} | "
                         f"{over.mean() if over.size else float('nan'):.2f} | "
                         f"{np.median([st['rel_err'] for st in stats]):.2f} |")
            print(lines[-1], file=sys.stderr, flush=True)
    print(f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    print("\n".join(lines))
    print("\nAttribution pass per model: " + "; ".join(f"{m}: {', '.join(sorted(p))}" for m, p in passes.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
