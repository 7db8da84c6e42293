"""Instant preview: attribution estimate first, exact rows after, in ONE worker generator.

No Qt here (it runs on the worker thread). The GUI side gets plain events:
:class:`~patchlab.engine.sweep.SweepEvent` (``phase`` "estimate" or "exact"),
:class:`PreviewReady` (the finished estimate result) and :class:`PreviewFailed`. Also the
pure helpers the views use: merging estimate and exact rows, agreement statistics, the
comparison CSV and an ETA from the exact phase's measured rate.
"""

from __future__ import annotations

import csv
import io
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from patchlab.core.errors import Cancelled, InputError, TargetUnavailableError


@dataclass
class PreviewReady:
    """The attribution estimate is complete (``result`` is the receiver's to keep)."""

    result: Any  # PatchResult with meta["method"] == "attribution"
    elapsed: float


@dataclass
class PreviewFailed:
    """The attribution pass failed for this model; the exact sweep runs anyway."""

    message: str


def preview_then_exact(model, pairs, *, target: str, metric: str, direction: str,
                       stop=None, preview: bool = True, keep_on_error: bool = False):
    """Yield the attribution estimate's events, then the exact sweep's; return the exact result.

    When stopped during the preview, no exact pass runs and the (complete) estimate is
    returned with ``meta["cancelled"] = True`` and ``meta["preview_only"] = True``.
    """
    from patchlab.engine import sweep  # module attribute: tests may wrap iter_patch
    from patchlab.engine.context import as_stop

    stopped = as_stop(stop)
    spec = dict(target=target, metric=metric, direction=direction, stop=stop)
    estimate = None
    if preview:
        # the estimate first, from its own single pass: preparing the exact sweep's caches
        # before it (both prompts through the bridge) doubled the time to the first row
        t0 = time.perf_counter()
        try:
            estimate = yield from sweep.iter_patch(model, pairs, method="attribution", **spec)
        except Cancelled:
            estimate = None
        except InputError as exc:
            if not isinstance(exc, TargetUnavailableError):
                raise  # bad pairs or settings: the exact sweep would refuse them too, say so at once
            yield PreviewFailed(f"{type(exc).__name__}: {exc}")
            estimate = None
        except Exception as exc:  # any model the estimate cannot handle: skip the preview
            yield PreviewFailed(f"{type(exc).__name__}: {exc}")
            estimate = None
        if estimate is not None and not estimate.meta.get("cancelled"):
            yield PreviewReady(estimate, time.perf_counter() - t0)
        if stopped():
            if estimate is None:
                raise Cancelled("cancelled")
            estimate.meta["cancelled"] = True
            estimate.meta["preview_only"] = True
            return estimate
    return (yield from sweep.iter_patch(model, pairs, method="exact", keep_on_error=keep_on_error, **spec))


# -- main-thread helpers (pure numpy) ------------------------------------------------------
def merge_rows(estimate: np.ndarray, exact: np.ndarray, rows: set[int]) -> np.ndarray:
    """Estimate values with the finished exact layer ``rows`` written over them (a new array)."""
    out = np.array(estimate, dtype=np.float64, copy=True)
    if rows:
        idx = sorted(rows)
        out[idx] = exact[idx]
    return out


def agreement(estimate: np.ndarray, exact: np.ndarray, k: int = 10, centre: float = 0.0) -> dict[str, Any]:
    """Pearson r and top-``k`` agreement over cells where both are finite.

    Cells are ranked by the size of their change ``|value - centre|``; ``centre`` is the
    metric's no-effect value (:attr:`PatchResult.no_effect`: 0 for
    ``logit_diff_recovered``, the unpatched run's value for the raw metrics), so the ranking
    is by the patch's effect, not by the base run's level.
    """
    centre = float(centre) if np.isfinite(centre) else 0.0
    e, x = np.asarray(estimate, float).ravel(), np.asarray(exact, float).ravel()
    both = np.isfinite(e) & np.isfinite(x)
    n = int(both.sum())
    out: dict[str, Any] = {"n": n, "r": float("nan"), "k": min(k, n), "top_k": 0}
    if n == 0:
        return out
    e, x = e[both], x[both]
    if n > 1 and e.std() > 0 and x.std() > 0:
        out["r"] = float(np.corrcoef(e, x)[0, 1])
    kk = out["k"]
    top_e = set(np.argsort(-np.abs(e - centre), kind="stable")[:kk].tolist())
    top_x = set(np.argsort(-np.abs(x - centre), kind="stable")[:kk].tolist())
    out["top_k"] = len(top_e & top_x)
    return out


def agreement_text(stats: dict[str, Any]) -> str:
    r = stats["r"]
    r_text = f"r = {r:.3f}" if np.isfinite(r) else "r = n/a"
    return f"Pearson {r_text} \u00b7 top-{stats['k']} agreement {stats['top_k']}/{stats['k']}"


def cell_labels(result) -> list[str]:
    """Labels of every cell of ``result`` in C order (for hover text)."""
    return [result.cell_label(ix) for ix in itertools.product(*(range(n) for n in result.shape))]


def comparison_csv(estimate, exact) -> str:
    """Tidy CSV: one row per cell, axis indices and labels, the estimate and the exact value."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    header: list[str] = []
    for axis in exact.axes:
        header += [axis, f"{axis}_label"]
    metric = exact.metric or "value"
    writer.writerow([*header, f"estimate_{metric}", f"exact_{metric}"])
    for index in itertools.product(*(range(n) for n in exact.shape)):
        row: list[Any] = []
        for axis, i in zip(exact.axes, index):
            row += [i, exact.head_label(index[0], i) if axis == "head" else exact.labels[axis][i]]
        for arr in (estimate.values, exact.values):
            v = arr[index]
            row.append(repr(float(v)) if np.isfinite(v) else "")
        writer.writerow(row)
    return out.getvalue()


@dataclass
class ExactEta:
    """ETA from the exact phase's own measured row times (the preview is not counted).

    Rows arrive in layer order, and on the fast path a row costs less the later its layer
    (it starts at the patched layer): a straight line is fitted to the measured row times
    against the layer and summed over the layers still to come. The first row carries the
    set-up (both prompts run) and is left out of the fit; until two other rows are in, the
    average rate since the start is used.
    """

    points: list[tuple[float, int, int | None]] = field(default_factory=list)  # (elapsed, done, layer)

    def add(self, done: int, elapsed: float, layer: int | None = None) -> None:
        self.points.append((float(elapsed), int(done), layer))

    def rate(self) -> float | None:
        """Average cells per second since the exact phase started."""
        if not self.points or self.points[-1][0] <= 0:
            return None
        return self.points[-1][1] / self.points[-1][0]

    def eta(self, total: int, n_rows: int | None = None) -> float | None:
        """Seconds left for ``total`` cells in ``n_rows`` layer rows; None before any row."""
        if not self.points:
            return None
        t_last, done, last_layer = self.points[-1]
        if done >= total:
            return 0.0
        rows = [(self.points[i][2], self.points[i][0] - self.points[i - 1][0])
                for i in range(1, len(self.points))]
        if n_rows and last_layer is not None and len(rows) >= 2 and all(r[0] is not None for r in rows):
            layers = np.array([r[0] for r in rows], float)
            secs = np.array([r[1] for r in rows], float)
            if np.ptp(layers) > 0:
                slope, icpt = np.polyfit(layers, secs, 1)
                left = np.arange(last_layer + 1, n_rows, dtype=float)
                floor = 0.1 * float(secs.mean())
                return float(np.maximum(icpt + slope * left, floor).sum())
        rate = self.rate()
        return None if rate is None else (total - done) / rate
