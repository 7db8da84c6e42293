"""Difference map: the current result minus the previous one, titled with what differs."""

from __future__ import annotations

from patchlab.core.metrics import DIRECTIONS
from patchlab.core.targets import TARGETS
from patchlab.gui.state import AppState, RunSpec

HINT = ("Run twice with one setting changed (denoise then noise, or another pair set) to see "
        "the difference of the two maps here.")


def describe_change(a: RunSpec | None, b: RunSpec | None) -> str:
    """What differs between two run specs, e.g. ``noise minus denoise`` or ``24 pairs minus 12 pairs``."""
    if a is None or b is None:
        return "this run minus the previous run"
    parts = []
    if a.direction != b.direction:
        parts.append(f"{a.direction} minus {b.direction}")
    if a.pairs != b.pairs:
        parts.append(f"pair set A ({a.n_pairs} pairs) minus pair set B ({b.n_pairs} pairs)")
    if a.model != b.model:
        parts.append(f"{a.model} minus {b.model}")
    if a.method != b.method:
        parts.append(f"{a.method} minus {b.method}")
    return "; ".join(parts) or "this run minus the previous run (same settings)"


class DifferencePresenter:
    """Draws ``result.values - previous.values`` when the two maps have the same cells."""

    def __init__(self, state: AppState, view) -> None:
        self.state = state
        self.view = view
        self.values = None
        state.resultChanged.connect(self.show)
        view.show_message(HINT)

    def show(self) -> None:
        st = self.state
        r, prev = st.result, st.previous
        self.values = None
        if r is None or prev is None or not r.complete:
            self.view.show_message(HINT)
            return
        spec_b, b = prev
        if b.axes != r.axes or b.shape != r.shape or b.metric != r.metric or b.target != r.target:
            self.view.show_message("The last two runs have different targets, metrics or grids: "
                                   "no difference map. " + HINT)
            return
        self.values = r.values - b.values
        spec = st.run_spec
        target = TARGETS[r.target].label
        change = describe_change(spec, spec_b)
        dirs = "" if spec is None or spec_b is None or spec.direction == spec_b.direction else (
            f" ({DIRECTIONS.get(spec.direction, '')} vs {DIRECTIONS.get(spec_b.direction, '')})")
        self.view.set_data(self.values, r.axes, dict(r.labels), metric=r.metric,
                           title=f"Difference map: {change}{dirs}<br>{target} \u00b7 {r.metric}")
        self.view.flush()
