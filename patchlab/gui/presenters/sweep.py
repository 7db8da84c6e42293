"""Sweep presenter: worker events -> state -> heatmap, scatter and progress.

Owns the live bookkeeping of the run on screen (:class:`LiveSweep`: the estimate shown while
exact rows arrive, the finished exact rows, the ETA) and redraws the heatmap and the scatter
whenever the result or the pair choice in the state changes. Views are only called through
their setters; nothing here reads a widget.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from patchlab.core.metrics import METRICS
from patchlab.core.targets import TARGETS
from patchlab.gui.jobs import Outcome, Status
from patchlab.gui.pair_jobs import shared_tokens
from patchlab.gui.preview import ExactEta, PreviewFailed, PreviewReady, merge_rows
from patchlab.gui.state import AppState, RunSpec, Scope
from patchlab.gui.views.heatmap import HeatmapView

#: Second title line while hatched rows still show the attribution estimate.
LIVE_NOTE = ("<br><i>hatched rows: estimate (attribution patching), exact values "
             "arriving\u2026</i>")


@dataclass
class LiveSweep:
    """Bookkeeping of the sweep in flight (reset at each Run)."""

    estimate_values: np.ndarray | None = None
    exact_rows: set[int] = field(default_factory=set)
    eta: ExactEta = field(default_factory=ExactEta)
    preview_s: float | None = None
    running: bool = False


def scoped_values(result, scope: Scope) -> np.ndarray:
    """The values a panel with ``scope`` shows: the mean, or one pair's row of ``per_pair``."""
    per_pair = getattr(result, "per_pair", None)
    if scope.is_mean or per_pair is None or per_pair.ndim == 0 or per_pair.shape[0] != scope.n_pairs:
        return result.values
    return per_pair[scope.index]


def position_labels(spec: RunSpec | None, scope: Scope, fallback: list[str] | None) -> list[str] | None:
    """Position labels for ``scope``: the pair's tokens, or per position the shared token."""
    if spec is None or not spec.tokens or len(spec.tokens) != scope.n_pairs:
        return fallback
    if scope.is_mean:
        clean = shared_tokens([list(t[0]) for t in spec.tokens])
        corrupted = shared_tokens([list(t[1]) for t in spec.tokens])
    else:
        clean, corrupted = (list(t) for t in spec.tokens[scope.index])
    return [a if a == b else f"{a}/{b}" for a, b in zip(clean, corrupted)]


