"""How well attribution patching agrees with exact patching on the embedded models' examples.

For every embedded model with built-in examples, every example and every target, runs the
exact sweep and the attribution estimate (metric ``logit_diff``, denoising) and compares the
per-cell effects (patched value minus the unpatched value): Pearson correlation, top-k
overlap of the cells with the largest |effect|, and the largest absolute error relative to
the largest exact effect. Prints a markdown table, one row per model and target (median
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
    """Agreement of two effect maps (values of the same cells, NaN-free)."""
    a, b = exact.ravel() - base, est.ravel() - base
    # a constant map (no cell moves the metric) has no correlation to speak of
    corr = float(np.corrcoef(a, b)[0, 1]) if a.std() > 1e-9 and b.std() > 1e-9 else float("nan")
    k = min(top, a.size)
    overlap = len(set(np.argsort(-np.abs(a))[:k]) & set(np.argsort(-np.abs(b))[:k])) / k
    scale = max(float(np.abs(a).max()), 1e-9)
    return {"corr": corr, "overlap": overlap, "rel_err": float(np.abs(a - b).max()) / scale}


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
    lines = [f"| model | target | examples | correlation (median, min) | top-{args.top} overlap (mean) | "
             "max error / max effect (median) |", "|---|---|---|---|---|---|"]
    t0 = time.perf_counter()
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
                if np.isnan(exact.values).any() or np.isnan(est.values).any():
                    continue  # e.g. resid_mid of an attention-only model: not a patchable cell
                base = float(exact.meta["runs"]["corrupted"]["logit_diff"])
                stats.append(compare(exact.values, est.values, base, args.top))
            if not stats:
                continue
            corr = np.array([s["corr"] for s in stats])
            ok = corr[~np.isnan(corr)]
            c = f"{np.median(ok):.3f} ({ok.min():.2f})" if ok.size else "n/a (no effect)"
            lines.append(f"| {name} | `{target}` | {len(stats)} | {c} | "
                         f"{np.mean([s['overlap'] for s in stats]):.2f} | "
                         f"{np.median([s['rel_err'] for s in stats]):.2f} |")
            print(lines[-1], file=sys.stderr, flush=True)
    print(f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
