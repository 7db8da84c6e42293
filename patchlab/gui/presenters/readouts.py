"""Readout and Decompose presenters: the state's pair choice -> worker jobs -> the views.

Clean/corrupted readouts follow the edited pairs; the patched run and the attention patterns
follow the selected cell of the run on screen and use that run's frozen pairs. Every one of
them shows :meth:`AppState.scope` (the mean over the pairs, or the selected pair) and says so
in its title.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from patchlab.core.targets import TARGETS
from patchlab.gui import pair_jobs
from patchlab.gui.jobs import Outcome, Status
from patchlab.gui.state import AppState, Scope


class ReadoutPresenter:
    """Jobs "readout", "patched" and "attention" and the readout panel.

    Parameters
    ----------
    state, controller : AppState, Controller
    view : ReadoutPanel
    describe : callable(cell) -> str
        Text naming a cell (the heatmap's description of it).
    """

    def __init__(self, state: AppState, controller, view, describe: Callable[[tuple], str]) -> None:
        self.state = state
        self.controller = controller
        self.view = view
        self.describe = describe
        self.runs: dict | None = None  # last clean/corrupted readout (mean or one pair)
        self.patched: dict | None = None  # last patched-run readout
        self.attention: dict | None = None
        self.scopes: dict[str, Scope] = {}  # the scope each readout was computed for
        controller.on_done("readout", self._done_readout)
        controller.on_done("patched", self._done_patched)
        controller.on_done("attention", self._done_attention)
        state.scopeChanged.connect(self.refresh)
        state.tokensChanged.connect(self.request_runs)
        state.cellChanged.connect(self.request_cell)
        state.runSpecChanged.connect(self._clear_patched)

    def refresh(self) -> None:
        self.request_runs()
        self.request_cell()

    # -- clean / corrupted ----------------------------------------------------------------
    def request_runs(self) -> None:
        st = self.state
        if self.controller.model is None or not st.pairs_ok or not st.pairs:
            return
        scope = st.scope(len(st.pairs))
        pairs = [st.pairs[i] for i in scope.indices()]
        self.runs = None
        self.view.set_runs_pending(scope.text())
        self.controller.submit("readout", pair_jobs.readout_job,
                               dict(model=self.controller.model, pairs=pairs, stop=None),
                               context=(scope, pairs[0]))

    def _done_readout(self, out: Outcome) -> None:
        scope, pair = out.context
        if out.status is Status.ERROR:  # never leave the previous pair's readouts as if current
            self.runs = None
            self.view.set_runs_error(out.error or "readout failed", scope.text())
            return
        if not out.ok:
            return  # a cancel is superseded by the next request
        self.runs = out.value
        self.scopes["runs"] = scope
        self.view.set_runs(out.value, pair.answer, pair.wrong, scope.text())

    # -- patched cell ---------------------------------------------------------------------
    def _clear_patched(self) -> None:
        self.patched = None
        self.attention = None
        self.view.set_patched(None, "", "", "")
        self.view.clear_attention()

    def request_cell(self) -> None:
        st, spec, cell = self.state, self.state.run_spec, self.state.cell
        if cell is None or spec is None or self.controller.model is None:
            return
        scope = st.scope(spec.n_pairs)
        pairs = [spec.pairs[i] for i in scope.indices()]
        text = self.describe(cell)
        self.patched = self.attention = None
        self.view.set_patched_pending(text, scope.text())
        self.controller.submit("patched", pair_jobs.patched_job, dict(
            model=self.controller.model, pairs=pairs, target=spec.target, index=tuple(cell),
            direction=spec.direction, stop=None), context=(text, pairs[0], scope, spec))
        target = TARGETS[spec.target]
        if "head" in target.axes and target.act not in ("k", "v"):
            layer, head = cell[0], cell[target.axes.index("head")]
            self.controller.submit("attention", pair_jobs.attention_job, dict(
                model=self.controller.model, pairs=pairs, layer=layer, head=head, stop=None),
                context=(layer, head, scope, spec))

    def _done_patched(self, out: Outcome) -> None:
        text, pair, scope, spec = out.context
        if out.status is Status.CANCELLED or spec is not self.state.run_spec:
            return  # superseded, or queued for a run that is no longer on screen
        self.scopes["patched"] = scope
        if out.status is Status.ERROR:
            self.patched = None
            self.view.set_patched(None, f"{text} (failed: {out.error})", "", "", scope.text())
        else:
            self.patched = out.value
            self.view.set_patched(out.value, text, pair.answer, pair.wrong, scope.text())

    def _done_attention(self, out: Outcome) -> None:
        layer, head, scope, spec = out.context
        if spec is not self.state.run_spec:
            return  # queued for a run that is no longer on screen
        if out.status is Status.OK:
            self.attention = out.value
            self.scopes["attention"] = scope
            self.view.set_attention(layer, head, out.value, scope.text())
        elif out.status is Status.ERROR:
            self.view.set_attention_message(f"Attention pattern of L{layer}H{head}: {out.error}")


class DecomposePresenter:
    """Job "decompose" and the Decompose view, for the state's pair choice."""

    def __init__(self, state: AppState, controller, view, experiment,
                 on_error: Callable[[str], None]) -> None:
        self.state = state
        self.controller = controller
        self.view = view
        self.experiment = experiment
        self.on_error = on_error
        self.scope: Scope | None = None
        self.pairs: list | None = None  # the pairs of the decomposition on screen
        self._pending: list | None = None
        controller.on_done("decompose", self._done)
        controller.on_progress("decompose", self._progress)
        state.decompositionChanged.connect(self.show)

    def run(self) -> bool:
        st = self.state
        if not st.pairs_ok:
            self.view.note.setText("Fix the prompt pair first.")
            return False
        scope = st.scope(len(st.pairs))
        pairs = [st.pairs[i] for i in scope.indices()]
        self._pending = pairs
        self.view.note.setText(f"decomposing ({scope.text()})\u2026")
        self.experiment.set_progress(0, len(pairs), 0.0, unit="pairs", note="Decomposition: ")
        self.controller.submit("decompose", pair_jobs.decompose_job,
                               dict(model=self.controller.model, pairs=pairs, stop=None), context=scope)
        return True

    def _progress(self, event: Any) -> None:
        self.view.note.setText(f"decomposing: {event.done}/{event.total} pairs")
        self.experiment.set_progress(event.done, event.total, event.elapsed, unit="pairs",
                                     note="Decomposition: ")

    def _done(self, out: Outcome) -> None:
        if out.status is Status.CANCELLED:
            self.view.note.setText("Decomposition cancelled.")
            return
        if out.status is Status.ERROR:
            self.view.note.setText(f"Decomposition failed: {out.error}")
            self.on_error(out.error or "decomposition failed")
            return
        self.scope = out.context
        self.pairs = self._pending
        n = out.context.n_pairs if out.context.is_mean else 1
        self.state.set_decomposition(out.value)
        self.experiment.set_progress(n, n, out.value.meta.get("elapsed_s", 0.0), unit="pairs",
                                     note="Decomposition done: ")

    def show(self) -> None:
        d = self.state.decomposition
        if d is None:
            return
        if self.scope is None:  # restored from a session
            n = int(d.meta.get("n_pairs", 1))
            self.scope = Scope(n, None if n > 1 else 0)
        title = (f"{d.meta.get('model', '')} \u00b7 direct logit attribution \u00b7 "
                 f"{d.meta.get('processing', '')} processing<br>{self.scope.text()}")
        self.view.set_result(d, title)
