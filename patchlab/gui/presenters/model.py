"""Model presenter: load requests -> job "load" -> the model panel, examples, window title."""

from __future__ import annotations

import patchlab
from patchlab.gui.jobs import Outcome, Status
from patchlab.gui.state import AppState


def _loading():
    from patchlab.engine import loading  # torch loads on first use

    return loading


class ModelPresenter:
    """Loads models in the worker; the current model stays usable if a load fails.

    ``window`` supplies ``notify``, ``validate``, ``setWindowTitle``, ``status_model`` and
    ``last_error`` (the main window).
    """

    def __init__(self, state: AppState, controller, model_panel, pair_editor, window) -> None:
        self.state = state
        self.controller = controller
        self.panel = model_panel
        self.editor = pair_editor
        self.w = window
        self.loading_name = ""
        controller.on_done("load", self._done)
        controller.modelChanged.connect(self._on_model_changed)
        model_panel.loadRequested.connect(self.load)

    def info(self):
        m = self.controller.model
        return _loading().model_info(m) if m is not None else None

    def load(self, name: str, device: str = "auto", dtype: str = "float32",
             processing: str = "compat") -> None:
        self.loading_name = name or "default model"
        self.panel.set_busy(True, f"Loading {self.loading_name}\u2026")
        self.w.notify(f"Loading {self.loading_name}\u2026", 0)
        self.controller.submit("load", _loading().load_model, dict(
            name=name or None, device=device, dtype=None if dtype == "float32" else dtype,
            processing=processing))

    def _on_model_changed(self, _model) -> None:
        info = self.info()
        self.state.set_model_info(info)
        self.panel.set_busy(False, f"Loaded {info.name} on {info.device} ({info.dtype}, "
                                   f"{info.processing} processing)")
        self.panel.select(info.name)
        self.w.notify(f"Loaded {info.name}.", 4000)
        if info.source != "embedded":
            self.panel.add_recent(info.name)
        from patchlab.core.examples import all_examples

        self.editor.set_examples(patchlab.examples(info.name) or patchlab.examples(None) or all_examples())
        self.update_title()
        if not any(p.clean for p in self.editor.pairs()) and self.editor.has_examples():
            self.editor.load_example(0)
        self.w.validate()

    def _done(self, out: Outcome) -> None:
        if out.ok:
            return
        prev = self.info()
        keep = f" {prev.name} is still loaded." if prev else ""
        self.panel.set_busy(False, "")
        why = out.error if out.status is Status.ERROR else "cancelled"
        self.panel.status.setText(f"<span style='color:#c0392b'>Could not load "
                                  f"{self.loading_name}: {why}</span>{keep}")
        self.w.notify(f"Model load failed.{keep}", 10000)
        self.w.last_error = why
        if out.status is Status.ERROR and prev is None and self.loading_name != "default model":
            self.load("", "auto", "float32", "compat")  # e.g. a restored session's model is gone

    def update_title(self) -> None:
        info = self.info()
        text = (f"{info.name} \u00b7 {info.device} \u00b7 {info.processing} processing"
                if info else "no model loaded")
        self.w.setWindowTitle(f"patchlab {patchlab.__version__} \u2013 {text}")
        self.w.status_model.setText(text)
