"""Stale results (issue 11 item 9): what is on screen no longer matches the inputs.

When the model, the pairs or the experiment settings change after a run, the heatmap (and
the decomposition, after a pair edit) stay visible but dimmed, and say "inputs changed: run
again", so an old result is never read as the current one.
"""

from __future__ import annotations

from patchlab.gui.state import AppState

STALE_NOTE = "inputs changed: run again"


def run_is_stale(spec, model_name: str | None, pairs: list, settings) -> str:
    """Why the run of ``spec`` no longer matches the inputs ("" when it does)."""
    if spec is None:
        return ""
    if model_name is not None and spec.model != model_name:
        return "model"
    if list(spec.pairs) != list(pairs):
        return "pairs"
    for name in ("target", "metric", "direction", "method"):
        if getattr(spec, name) != getattr(settings, name):
            return name
    return ""


class StalePresenter:
    """Dims the heatmap and the decomposition when their inputs changed.

    Parameters
    ----------
    state : AppState
    experiment : ExperimentPanel
        Its :meth:`settings` are the inputs of the next run.
    heatmap, decompose_view : views with ``set_stale(reason)``
    decompose_pairs : callable() -> list or None
        The pairs the decomposition on screen was computed for.
    """

    def __init__(self, state: AppState, experiment, heatmap, decompose_view, decompose_pairs) -> None:
        self.state = state
        self.experiment = experiment
        self.heatmap = heatmap
        self.decompose_view = decompose_view
        self.decompose_pairs = decompose_pairs
        for signal in (state.pairsChanged, state.modelChanged, state.resultChanged,
                       state.runSpecChanged, state.decompositionChanged, state.scopeChanged):
            signal.connect(self.update)
        for box in (experiment.target, experiment.metric, experiment.direction, experiment.method):
            box.currentIndexChanged.connect(self.update)

    def update(self, *_args) -> None:
        st = self.state
        info = st.model_info
        name = getattr(info, "name", None)
        reason = ""
        if st.result is not None:
            reason = run_is_stale(st.run_spec, name, st.pairs, self.experiment.settings())
        self.heatmap.set_stale(reason)
        pairs = self.decompose_pairs()
        d_reason = ""
        if st.decomposition is not None and pairs is not None:
            shown = [st.pairs[i] for i in st.scope(len(st.pairs)).indices()] if st.pairs else []
            d_reason = "pairs" if list(pairs) != shown else ""
        self.decompose_view.set_stale(d_reason)
