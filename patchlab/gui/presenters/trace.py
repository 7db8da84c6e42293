"""Trace presenter: the selected head/MLP cell -> effects, receiver map and neurons (issue 9).

The sender is the component of the selected cell of the run on screen; the job uses that
run's frozen pairs (the ones the pair switch shows), metric and direction, and every figure
names sender, receiver, direction and :meth:`AppState.scope`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu

from patchlab.core.io import atomic_write_text
from patchlab.core.metrics import no_effect_value
from patchlab.core.targets import TARGETS
from patchlab.gui import trace_jobs
from patchlab.gui.jobs import Outcome, Status
from patchlab.gui.state import AppState
from patchlab.gui.views.readouts import readout_html

RECEIVER_TEXT = {"q": "queries", "k": "keys", "v": "values", "mlp": "MLP inputs"}


def sender_of(target: str, cell: tuple[int, ...] | None) -> str | None:
    """``"L0H3"`` / ``"MLP1"`` for a cell of a head or MLP target, else None."""
    if cell is None or target not in TARGETS:
        return None
    axes = TARGETS[target].axes
    if "head" in axes:
        return f"L{cell[0]}H{cell[axes.index('head')]}"
    if target.startswith("mlp") or "neuron" in axes:
        return f"MLP{cell[0]}"
    return None


class TracePresenter:
    """Jobs ``trace`` and ``trace_neuron`` and the :class:`TraceView`.

    Attributes
    ----------
    result : dict or None
        The last finished trace (``effects``, ``paths``, ``skipped``, ``neurons``).
    receiver : str
        The receiver kind on screen.
    """

    def __init__(self, state: AppState, controller, view, notify: Callable[[str], None],
                 ask_path: Callable[[str], str | None] | None = None, heatmap=None,
                 reveal: Callable[[], None] | None = None) -> None:
        self.state, self.controller, self.view, self.notify = state, controller, view, notify
        self.ask_path = ask_path
        self.reveal = reveal or (lambda: None)
        self.menu: QMenu | None = None  # the last cell context menu (tests trigger its actions)
        if heatmap is not None:
            heatmap.cellMenuRequested.connect(self.cell_menu)
        self.result: dict | None = None
        self.context: dict | None = None
        self.receiver = "k"
        self.neuron_readout: dict | None = None
        controller.on_done("trace", self._done)
        controller.on_progress("trace", self._progress)
        controller.on_done("trace_neuron", self._done_neuron)
        view.traceRequested.connect(self.trace)
        view.cancelRequested.connect(lambda: controller.cancel("trace"))
        view.receiverChosen.connect(self.show_receiver)
        view.neurons.neuronActivated.connect(self.patch_neuron)
        view.neurons.exportRequested.connect(self._export_clicked)
        state.cellChanged.connect(self._cell_changed)
        view.show_neurons(False)

    def cell_menu(self, index, global_pos=None) -> QMenu:
        """The heatmap's context menu for a cell: "Trace <component>" when it is a head or MLP."""
        spec = self.state.run_spec
        sender = sender_of(spec.target, tuple(index)) if spec is not None else None
        menu = QMenu(self.view)
        act = QAction(f"Trace {sender}" if sender else "Trace (pick a head or MLP target)", menu)
        act.setEnabled(sender is not None)
        act.triggered.connect(self.trace_from_menu)
        menu.addAction(act)
        self.menu = menu
        if global_pos is not None:
            menu.popup(global_pos)
        return menu

    def trace_from_menu(self) -> None:
        if self.trace():
            self.reveal()

    def sender(self) -> str | None:
        spec = self.state.run_spec
        return sender_of(spec.target, self.state.cell) if spec is not None else None

    def _cell_changed(self) -> None:
        s = self.sender()
        self.view.sender.setText(f"Sender: {s}" if s else "Sender: select a head or MLP cell in the Patching heatmap.")

    # -- trace ----------------------------------------------------------------------------
    def trace(self) -> bool:
        """Trace the selected cell's component; False (with a message) when there is none."""
        spec, model = self.state.run_spec, self.controller.model
        sender = self.sender()
        if model is None or spec is None or sender is None:
            self.view.set_running(False, "Run a head or MLP target and select a cell first, then Trace.")
            return False
        if sender.startswith("MLP") and not trace_jobs.has_mlps(model):
            self.view.set_running(False, "This model is attention-only: there is no MLP to trace.")
            return False
        scope = self.state.scope(spec.n_pairs)
        pairs = [spec.pairs[i] for i in scope.indices()]
        self.context = dict(sender=sender, scope=scope, metric=spec.metric, direction=spec.direction)
        self.view.set_running(True, f"Tracing {sender} over the {scope.text()}\u2026")
        self.controller.submit("trace", trace_jobs.trace_job,
                               dict(model=model, pairs=pairs, sender=sender, metric=spec.metric,
                                    direction=spec.direction, stop=None),
                               context=dict(self.context, pairs=pairs))
        return True

    def _progress(self, ev) -> None:
        if self.context is not None:
            self.view.set_running(True, f"Tracing {self.context['sender']}: {ev.stage} "
                                        f"({ev.done}/{ev.total}, {ev.elapsed:.1f} s)\u2026")

    def _names(self, ctx: dict) -> str:
        return f"{ctx['direction']} \u00b7 {ctx['metric']} \u00b7 {ctx['scope'].text()}"

    def _done(self, out: Outcome) -> None:
        if out.status is Status.CANCELLED:
            self.view.set_running(False, "Trace cancelled.")
            return
        if not out.ok:
            self.view.set_running(False, f"Trace failed: {out.error}")
            self.notify(f"Trace failed: {out.error}")
            return
        ctx, res = out.context, out.value
        self.context, self.result = ctx, res
        eff = res["effects"]
        centre = no_effect_value(ctx["metric"], ctx["direction"], eff.meta.get("runs"))
        bars = eff.values.copy()
        bars[:2] -= centre if np.isfinite(centre) else 0.0  # bars show the change the patch makes
        self.view.effects.set_effects(
            bars, eff.labels["component"],
            title=f"Total / direct (to the logits alone) / indirect (through later layers) effect of every "
                  f"component \u00b7 sender {ctx['sender']} traced \u00b7 {self._names(ctx)}",
            metric_label=f"change in {ctx['metric']}")
        kinds = list(res["paths"])
        if kinds:
            strongest = max(kinds, key=lambda r: self._weight(r, centre))
            self.view.set_receiver_kinds(kinds, strongest)
            self.show_receiver(strongest)
        else:
            self.view.receivers.title.setText(f"No receiver comes after {ctx['sender']}: its effect is direct.")
        skipped = "; ".join(f"{r}: nothing after the sender" for r in res["skipped"])
        self.view.set_running(False, f"Traced {ctx['sender']}." + (f" ({skipped})" if skipped else ""))
        nr = res["neurons"]
        self.view.show_neurons(nr is not None)
        if nr is not None:
            self.view.neurons.set_neurons(
                nr.layer, list(nr.top), nr.dla, nr.estimate, nr.exact, nr.tokens,
                title=f"MLP {nr.layer} neurons (top {len(nr.top)} by estimate; double-click one to patch it "
                      f"alone) \u00b7 {self._names(ctx)}")

    def _weight(self, receiver: str, centre: float) -> float:
        v = self.result["paths"][receiver].values - centre
        return float(np.nansum(np.abs(v)))

    def show_receiver(self, receiver: str) -> None:
        """Draw the receiver map of ``receiver`` (``q``, ``k``, ``v`` or ``mlp``) of the last trace."""
        if self.result is None or receiver not in self.result["paths"]:
            return
        self.receiver = receiver
        ctx = self.context
        r = self.result["paths"][receiver]
        centre = no_effect_value(ctx["metric"], ctx["direction"], r.meta.get("runs"))
        heads = r.labels.get("head") if receiver != "mlp" else None
        self.view.receivers.set_receivers(
            r.values, r.labels["layer"], heads, centre=centre if np.isfinite(centre) else 0.0,
            title=f"Path patching: sender {ctx['sender']} \u2192 receiver: every later "
                  f"{'head' if receiver != 'mlp' else 'MLP'}'s {RECEIVER_TEXT[receiver]} "
                  f"\u00b7 {self._names(ctx)} (blank: at or before the sender)")
        i = self.view.receiver_box.findData(receiver)
        if i >= 0:
            self.view.receiver_box.setCurrentIndex(i)

    def receiver_values(self, receiver: str | None = None) -> np.ndarray | None:
        """The values drawn in the receiver map (``receiver`` default: the one shown)."""
        if self.result is None:
            return None
        r = self.result["paths"].get(receiver or self.receiver)
        return None if r is None else r.values

    # -- neurons --------------------------------------------------------------------------
    def patch_neuron(self, layer: int, neuron: int) -> None:
        ctx = self.context
        if ctx is None or self.controller.model is None:
            return
        self.view.neuron_readout.setText(f"Patching L{layer}N{neuron} alone\u2026")
        self.view.neuron_readout.setVisible(True)
        self.controller.submit("trace_neuron", trace_jobs.neuron_patch_job,
                               dict(model=self.controller.model, pairs=ctx["pairs"], layer=layer,
                                    neuron=neuron, direction=ctx["direction"], stop=None),
                               context=dict(ctx, layer=layer, neuron=neuron))

    def _done_neuron(self, out: Outcome) -> None:
        if not out.ok:
            if out.status is Status.ERROR:
                self.view.neuron_readout.setText(f"Neuron patch failed: {out.error}")
            return
        ctx = out.context
        self.neuron_readout = out.value
        pair = ctx["pairs"][0]
        self.view.neuron_readout.setText(
            f"<b>Neuron L{ctx['layer']}N{ctx['neuron']} patched alone</b> (all positions, {ctx['direction']}, "
            f"{ctx['scope'].text()}): " + readout_html(out.value, pair.answer, pair.wrong))

    def export_neurons(self, path: str | Path) -> Path:
        """The neuron screen as CSV (every neuron: DLA, estimate, exact where computed)."""
        nr = self.result["neurons"] if self.result else None
        if nr is None:
            from patchlab.core.errors import InputError

            raise InputError("No neuron table yet: Trace an MLP cell first.")
        path = Path(path)
        atomic_write_text(path, nr.to_csv())
        return path

    def _export_clicked(self) -> None:
        if self.ask_path is None:
            return
        path = self.ask_path("neurons.csv")
        if path:
            self.notify(f"Exported {self.export_neurons(path)}")
