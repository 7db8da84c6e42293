"""The main window: wires the panels to the controller; views only draw what they get."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings, Qt, Slot
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QGroupBox,
    QLabel,
    QMainWindow,
    QScrollArea,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

import patchlab
from patchlab.core.targets import TARGETS
from patchlab.gui.controller import Controller
from patchlab.gui.decompose_view import DecomposeView
from patchlab.gui.experiment_panel import ExperimentPanel
from patchlab.gui.heatmap import HeatmapView
from patchlab.gui.jobs import Outcome
from patchlab.gui.live_sweep import LiveSweepMixin
from patchlab.gui.menus import MenusMixin
from patchlab.gui.model_panel import ModelPanel
from patchlab.gui.pair_editor import PairEditor, validate_pairs
from patchlab.gui.preview import (
    ExactEta,
    PreviewFailed,
    PreviewReady,
    preview_then_exact,
)
from patchlab.gui.readouts import ReadoutPanel
from patchlab.gui.scatter_view import ScatterView


def _engine():
    """Engine entry points, imported lazily (torch loads on first use)."""
    from patchlab.engine import decompose, loading, readout, sweep

    return loading, sweep, readout, decompose


class MainWindow(LiveSweepMixin, MenusMixin, QMainWindow):
    """patchlab's main window.

    Parameters
    ----------
    settings : QSettings, optional
        Where settings persist (tests pass a temporary file).
    autosave_path : Path, optional
        Session saved on quit and restored on start; ``None`` disables autosave.
    """

    def __init__(self, settings: QSettings | None = None, autosave_path: Path | None = None) -> None:
        super().__init__()
        from patchlab.engine.embedded import list_embedded
        from patchlab.engine.loading import available_devices

        self.qsettings = settings if settings is not None else QSettings("patchlab", "patchlab")
        self.autosave_path = autosave_path
        self.controller = Controller(self)
        self.result = None  # PatchResult of the last run (partial when cancelled)
        self.estimate = None  # attribution PatchResult previewed before the last exact run
        self.decomposition = None
        self.runs_readout: dict | None = None
        self._run = None  # frozen spec of the run on screen
        self._pairs_ok = False
        self._tokens: tuple[list[str], list[str]] | None = None
        self._loading_name = ""
        self.last_error: str | None = None  # the last message shown for a failure

        self.model_panel = ModelPanel(list_embedded(), available_devices())
        self.pair_editor = PairEditor()
        self.experiment = ExperimentPanel()
        self.heatmap = HeatmapView()
        self.readouts = ReadoutPanel()
        self.decompose_view = DecomposeView()
        self.scatter = ScatterView()

        side = QWidget()
        side_lay = QVBoxLayout(side)
        for title, w in (("Model", self.model_panel), ("Prompt pairs", self.pair_editor),
                         ("Experiment", self.experiment)):
            box = QGroupBox(title)
            QVBoxLayout(box).addWidget(w)
            side_lay.addWidget(box)
        side_lay.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(side)
        scroll.setWidgetResizable(True)
        scroll.setMinimumWidth(420)
        patch_tab = QSplitter(Qt.Vertical)
        patch_tab.addWidget(self.heatmap)
        patch_tab.addWidget(self.readouts)
        patch_tab.setStretchFactor(0, 3)
        patch_tab.setStretchFactor(1, 2)
        self.tabs = QTabWidget()
        self.tabs.addTab(patch_tab, "Patching")
        self.tabs.addTab(self.scatter, "Estimate vs exact")
        self.tabs.addTab(self.decompose_view, "Decompose")
        split = QSplitter(Qt.Horizontal)
        split.addWidget(scroll)
        split.addWidget(self.tabs)
        split.setStretchFactor(1, 1)
        self.setCentralWidget(split)
        self.status_model = QLabel("no model")
        self.statusBar().addPermanentWidget(self.status_model)

        c = self.controller
        c.progress.connect(self._on_progress)
        c.done.connect(self._on_done)
        c.busy.connect(self._on_busy)
        c.modelChanged.connect(self._on_model_changed)
        self.model_panel.loadRequested.connect(self.load_model)
        self.pair_editor.pairsChanged.connect(self.validate)
        self.pair_editor.suggestRequested.connect(self.suggest)
        self.experiment.runRequested.connect(self.run)
        self.experiment.cancelRequested.connect(self.cancel)
        self.heatmap.cellSelected.connect(self._on_cell_selected)
        self.heatmap.cbd.toggled.connect(self.decompose_view.set_colour_blind)
        self.decompose_view.runRequested.connect(self.run_decompose)
        for keys in ("Ctrl+Return", "Ctrl+Enter"):
            QShortcut(QKeySequence(keys), self, self.run)
        QShortcut(QKeySequence(Qt.Key_Escape), self, self.cancel)
        self.build_menus()
        self.restore_settings()
        self.update_title()
        self.validate()

    # -- model ----------------------------------------------------------------------------
    @Slot(str, str, str, str)
    def load_model(self, name: str, device: str = "auto", dtype: str = "float32",
                   processing: str = "compat") -> None:
        """Load a model in the worker; the current model stays usable if it fails."""
        loading = _engine()[0]
        self._loading_name = name or "default model"
        self.model_panel.set_busy(True, f"Loading {self._loading_name}\u2026")
        self.statusBar().showMessage(f"Loading {self._loading_name}\u2026")
        self.controller.submit("load", loading.load_model, dict(
            name=name or None, device=device, dtype=None if dtype == "float32" else dtype,
            processing=processing))

    @property
    def model(self):
        return self.controller.model

    def model_info(self):
        return _engine()[0].model_info(self.model) if self.model is not None else None

    @Slot(object)
    def _on_model_changed(self, model) -> None:
        info = self.model_info()
        self.model_panel.set_busy(False, f"Loaded {info.name} on {info.device} ({info.dtype}, "
                                         f"{info.processing} processing)")
        self.model_panel.select(info.name)
        self.statusBar().showMessage(f"Loaded {info.name}.", 4000)
        if info.source != "embedded":
            self.model_panel.add_recent(info.name)
        from patchlab.core.examples import all_examples

        self.pair_editor.set_examples(patchlab.examples(info.name) or patchlab.examples(None)
                                      or all_examples())
        self.update_title()
        if not any(p.clean for p in self.pair_editor.pairs()) and self.pair_editor._examples:
            self.pair_editor.load_example(0)
        self.validate()

    def update_title(self) -> None:
        info = self.model_info()
        text = (f"{info.name} \u00b7 {info.device} \u00b7 {info.processing} processing"
                if info else "no model loaded")
        self.setWindowTitle(f"patchlab {patchlab.__version__} \u2013 {text}")
        self.status_model.setText(text)

    # -- pairs ----------------------------------------------------------------------------
    @Slot()
    def validate(self) -> bool:
        """Tokenise the pairs (tokenizer only, fast) and show the result inline."""
        pairs = self.pair_editor.pairs()
        if self.model is None:
            self._pairs_ok = False
            self.pair_editor.show_message("Load a model to check the prompts.", error=False)
        else:
            try:
                tokens, error = validate_pairs(self.model, pairs)
            except RuntimeError as exc:  # e.g. the tokenizer is busy in the worker: try later
                tokens, error = None, f"Could not check the prompts yet ({exc})."
            self._tokens = tokens
            if tokens:
                self.pair_editor.show_tokens(*tokens)
            self._pairs_ok = not error
            self.pair_editor.show_message(error or f"{len(pairs)} pair(s) OK, "
                                          f"{len(tokens[0])} tokens.", error=bool(error))
            if self._pairs_ok:
                self.request_readout()
        self.experiment.run_btn.setEnabled(self._pairs_ok)
        return self._pairs_ok

    def request_readout(self) -> None:
        readout = _engine()[2]
        pair = self.pair_editor.current_pair()
        self.controller.submit("readout", readout.run_readout, dict(model=self.model, pair=pair),
                               context=pair)

    @Slot(str)
    def suggest(self, prompt: str) -> None:
        if self.model is not None:
            self.controller.submit("suggest", _engine()[2].suggest_answers,
                                   dict(model=self.model, prompt=prompt))

    # -- runs -----------------------------------------------------------------------------
    @Slot()
    def run(self) -> bool:
        """Start a sweep with frozen inputs; a running sweep is superseded."""
        if not self.validate():
            self.statusBar().showMessage("Fix the prompt pair first (see the message under it).", 5000)
            return False
        s = self.experiment.settings()
        pairs = self.pair_editor.pairs()
        sweep = _engine()[1]
        self.last_error = None
        preview = s.method == "exact" and self.experiment.preview.isChecked()
        self._run = {"settings": s, "pairs": pairs, "model": self.model_info().name,
                     "tokens": self._tokens, "preview": preview, "estimate_values": None,
                     "exact_rows": set(), "eta": ExactEta(), "labels": None}
        self.result = None
        self.estimate = None
        self.heatmap.clear()
        self.scatter.clear()
        self.readouts.set_patched(None, "", "", "")
        self.experiment.set_running(True)
        self.experiment.set_progress(0, 1, 0.0)
        self.experiment.set_status("Preparing: running both prompts\u2026")
        spec = dict(model=self.model, pairs=pairs, target=s.target, metric=s.metric,
                    direction=s.direction, stop=None)
        if s.method == "exact":
            self.controller.submit("sweep", preview_then_exact, dict(spec, preview=preview),
                                   context=self._run)
        else:
            self.controller.submit("sweep", sweep.iter_patch, dict(spec, method=s.method),
                                   context=self._run)
        return True

    @Slot()
    def cancel(self) -> None:
        if self.controller.running_kind == "sweep" or not self.controller.is_idle():
            self.controller.cancel("sweep")
            self.experiment.set_status("Cancelling\u2026")

    @Slot(str, object)
    def _on_progress(self, kind: str, event) -> None:
        if kind == "sweep" and self._run is not None:
            if isinstance(event, PreviewReady):
                self._on_preview_ready(event)
            elif isinstance(event, PreviewFailed):
                self.statusBar().showMessage(f"No preview: attribution patching failed for this "
                                             f"model ({event.message}); exact values follow.", 15000)
            elif event.phase == "estimate":
                self._on_estimate_row(event)
            else:
                self._on_exact_row(event)
        elif kind == "decompose":
            self.decompose_view.note.setText(f"decomposing: {event.done}/{event.total} runs")
            self.experiment.set_progress(event.done, event.total, event.elapsed, unit="runs",
                                         note="Decomposition: ")

    @Slot(object)
    def _on_done(self, out: Outcome) -> None:
        handler = getattr(self, f"_done_{out.kind}")
        handler(out)

    def _done_load(self, out: Outcome) -> None:
        if out.error:
            prev = self.model_info()
            keep = f" {prev.name} is still loaded." if prev else ""
            self.model_panel.set_busy(False, "")
            self.model_panel.status.setText(f"<span style='color:#c0392b'>Could not load "
                                            f"{self._loading_name}: {out.error}</span>{keep}")
            self.statusBar().showMessage(f"Model load failed.{keep}", 10000)
            self.last_error = out.error
            if prev is None and self._loading_name != "default model":
                self.load_model("", "auto", "float32", "compat")  # e.g. a restored session's model is gone

    def _done_readout(self, out: Outcome) -> None:
        if out.error:
            return  # validation already shows pair problems
        self.runs_readout = out.value
        self.readouts.set_runs(out.value, out.context.answer, out.context.wrong)

    def _done_suggest(self, out: Outcome) -> None:
        if not out.error:
            self.pair_editor.set_suggestions(out.value)

    # -- cells ----------------------------------------------------------------------------
    @Slot(object)
    def _on_cell_selected(self, index) -> None:
        if self._run is None or self.model is None:
            return
        s = self._run["settings"]
        pair = self._run["pairs"][0]
        cell = self.heatmap.describe(index)
        readout = _engine()[2]
        self.readouts.set_patched_pending(cell)
        self.controller.submit("patched", readout.patched_readout, dict(
            model=self.model, pair=pair, target=s.target, index=tuple(index), direction=s.direction),
            context=(cell, pair))
        axes = TARGETS[s.target].axes
        if "head" in axes and TARGETS[s.target].act not in ("k", "v"):
            layer, head = index[0], index[axes.index("head")]
            self.controller.submit("attention", readout.attention_patterns, dict(
                model=self.model, pair=pair, layer=layer, head=head), context=(layer, head))

    def _done_patched(self, out: Outcome) -> None:
        cell, pair = out.context
        if out.error:
            self.readouts.set_patched(None, f"{cell} (failed: {out.error})", "", "")
        else:
            self.readouts.set_patched(out.value, cell, pair.answer, pair.wrong)
        self.patched_readout = out.value

    def _done_attention(self, out: Outcome) -> None:
        if not out.error:
            self.readouts.set_attention(*out.context, out.value)

    # -- decomposition --------------------------------------------------------------------
    @Slot()
    def run_decompose(self) -> None:
        if not self.validate():
            self.decompose_view.note.setText("Fix the prompt pair first.")
            return
        pair = self.pair_editor.current_pair()
        self.decompose_view.note.setText("decomposing\u2026")
        self.experiment.set_progress(0, 2, 0.0, unit="runs", note="Decomposition: ")
        self.controller.submit("decompose", _engine()[3].iter_decompose,
                               dict(model=self.model, pair=pair, stop=None), context=pair)

    def _done_decompose(self, out: Outcome) -> None:
        if out.error:
            self.decompose_view.note.setText(f"Decomposition failed: {out.error}")
            self.last_error = out.error
            return
        self.decomposition = out.value
        self.show_decomposition()
        self.experiment.set_progress(2, 2, out.value.meta.get("elapsed_s", 0.0), unit="runs",
                                     note="Decomposition done: ")

    def show_decomposition(self) -> None:
        d = self.decomposition
        title = (f"{d.meta.get('model', '')} \u00b7 direct logit attribution \u00b7 "
                 f"{d.meta.get('processing', '')} processing")
        self.decompose_view.set_result(d, title)

    # -- busy / close ---------------------------------------------------------------------
    @Slot(str)
    def _on_busy(self, kind: str) -> None:
        self.busy_kind = kind

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt API
        self.save_settings()
        self.autosave()
        self.controller.shutdown()
        super().closeEvent(event)
