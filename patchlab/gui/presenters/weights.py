"""Weights presenter (issue 10): direct path, OV / QK / positional QK of a head, composition scores.

Everything is read from the weights (no prompts run) but still on the worker, as every model
job. Weight views need folded LayerNorm: a model loaded with raw processing gets a banner
that offers to reload it with compat processing.
"""

from __future__ import annotations

from collections.abc import Callable

from patchlab.gui.jobs import Outcome, Status
from patchlab.gui.state import AppState


def matrix_job(model, *, circuit: str, layer: int, head: int, tokens, pairs, stop=None):
    """One :class:`WeightMatrix` (worker side)."""
    from patchlab.engine import weights

    if circuit == "pos_qk":
        return weights.positional_qk(model, layer, head)
    kw = dict(tokens=tokens or None, pairs=pairs or None)
    if circuit == "direct":
        return weights.direct_path(model, **kw)
    fn = weights.ov_circuit if circuit == "ov" else weights.qk_circuit
    return fn(model, layer, head, **kw)


def composition_job(model, *, mode: str, stop=None):
    from patchlab.engine.weights import composition_scores

    return composition_scores(model, mode)


class WeightsPresenter:
    """Jobs ``weights_matrix`` and ``weights_comp`` and the :class:`WeightsTab`.

    ``reload_compat()`` is called when the user accepts to reload the model with compat processing.
    """

    def __init__(self, state: AppState, controller, view, reload_compat: Callable[[], None]) -> None:
        self.state, self.controller, self.view = state, controller, view
        self.reload_compat = reload_compat
        self.matrix = None
        self.composition = None
        self._shown_for = None  # the model the views were filled for
        controller.on_done("weights_matrix", self._done_matrix)
        controller.on_done("weights_comp", self._done_comp)
        view.showRequested.connect(self.refresh)
        for v in (view.matrix, view.composition):
            v.switchProcessingRequested.connect(self.reload_compat)
        view.composition.headSelected.connect(self._head_picked)
        controller.modelChanged.connect(self._model_changed)

    def _model_changed(self, model) -> None:
        self.matrix = self.composition = None
        cfg = model.cfg
        self.view.set_heads(int(cfg.n_layers), int(cfg.n_heads))
        from patchlab.engine.weights import toy_groups

        self.view.use_pairs.setChecked(toy_groups(model) is None)  # real models: the pairs' tokens
        if self.view.isVisible():
            self.refresh()

    def on_shown(self) -> None:
        """The tab became visible: fill it once per model."""
        if self.controller.model is not None and self._shown_for is not self.controller.model:
            self.refresh()

    def _head_picked(self, layer: int, head: int) -> None:
        self.view.select_head(layer, head)
        if self.view.circuit.currentData() == "direct":
            self.view.circuit.setCurrentIndex(self.view.circuit.findData("qk"))
        self.refresh()

    def refresh(self) -> bool:
        """Compute the chosen matrix and the composition scores on the worker."""
        model = self.controller.model
        if model is None:
            self.view.status.setText("Load a model first.")
            return False
        from patchlab.engine.loading import model_info

        self._shown_for = model
        if model_info(model).processing != "compat":
            text = ("Weight views need folded LayerNorm (compat processing); this model was loaded with raw "
                    "processing. Reload it with compat?")
            for v in (self.view.matrix, self.view.composition):
                v.set_processing_warning(text)
            self.view.status.setText(text)
            return False
        for v in (self.view.matrix, self.view.composition):
            v.set_processing_warning(None)
        v = self.view
        layer, head = v.head.currentData() or (0, 0)
        pairs = list(self.state.shown_pairs()) if v.use_pairs.isChecked() and self.state.pairs_ok else []
        v.status.setText("Computing\u2026")
        self.controller.submit("weights_matrix", matrix_job, dict(
            model=model, circuit=v.circuit.currentData(), layer=layer, head=head,
            tokens=v.token_list(), pairs=pairs, stop=None))
        mode = v.mode.currentData()
        if self.composition is None or self.composition.mode != mode:
            self.controller.submit("weights_comp", composition_job, dict(model=model, mode=mode, stop=None))
        return True

    def _done_matrix(self, out: Outcome) -> None:
        if out.status is Status.CANCELLED:
            return
        if not out.ok:
            self.view.status.setText(out.error)
            return
        self.matrix = out.value
        self.view.matrix.set_matrix(out.value)
        n = len(out.value.row_labels)
        self.view.status.setText(f"{out.value.title} \u00b7 {n} x {len(out.value.col_labels)}")

    def _done_comp(self, out: Outcome) -> None:
        if out.status is Status.CANCELLED:
            return
        if not out.ok:
            self.view.status.setText(out.error)
            return
        self.composition = out.value
        self.view.composition.set_composition(out.value)
