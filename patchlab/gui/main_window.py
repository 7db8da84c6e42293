"""The main window: wiring. The state (:class:`~patchlab.gui.state.AppState`) holds what is
shown; presenters turn job events and state changes into view calls; services read and write
files. Methods here are the window's public actions (menus, shortcuts, tests, screenshots).
Elsewhere: the widget tree (``window_layout``), the status line and error messages (``status``),
the menus (``menus``), the Trace/Weights/Text tabs (``analysis_tabs``).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings, Qt, Slot
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import QMainWindow, QMessageBox

from patchlab.core.errors import PatchlabError
from patchlab.gui.controller import Controller
from patchlab.gui.jobs import Outcome
from patchlab.gui.menus import FileMenu
from patchlab.gui.presenters.difference import DifferencePresenter
from patchlab.gui.presenters.model import ModelPresenter
from patchlab.gui.presenters.pairs import PairsPresenter, ScorePresenter
from patchlab.gui.presenters.readouts import DecomposePresenter, ReadoutPresenter
from patchlab.gui.presenters.stale import StalePresenter
from patchlab.gui.presenters.stats import StatsPresenter
from patchlab.gui.presenters.sweep import SweepPresenter
from patchlab.gui.preview import preview_then_exact
from patchlab.gui.services import exports, sessions
from patchlab.gui.services import settings as settings_service
from patchlab.gui.services.background import BackgroundWriter
from patchlab.gui.services.saving import SessionSaver
from patchlab.gui.state import AppState, RunSpec
from patchlab.gui.status import StatusReporter
from patchlab.gui.views.cell_pairs import CellPairsView
from patchlab.gui.views.decompose_view import DecomposeView
from patchlab.gui.views.experiment_panel import ExperimentPanel
from patchlab.gui.views.heatmap import HeatmapView
from patchlab.gui.views.model_panel import ModelPanel
from patchlab.gui.views.pair_editor import PairEditor
from patchlab.gui.views.pair_scope import PairScopeBar
from patchlab.gui.views.readouts import ReadoutPanel
from patchlab.gui.views.scatter_view import ScatterView
from patchlab.gui.window_layout import build_layout


def _engine():
    """Engine entry points, imported lazily (torch loads on first use)."""
    from patchlab.engine import loading, readout, sweep

    return loading, sweep, readout


def _reported(name: str) -> property:
    """The window's name for attribute ``name`` of its :class:`StatusReporter` (read and set)."""
    return property(lambda self: getattr(self.reporter, name),
                    lambda self, value: setattr(self.reporter, name, value),
                    doc=f"``self.reporter.{name}`` (see :class:`~patchlab.gui.status.StatusReporter`).")


