"""Per-cell statistics of a result over its pairs (worker side: numpy only, no Qt).

:func:`stats_job` computes everything the window shows at once (CI, p, q, the significance
mask) with the result's own methods, so the map, the ranked table and the per-pair view agree.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05


@dataclass
class CellStats:
    """Arrays shaped like ``result.values``; ``alpha`` is the false discovery rate used."""

    stderr: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    p: np.ndarray
    q: np.ndarray
    significant: np.ndarray
    n_pairs: int
    alpha: float = ALPHA


def stats_job(result, alpha: float = ALPHA, n_resamples: int = 1000, seed: int = 0) -> CellStats:
    """CI (percentile bootstrap over pairs), sign-flip p, BH q and the mask of one result.

    Uses ``PatchResult.cell_stats``; a statistic the result cannot give (no per-pair
    baselines in an old record) is NaN, and no cell is called significant.
    """
    cols = result.cell_stats(0.95, n_resamples=n_resamples, n_permutations=n_resamples, seed=seed)
    nan = np.full(result.shape, np.nan)
    q = cols.get("q", nan)
    with np.errstate(invalid="ignore"):
        sig = np.isfinite(q) & (q <= alpha)
    return CellStats(cols.get("stderr", nan), cols.get("ci_low", nan), cols.get("ci_high", nan),
                     cols.get("p", nan), q, sig, result.n_pairs, alpha)


def ranked_cells(result, st: CellStats, k: int = 20) -> list[tuple[tuple[int, ...], float]]:
    """The ``k`` cells farthest from the no-effect value (finite cells only)."""
    base = result.no_effect
    base = 0.0 if not np.isfinite(base) else base
    dist = np.abs(np.where(np.isfinite(result.values), result.values - base, -np.inf))
    flat = np.argsort(-dist, axis=None, kind="stable")[:k]
    return [(tuple(int(i) for i in np.unravel_index(f, result.shape)), float(result.values.flat[f]))
            for f in flat if np.isfinite(dist.flat[f])]


def top_cells_csv(result, st: CellStats, k: int = 20) -> str:
    """The ranked table as CSV: rank, cell, value, ci_low, ci_high, p, q, significant."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["rank", *result.axes, "cell", result.metric or "value", "ci_low", "ci_high", "p", "q",
                "significant"])
    for rank, (ix, v) in enumerate(ranked_cells(result, st, k), 1):
        w.writerow([rank, *ix, result.cell_label(ix), repr(v), repr(float(st.ci_low[ix])),
                    repr(float(st.ci_high[ix])), repr(float(st.p[ix])), repr(float(st.q[ix])),
                    bool(st.significant[ix])])
    return out.getvalue()
