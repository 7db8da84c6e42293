"""Statistics presenter: the result's per-cell CI, p, q -> heatmap fading, the ranked table
and the per-pair view of the selected cell; clicking a pair there selects it in the state."""

from __future__ import annotations

import numpy as np

from patchlab.gui.cell_stats import ALPHA, CellStats, ranked_cells, stats_job
from patchlab.gui.jobs import Outcome
from patchlab.gui.state import AppState


class StatsPresenter:
    """Job "stats" (after each complete result of 2 or more pairs) and its views."""

    def __init__(self, state: AppState, controller, heatmap, view) -> None:
        self.state = state
        self.controller = controller
        self.heatmap = heatmap
        self.view = view
        self.stats: CellStats | None = None
        controller.on_done("stats", self._done)
        state.resultChanged.connect(self.request)
        # a model load drops queued jobs (a restored session's stats among them): ask again
        controller.modelChanged.connect(self._on_model)
        state.scopeChanged.connect(self.apply)
        state.cellChanged.connect(self.show_cell)
        view.pairClicked.connect(state.select_pair)
        view.cellClicked.connect(heatmap.select_cell)

    def request(self) -> None:
        self.stats = None
        r = self.state.result
        self.apply()
        if r is None or r.n_pairs < 2 or not r.complete or r.meta.get("cancelled"):
            return
        self.controller.submit("stats", stats_job, dict(result=r), context=r)

    def _on_model(self, _model) -> None:
        if self.stats is None:
            self.request()

    def _done(self, out: Outcome) -> None:
        if out.context is not self.state.result:
            return
        if out.ok:
            self.stats = out.value
            self.apply()
        elif out.error:
            self.view.set_top([], f"No statistics for this result: {out.error}")

    def apply(self) -> None:
        """Fade non-significant cells (mean scope only), fill the ranked table, the cell view."""
        r, st = self.state.result, self.stats
        scope = self.state.scope()
        if r is None or st is None:
            n = r.n_pairs if r is not None else 0
            self.heatmap.set_significance(None, "" if r is None or n >= 2 else
                                          "One pair: no confidence intervals or significance.")
            self.view.set_top([], "Top cells: run a sweep over two or more pairs for CIs and p-values."
                              if r is None or n < 2 else "Top cells: computing statistics\u2026")
        else:
            n_sig = int(st.significant.sum())
            if scope.is_mean:
                self.heatmap.set_significance(
                    st.significant, f"Faded cells: not significant (Benjamini-Hochberg q > {st.alpha:g}, "
                    f"sign-flip test over {st.n_pairs} pairs); {n_sig} of {st.significant.size} cells significant.")
            else:
                self.heatmap.set_significance(None, f"{scope.text()}: statistics are over all pairs "
                                                    "(switch to 'All pairs' to see them on the map).")
            rows = [(ix, r.cell_label(ix), v, float(st.ci_low[ix]), float(st.ci_high[ix]),
                     float(st.p[ix]), float(st.q[ix])) for ix, v in ranked_cells(r, st)]
            self.view.set_top(rows, f"Top {len(rows)} cells by distance from no effect \u00b7 "
                                    f"mean of {st.n_pairs} pairs \u00b7 95% bootstrap CI")
        self.show_cell()

    def show_cell(self) -> None:
        r, cell = self.state.result, self.state.cell
        if r is None or cell is None or r.n_pairs < 1:
            return
        per = np.asarray(r.per_pair)[(slice(None), *cell)]
        st = self.stats
        ci = (float(st.ci_low[cell]), float(st.ci_high[cell])) if st is not None else None
        value = float(r.values[cell])
        stat_text = (f" \u00b7 95% CI [{ci[0]:.3g}, {ci[1]:.3g}] \u00b7 p = {st.p[cell]:.3g}, "
                     f"q = {st.q[cell]:.3g}" if st is not None and ci is not None else "")
        scope = self.state.scope(r.n_pairs)
        selected = None if scope.is_mean else scope.index
        self.view.set_cell(f"{r.cell_label(cell)} \u00b7 one point per pair ({r.n_pairs})"
                           f"<br>map value {value:.3g}{stat_text}", per, value, ci, r.no_effect, selected)


__all__ = ["ALPHA", "StatsPresenter"]
