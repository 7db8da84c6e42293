"""The live sweep display of the main window: estimate rows, exact rows, the final result."""

from __future__ import annotations

from patchlab.core.metrics import METRICS
from patchlab.core.targets import TARGETS
from patchlab.gui.experiment_panel import Settings
from patchlab.gui.heatmap import HeatmapView
from patchlab.gui.jobs import Outcome
from patchlab.gui.preview import PreviewReady, cell_labels, merge_rows

#: Second title line while hatched rows still show the attribution estimate.
LIVE_NOTE = ("<br><i>hatched rows: estimate (attribution patching), exact values "
             "arriving\u2026</i>")


class LiveSweepMixin:
    """Draws a running sweep into the heatmap and scatter views (mixed into ``MainWindow``).

    Expects ``self._run`` (the frozen run: settings, model, tokens, preview state), the views
    ``heatmap``, ``scatter``, ``experiment`` and the attributes ``result`` / ``estimate``.
    """

    def title_for(self, settings: Settings, model: str) -> str:
        return HeatmapView.make_title(model, TARGETS[settings.target].label, settings.direction,
                                      METRICS[settings.metric].split(" (")[0])

    def _live_labels(self, shape) -> dict:
        labels = {"layer": [f"L{i}" for i in range(shape[0])]}
        if self._run and self._run["tokens"]:
            c, k = self._run["tokens"]
            labels["pos"] = [a if a == b else f"{a}/{b}" for a, b in zip(c, k)]
        axes = TARGETS[self._run["settings"].target].axes
        if "head" in axes:
            labels["head"] = [f"H{h}" for h in range(shape[axes.index("head")])]
        return labels

    def _show_live(self, values, suffix: str) -> None:
        s = self._run["settings"]
        self.heatmap.set_data(values, TARGETS[s.target].axes, self._live_labels(values.shape),
                              metric=s.metric, title=self.title_for(s, self._run["model"]) + suffix)

    def _on_estimate_row(self, event) -> None:
        run = self._run
        run["estimate_values"] = event.values
        if run["preview"]:
            self.heatmap.set_estimate_rows(range(event.values.shape[0]))
            self._show_live(event.values, LIVE_NOTE)
            self.experiment.set_progress(0, event.total, 0.0, note="Estimate shown \u00b7 exact: ")
            self.experiment.set_status(f"Estimate (attribution patching) in {event.elapsed:.2f} s; "
                                       f"exact values arriving\u2026")
        else:  # the user asked for the attribution method itself
            self._show_live(event.values, " \u00b7 attribution estimate")
            self.experiment.set_progress(event.done, event.total, event.elapsed)

    def _on_preview_ready(self, event: PreviewReady) -> None:
        self.estimate = event.result
        self._run["preview_s"] = event.elapsed
        self._run["labels"] = cell_labels(event.result)
        self._update_scatter(None)

    def _on_exact_row(self, event) -> None:
        run = self._run
        run["exact_rows"].add(event.layer)
        run["eta"].add(event.done, event.elapsed, event.layer)
        est = run["estimate_values"]
        n_rows = event.values.shape[0]
        if est is not None and est.shape == event.values.shape and len(run["exact_rows"]) < n_rows:
            shown = merge_rows(est, event.values, run["exact_rows"])
            self.heatmap.set_estimate_rows(set(range(n_rows)) - run["exact_rows"])
            suffix = LIVE_NOTE  # the same text as in the preview: no relayout per row
        else:
            shown = event.values
            self.heatmap.set_estimate_rows(())
            suffix = ""
        self._show_live(shown, suffix)
        self.experiment.set_progress(event.done, event.total, event.elapsed,
                                     eta=run["eta"].eta(event.total, n_rows))
        self._update_scatter(event.values)

    def _update_scatter(self, exact) -> None:
        if self.estimate is None or self._run is None:
            return
        s = self._run["settings"]
        self.scatter.set_data(self.estimate.values, exact, self._run["labels"] or [],
                              METRICS[s.metric].split(" (")[0],
                              f"{self._run['model']} \u00b7 {TARGETS[s.target].label}")

    def _done_sweep(self, out: Outcome) -> None:
        self.experiment.set_running(False)
        self.heatmap.set_estimate_rows(())
        if out.error == "cancelled":  # stopped before anything was computed
            self.experiment.set_status("Cancelled.")
            return
        if out.error:
            self.experiment.set_status(f"Run failed: {out.error}")
            self.statusBar().showMessage("Run failed (see the experiment panel).", 10000)
            self.last_error = out.error
            return
        r = self.result = out.value
        self.heatmap.set_data(r.values, r.axes, r.labels, metric=r.metric,
                              title=self.title_for(self._run["settings"], r.meta.get("model", "")))
        self.heatmap.flush()
        if self.estimate is not None:
            self._update_scatter(r.values if r.meta.get("method") == "exact" else None)
            self.scatter.flush()
        done = int(r.values.size - (~(r.values == r.values)).sum())
        if r.meta.get("preview_only"):
            self.experiment.set_status("Cancelled during the preview: the heatmap shows the "
                                       "attribution estimate; no exact cells.")
        elif r.meta.get("cancelled"):
            self.experiment.set_status(f"Cancelled: {done}/{r.values.size} cells kept.")
        else:
            self.experiment.set_progress(r.values.size, r.values.size, r.meta.get("elapsed_s", 0.0))
            ps = self._run.get("preview_s") if self.estimate is not None else None
            preview = f"; estimate shown after {ps:.2f} s" if ps is not None else ""
            self.experiment.set_status(
                f"Done: {r.values.size} cells in {r.meta.get('elapsed_s', 0):.2f} s "
                f"({r.meta.get('engine_path', '')} engine{preview}). Click a cell for its patched run.")