class SweepPresenter:
    """Turns the "sweep" job's events and outcome into state changes and view calls.

    Parameters
    ----------
    state : AppState
    heatmap, scatter, experiment : views
    notify : callable(text, timeout_ms)
        Shows a short message (the status bar).
    on_error : callable(text)
        Records a failure (the window's ``last_error``).
    """

    def __init__(self, state: AppState, heatmap: HeatmapView, scatter, experiment,
                 notify: Callable[[str, int], None], on_error: Callable[[str], None]) -> None:
        self.state = state
        self.heatmap = heatmap
        self.scatter = scatter
        self.experiment = experiment
        self.notify = notify
        self.on_error = on_error
        self.live = LiveSweep()
        state.resultChanged.connect(self.show_result)
        state.scopeChanged.connect(self.show_result)

    # -- titles ---------------------------------------------------------------------------
    def title(self, scope: Scope | None = None) -> str:
        spec = self.state.run_spec
        if spec is None:
            return ""
        scope = scope or self.state.scope()
        return HeatmapView.make_title(spec.model, TARGETS[spec.target].label, spec.direction,
                                      METRICS[spec.metric].split(" (")[0], scope.text())

    def _labels(self, shape, scope: Scope) -> dict[str, list[str]]:
        spec = self.state.run_spec
        axes = TARGETS[spec.target].axes
        labels = {"layer": [f"L{i}" for i in range(shape[0])]}
        pos = position_labels(spec, scope, None)
        if pos is not None and "pos" in axes:
            labels["pos"] = pos
        if "head" in axes:
            labels["head"] = [f"H{h}" for h in range(shape[axes.index("head")])]
        return labels

    # -- run ------------------------------------------------------------------------------
    def start(self, spec: RunSpec) -> None:
        """A new run was submitted: reset the display and the bookkeeping."""
        self.live = LiveSweep(running=True)
        self.state.start_run(spec)
        self.heatmap.clear()
        self.scatter.clear()
        self.experiment.set_running(True)
        self.experiment.clear_error()
        self.experiment.set_progress(0, 1, 0.0)
        self.experiment.set_status("Preparing: running both prompts\u2026")

    def _live_scope(self) -> Scope:
        # rows stream as means over the pairs; one pair's rows exist only in the result
        return Scope(self.state.run_spec.n_pairs)

    def _show_live(self, values, suffix: str) -> None:
        spec = self.state.run_spec
        scope = self._live_scope()
        want = self.state.scope()
        note = "" if want == scope else f" (while running; {want.text()} when done)"
        self.heatmap.set_data(values, TARGETS[spec.target].axes, self._labels(values.shape, scope),
                              metric=spec.metric, title=self.title(scope) + note + suffix,
                              centre=self._centre(self.state.estimate))

    def on_progress(self, event: Any) -> None:
        """Handler of the "sweep" job's events (registered with the controller)."""
        if self.state.run_spec is None:
            return
        if isinstance(event, PreviewReady):
            self.live.preview_s = event.elapsed
            self.state.set_estimate(event.result)
            self._update_scatter(None)
        elif isinstance(event, PreviewFailed):
            self.notify(f"No preview: attribution patching failed for this model ({event.message}); "
                        "exact values follow.", 15000)
        elif event.phase == "estimate":
            self._on_estimate_row(event)
        else:
            self._on_exact_row(event)

    def _on_estimate_row(self, event) -> None:
        self.live.estimate_values = event.values
        if self.state.run_spec.preview:
            self.heatmap.set_estimate_rows(range(event.values.shape[0]))
            self._show_live(event.values, LIVE_NOTE)
            self.experiment.set_progress(0, event.total, 0.0, note="Estimate shown \u00b7 exact: ")
            self.experiment.set_status(f"Estimate (attribution patching) in {event.elapsed:.2f} s; "
                                       f"exact values arriving\u2026")
        else:  # the user asked for the attribution method itself
            self._show_live(event.values, " \u00b7 attribution estimate")
            self.experiment.set_progress(event.done, event.total, event.elapsed)

    def _on_exact_row(self, event) -> None:
        live = self.live
        live.exact_rows.add(event.layer)
        live.eta.add(event.done, event.elapsed, event.layer)
        est = live.estimate_values
        n_rows = event.values.shape[0]
        if est is not None and est.shape == event.values.shape and len(live.exact_rows) < n_rows:
            shown = merge_rows(est, event.values, live.exact_rows)
            self.heatmap.set_estimate_rows(set(range(n_rows)) - live.exact_rows)
            suffix = LIVE_NOTE  # the same text as in the preview: no relayout per row
        else:
            shown = event.values
            self.heatmap.set_estimate_rows(())
            suffix = ""
        self._show_live(shown, suffix)
        self.experiment.set_progress(event.done, event.total, event.elapsed,
                                     eta=live.eta.eta(event.total, n_rows))
        self._update_scatter(event.values, live=True)

    def _update_scatter(self, exact, live: bool = False) -> None:
        est = self.state.estimate
        spec = self.state.run_spec
        if est is None or spec is None:
            return
        scope = self._live_scope() if live else self.state.scope()
        # labels are made per hovered point (a list of 6144 labels stalled the GUI thread)
        self.scatter.set_data(scoped_values(est, scope), exact, est.cell_label,
                              METRICS[spec.metric].split(" (")[0],
                              f"{spec.model} \u00b7 {TARGETS[spec.target].label} \u00b7 {scope.text()}",
                              centre=self._centre(self.state.result or est, scope))

    def on_done(self, out: Outcome) -> None:
        """Handler of the "sweep" job's end (registered with the controller)."""
        self.live.running = False
        self.experiment.set_running(False)
        self.heatmap.set_estimate_rows(())
        if out.status is Status.CANCELLED:  # stopped before anything was computed
            self.experiment.set_status("Cancelled.")
            return
        if out.status is Status.ERROR:
            self.experiment.set_error(f"Run failed: {out.error}", out.details)
            self.notify("Run failed (see the experiment panel).", 10000)
            self.on_error(out.error or "run failed")
            if self.state.result is None and self.state.estimate is not None:
                self.state.set_result(self.state.estimate)  # the estimate shown stays usable
            return
        r = out.value
        self.state.set_result(r)  # draws through show_result
        done = int(np.isfinite(r.values).sum())
        if r.meta.get("partial"):  # an error after some rows: they are kept and exportable
            self.experiment.set_error(
                f"Run failed after {done}/{r.values.size} cells: {r.meta.get('error')}. The finished "
                "rows are kept (marked partial in exports); other cells are blank.",
                r.meta.get("error_details", ""))
            self.notify("Run failed part-way; finished rows kept (see the experiment panel).", 10000)
            self.on_error(str(r.meta.get("error")))
        elif r.meta.get("preview_only"):
            self.experiment.set_status("Cancelled during the preview: the heatmap shows the "
                                       "attribution estimate; no exact cells.")
        elif r.meta.get("cancelled"):
            self.experiment.set_status(f"Cancelled: {done}/{r.values.size} cells kept.")
        else:
            self.experiment.set_progress(r.values.size, r.values.size, r.meta.get("elapsed_s", 0.0))
            ps = self.live.preview_s if self.state.estimate is not None else None
            preview = f"; estimate shown after {ps:.2f} s" if ps is not None else ""
            self.experiment.set_status(
                f"Done: {r.values.size} cells in {r.meta.get('elapsed_s', 0):.2f} s "
                f"({r.meta.get('engine_path', '')} engine{preview}). Click a cell for its patched run.")

    @staticmethod
    def _centre(result, scope: Scope | None = None) -> float:
        """The no-effect value of ``result`` (0 when unknown): white in the colour map.

        For one pair of several, that pair's own unpatched run (``meta["runs"][run]["per_pair"]``).
        """
        if result is None:
            return 0.0
        value = result.no_effect
        if scope is not None and not scope.is_mean and result.metric != "logit_diff_recovered":
            from patchlab.core.metrics import no_effect_value

            try:
                runs = {name: {q: v[scope.index] for q, v in run.get("per_pair", {}).items()}
                        for name, run in result.meta.get("runs", {}).items()}
                value = no_effect_value(result.metric, result.direction, runs)
            except Exception:  # noqa: BLE001 - a record without per-pair baselines: the mean's
                value = result.no_effect
        return float(value) if np.isfinite(value) else 0.0

    # -- the finished result, for the state's pair choice ---------------------------------
    def show_result(self) -> None:
        """Draw the state's result (and scatter) for the state's pair choice."""
        r = self.state.result
        if r is None or self.live.running:
            return
        scope = self.state.scope(self.state.run_spec.n_pairs if self.state.run_spec else None)
        values = scoped_values(r, scope)
        labels = dict(r.labels)
        if "pos" in r.axes:
            labels["pos"] = position_labels(self.state.run_spec, scope, labels.get("pos"))
        self.heatmap.set_data(values, r.axes, labels, metric=r.metric, title=self.title(scope),
                              centre=self._centre(r, scope))
        self.heatmap.flush()
        if self.state.estimate is not None:
            exact = scoped_values(r, scope) if r.meta.get("method") == "exact" else None
            self._update_scatter(exact)
            self.scatter.flush(force=False)  # a hidden scatter draws when its tab is shown