class MainWindow(QMainWindow):
    """patchlab's main window.

    Parameters
    ----------
    settings : QSettings, optional
        Where settings persist (tests pass a temporary file).
    autosave_path : Path, optional
        Session saved on quit and restored on start; ``None`` disables autosave.

    Attributes
    ----------
    state : AppState
        Everything shown: pairs, pair choice, run spec, results, selected cell.
    controller : Controller
        The worker; ``controller.model`` is the loaded model.
    sweep, readout_presenter, decompose_presenter, pairs_presenter, stats_presenter,
    difference_presenter, score_presenter : presenters
    reporter : StatusReporter
        Status line, error dialogs and error log; ``quiet``, ``last_error`` (the last failure
        shown: tests and the screenshot tool read it), ``last_details`` and ``error_log_path``
        are its attributes under the window's names.
    """

    def __init__(self, settings: QSettings | None = None, autosave_path: Path | None = None) -> None:
        super().__init__()
        from patchlab.engine.embedded import list_embedded
        from patchlab.engine.loading import available_devices

        self.qsettings = settings if settings is not None else QSettings("patchlab", "patchlab")
        self.autosave_path = autosave_path
        self.session_path: Path | None = None
        self.state = AppState(self)
        self.controller = Controller(self)
        self.writer = BackgroundWriter(self)  # CSV / JSON / session writes off the GUI thread
        self.reporter = StatusReporter(self, self.writer)  # status line, error dialogs, error log
        self.status_engine = self.reporter.engine_label
        self.status_model = self.reporter.model_label
        self.saver = SessionSaver(self)  # session saves, autosave after runs and on close

        self.model_panel = ModelPanel(list_embedded(), available_devices())
        self.pair_editor = PairEditor()
        self.experiment = ExperimentPanel()
        self.scope_bar = PairScopeBar()
        self.heatmap = HeatmapView()
        self.readouts = ReadoutPanel()
        self.decompose_view = DecomposeView()
        self.scatter = ScatterView()
        self.cell_pairs = CellPairsView()
        self.difference = HeatmapView()
        build_layout(self)

        c = self.controller
        c.on_done("suggest", self._done_suggest)
        self.sweep = SweepPresenter(self.state, self.heatmap, self.scatter, self.experiment,
                                    self.notify, self.reporter.record_error)
        c.on_progress("sweep", self.sweep.on_progress)
        c.on_done("sweep", self.sweep.on_done)
        self.readout_presenter = ReadoutPresenter(self.state, c, self.readouts, self.heatmap.describe)
        self.decompose_presenter = DecomposePresenter(self.state, c, self.decompose_view,
                                                      self.experiment, self.reporter.record_error)
        self.pairs_presenter = PairsPresenter(self.state, self.pair_editor, self.scope_bar,
                                              lambda: self.controller.model, self.experiment.run_btn.setEnabled)
        self.difference_presenter = DifferencePresenter(self.state, self.difference)
        self.stats_presenter = StatsPresenter(self.state, c, self.heatmap, self.cell_pairs)
        self.score_presenter = ScorePresenter(self.state, c, self.pair_editor.table_model)
        self.model_presenter = ModelPresenter(self.state, c, self.model_panel, self.pair_editor, self)
        self.stale_presenter = StalePresenter(self.state, self.experiment, self.heatmap, self.decompose_view,
                                              lambda: self.decompose_presenter.pairs)
        self.tabs.currentChanged.connect(self._on_tab)
        self.pair_editor.suggestRequested.connect(self.suggest)
        self.experiment.runRequested.connect(self.run)
        self.experiment.cancelRequested.connect(self.cancel)
        self.experiment.detailsRequested.connect(
            lambda details: self.reporter.show_details(self.experiment.progress_text.text(), details))
        c.done.connect(self.reporter.after_job)
        self.heatmap.cellSelected.connect(self.state.set_cell)
        self.heatmap.cbd.toggled.connect(self.decompose_view.set_colour_blind)
        self.decompose_view.runRequested.connect(self.run_decompose)
        for keys in ("Ctrl+Return", "Ctrl+Enter"):
            QShortcut(QKeySequence(keys), self, self.run)
        QShortcut(QKeySequence(Qt.Key_Escape), self, self.cancel)
        self._add_analysis_tabs()
        self.file_menu = FileMenu(self)  # also takes files dropped on the window
        self.restore_settings()
        self.model_presenter.update_title()
        self.pairs_presenter.pull()

    def _add_analysis_tabs(self) -> None:
        """Trace, Weights and Text tabs (issues 9 and 10): each a view and its presenter."""
        from patchlab.gui.analysis_tabs import add_analysis_tabs

        add_analysis_tabs(self)

    # -- messages (kept by ``self.reporter``; these are the window's names for them) -----
    quiet = _reported("quiet")
    last_error = _reported("last_error")
    last_details = _reported("last_details")
    error_log_path = _reported("error_log_path")

    def notify(self, text: str, timeout_ms: int = 5000) -> None:
        self.reporter.notify(text, timeout_ms)

    def show_error(self, title: str, text: str) -> None:
        self.reporter.show_error(title, text)

    def report_errors(self, fn, *args):
        """Call ``fn(*args)``; a PatchlabError is shown (and None returned) instead of raised."""
        return self.reporter.report_errors(fn, *args)

    def report_errors_later(self, fn, *args, then=None) -> None:
        """:meth:`report_errors` off the GUI thread (see :meth:`StatusReporter.report_errors_later`)."""
        self.reporter.report_errors_later(fn, *args, then=then)

    # -- model ----------------------------------------------------------------------------
    @Slot(str, str, str, str)
    def load_model(self, name: str, device: str = "auto", dtype: str = "float32",
                   processing: str = "compat") -> None:
        """Load a model in the worker; the current model stays usable if it fails."""
        self.model_presenter.load(name, device, dtype, processing)

    @property
    def model(self):
        return self.controller.model

    def model_info(self):
        return self.model_presenter.info()

    # -- pairs ----------------------------------------------------------------------------
    @Slot()
    def validate(self) -> bool:
        """Take the editor's pairs into the state and tokenise them; True when all are OK."""
        self.state.set_pairs(self.pair_editor.pairs())
        return self.pairs_presenter.validate()

    @Slot(str)
    def suggest(self, prompt: str) -> None:
        if self.model is not None:
            self.controller.submit("suggest", _engine()[2].suggest_answers,
                                   dict(model=self.model, prompt=prompt))

    def _done_suggest(self, out: Outcome) -> None:
        if out.ok:
            self.pair_editor.set_suggestions(out.value)

    # -- runs -----------------------------------------------------------------------------
    @Slot()
    def run(self) -> bool:
        """Freeze the inputs into a RunSpec and start the sweep; a running one is superseded."""
        validated = self.state.pairs_ok and self.pair_editor.pairs() == self.state.pairs
        if not validated and not self.validate():  # (validating 10k pairs again would stall)
            self.notify("Fix the prompt pair first (see the message under it).", 5000)
            return False
        s = self.experiment.settings()
        mixed = self.pairs_presenter.mixed_lengths(s.target)
        if mixed and not self._offer_length_group(mixed):
            return False
        st = self.state
        preview = s.method == "exact" and self.experiment.preview.isChecked()
        spec = RunSpec(model=self.model_info().name, pairs=tuple(st.pairs), target=s.target,
                       metric=s.metric, direction=s.direction, method=s.method, preview=preview,
                       tokens=tuple((tuple(c), tuple(k)) for c, k in st.tokens))
        self.last_error = None
        self.sweep.start(spec)
        kwargs = dict(model=self.model, pairs=list(spec.pairs), target=spec.target,
                      metric=spec.metric, direction=spec.direction, stop=None,
                      keep_on_error=True)  # an error mid-sweep keeps the finished rows
        if spec.method == "exact":
            self.controller.submit("sweep", preview_then_exact, dict(kwargs, preview=preview))
        else:
            self.controller.submit("sweep", _engine()[1].iter_patch, dict(kwargs, method=spec.method))
        return True

    def _offer_length_group(self, message: str) -> bool:
        """Mixed token lengths on a by-position target: say which, offer the largest group."""
        self.pair_editor.show_message(message)
        if self.quiet or QMessageBox.question(
                self, "Pairs of different lengths", message + "\n\nKeep only the largest group and run?"
        ) != QMessageBox.Yes:
            self.last_error = message
            return False
        self.pairs_presenter.keep_largest_length_group()
        return self.validate()

    @Slot()
    def cancel(self) -> None:
        if self.controller.running_kind == "sweep" or not self.controller.is_idle():
            self.controller.cancel("sweep")
            self.experiment.set_status("Cancelling\u2026")

    @Slot(int)
    def _on_tab(self, _index: int) -> None:
        """The Decompose tab runs on first open (issue 11 item 9) when it has nothing to show."""
        if (self.tabs.currentWidget() is self.decompose_view and self.state.decomposition is None
                and self.model is not None and self.state.pairs_ok
                and self.controller.latest_id("decompose") is None):
            self.run_decompose()

    @Slot()
    def run_decompose(self) -> bool:
        if not self.validate():
            self.decompose_view.note.setText("Fix the prompt pair first.")
            return False
        return self.decompose_presenter.run()

    # -- settings and sessions ------------------------------------------------------------
    def restore_settings(self) -> None:
        settings_service.restore(self.qsettings, self, self.model_panel, self.experiment, self.heatmap)

    def save_settings(self) -> None:
        settings_service.save(self.qsettings, self, self.model_panel, self.experiment, self.heatmap)

    def session_settings(self) -> dict:
        return dict(vars(self.experiment.settings()), colour_blind=self.heatmap.cbd.isChecked())

    def apply_session(self, session) -> None:
        """Show a session; loads its model if another one is loaded."""
        self.experiment.set_settings(session.settings)
        self.heatmap.cbd.setChecked(bool(session.settings.get("colour_blind", False)))
        sessions.apply_session(self.state, session)
        name = session.model.get("name")
        info = self.model_info()
        if name and (info is None or info.name != name):
            self.load_model(name, "auto", session.model.get("dtype", "float32"),
                            session.model.get("processing", "compat"))

    def open_session(self, path: str | Path) -> bool:
        """Open a ``.patchlab`` file; a bad file shows a message and changes nothing."""
        try:
            session = sessions.load(path)
        except PatchlabError as exc:
            self.show_error("Cannot open session", str(exc))
            return False
        self.apply_session(session)
        self.session_path = Path(path)
        self._add_recent_session(str(path))
        self.notify(f"Opened {path}", 5000)
        return True

    def save_session(self, path: str | Path) -> bool:
        """Save in the background (``writer.wait()`` waits for it); False if it cannot start."""
        return self.saver.save(path)

    def autosave(self) -> None:
        self.saver.autosave()

    def restore_autosave(self) -> bool:
        if self.autosave_path is None or not Path(self.autosave_path).is_file():
            return False
        try:
            session = sessions.load(self.autosave_path)
        except PatchlabError as exc:
            self.notify(f"Previous session not restored: {exc}", 15000)
            return False
        self.apply_session(session)
        return bool(session.model.get("name"))

    def _add_recent_session(self, path: str) -> None:
        settings_service.add_recent_session(self.qsettings, path)
        self.file_menu.refresh_recent()

    # -- exports --------------------------------------------------------------------------
    def figure(self, name: str):
        """The graphics view of figure ``name`` (heatmap, scatter, decompose, difference), drawn now."""
        view = {"heatmap": self.heatmap, "decompose": self.decompose_view, "scatter": self.scatter,
                "difference": self.difference}[name]
        if name != "decompose":
            view.flush()
        return view.graphics

    def current_figure_name(self) -> str:
        tab = self.tabs.currentWidget()
        names = {self.decompose_view: "decompose", self.scatter: "scatter", self.difference: "difference"}
        return names.get(tab, "heatmap")

    def export_figure(self, path: str | Path, which: str | None = None) -> Path:
        which = which or self.current_figure_name()
        return exports.export_figure(self.figure(which), path, which)

    def export_data(self, path: str | Path) -> list[Path]:
        return exports.export_data(self.state, path, self.current_figure_name())

    def export_all(self, folder: str | Path) -> list[Path]:
        return exports.export_all(self.state, folder, self.figure, self.session_settings())

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt API
        try:  # the window closes whatever saving does: failures are logged, not raised
            self.saver.close()
        finally:
            super().closeEvent(event)
