"""The menu bar and its dialogs: File (sessions, exports), Model, Help.

:class:`FileMenu` owns the actions and the file dialogs; the work itself is the window's public
API (``open_session``, ``export_figure``...) and the services behind it.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Slot
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence
from PySide6.QtWidgets import QFileDialog, QMessageBox

import patchlab
from patchlab.core.errors import PatchlabError
from patchlab.core.session import SUFFIX
from patchlab.gui.services import exports, figures
from patchlab.gui.services import settings as settings_service

PAIR_FILES = "Pair files (*.csv *.tsv *.jsonl *.json);;All files (*)"


class FileMenu(QObject):
    """Builds the window's menu bar; its slots open the dialogs."""

    def __init__(self, window) -> None:
        super().__init__(window)
        self.w = window
        bar = window.menuBar()
        file = bar.addMenu("&File")
        self._act(file, "&Open session\u2026", self.open_session_dialog, QKeySequence.Open)
        self.recent = file.addMenu("Open &recent")
        self.recent.triggered.connect(self.open_recent)
        self._act(file, "&Save session", self.save_session_action, QKeySequence.Save)
        self._act(file, "Save session &as\u2026", self.save_session_as, QKeySequence.SaveAs)
        file.addSeparator()
        self._act(file, "&Load pairs (CSV, TSV, JSONL)\u2026", self.load_pairs_dialog, "Ctrl+L")
        self._act(file, "Save &pairs\u2026", self.save_pairs_dialog)
        self._act(file, "Paste pairs (tab-separated rows)", self.paste_pairs, "Ctrl+Shift+V")
        self._act(file, "&Generate pairs (template or toy rule)\u2026", self.generate_dialog, "Ctrl+G")
        file.addSeparator()
        self._act(file, "Export figure (PNG/SVG)\u2026", self.export_figure_dialog, "Ctrl+E")
        self._act(file, "Export data (CSV + JSON run record)\u2026", self.export_data_dialog)
        self._act(file, "Export as Python script (patchlab)\u2026", self.export_script_dialog)
        self._act(file, "Export as Python script (plain TransformerLens)\u2026", self.export_tl_script_dialog)
        self._act(file, "Export &all to a folder\u2026", self.export_all_dialog)
        self._act(file, "&Copy figure", self.copy_figure, "Ctrl+Shift+C")
        file.addSeparator()
        self._act(file, "&Quit", window.close, QKeySequence.Quit)
        self.file = file
        self.model = bar.addMenu("&Model")
        self._act(self.model, "Open model (Hub id or folder)\u2026", window.model_panel.open_model_dialog)
        self.help = bar.addMenu("&Help")
        self._act(self.help, "&About patchlab", self.about)
        self.refresh_recent()
        window.cell_pairs.exportRequested.connect(self.export_top_cells_dialog)
        window.setAcceptDrops(True)
        window.installEventFilter(self)

    # -- pair files and drops -------------------------------------------------------------
    def try_pairs(self, fn, arg, done: str = "Loaded"):
        """Run a pair-file action; a bad file shows its message (which line) and changes nothing."""
        try:
            out = fn(arg)
        except PatchlabError as exc:
            self.w.show_error("Pairs", str(exc))
            return None
        self.w.notify(f"{done} {len(out)} pairs." if isinstance(out, list) else f"{done} {out}", 8000)
        return out

    def load_pairs_file(self, path) -> bool:
        """Replace the pairs with a file's; False (and a message) when the file is bad."""
        return self.try_pairs(self.w.pairs_presenter.load_file, path) is not None

    def drop_files(self, paths: list[str]) -> bool:
        """A dropped session opens; any other file is read as pairs."""
        for path in paths:
            if path:
                return self.w.open_session(path) if path.endswith(SUFFIX) else self.load_pairs_file(path)
        return False

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt API
        if obj is self.w and event.type() in (QEvent.DragEnter, QEvent.Drop) and event.mimeData().hasUrls():
            event.acceptProposedAction()
            if event.type() == QEvent.Drop:
                self.drop_files([u.toLocalFile() for u in event.mimeData().urls()])
            return True
        return super().eventFilter(obj, event)

    def _act(self, menu, text, slot, shortcut=None) -> QAction:
        action = QAction(text, self.w)
        if shortcut is not None:
            action.setShortcut(shortcut)
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def refresh_recent(self) -> None:
        self.recent.clear()
        for p in settings_service.recent_sessions(self.w.qsettings):
            self.recent.addAction(p).setData(p)
        self.recent.setEnabled(not self.recent.isEmpty())

    @Slot(QAction)
    def open_recent(self, action: QAction) -> None:
        self.w.open_session(action.data())

    @Slot()
    def open_session_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.w, "Open session", "", f"patchlab sessions (*{SUFFIX})")
        if path:
            self.w.open_session(path)

    @Slot()
    def save_session_action(self) -> None:
        if self.w.session_path:
            self.w.save_session(self.w.session_path)
        else:
            self.save_session_as()

    @Slot()
    def save_session_as(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self.w, "Save session", "experiment" + SUFFIX,
                                              f"patchlab sessions (*{SUFFIX})")
        if path:
            self.w.save_session(path if path.endswith(SUFFIX) else path + SUFFIX)

    @Slot()
    def load_pairs_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.w, "Load pairs", "", PAIR_FILES)
        if path:
            self.load_pairs_file(path)

    @Slot()
    def save_pairs_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self.w, "Save pairs", "pairs.csv", PAIR_FILES)
        if path:
            self.try_pairs(self.w.pairs_presenter.save_file, path, done="Saved the pairs to")

    @Slot()
    def paste_pairs(self) -> None:
        self.try_pairs(self.w.pairs_presenter.paste, QGuiApplication.clipboard().text(),
                         done="Pasted")

    @Slot()
    def export_figure_dialog(self) -> None:
        name = self.w.current_figure_name()
        path, _ = QFileDialog.getSaveFileName(self.w, "Export figure", f"{name}.png", "PNG (*.png);;SVG (*.svg)")
        if path:
            self.w.report_errors(self.w.export_figure, path)

    @Slot()
    def export_data_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self.w, "Export data", "result.csv", "CSV (*.csv)")
        if path:
            try:  # the results are picked here; CSV + JSON are written off the GUI thread
                write = exports.data_writer(self.w.state, self.w.current_figure_name())
            except PatchlabError as exc:
                self.w.show_error("Export failed", str(exc))
                return
            self.w.report_errors_later(write, path)

    @Slot()
    def export_all_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.w, "Export all to folder")
        if not folder:
            return
        try:  # figures now (Qt needs the GUI thread); data files and the session on the writer
            _figures, write_rest = exports.export_all_parts(self.w.state, folder, self.w.figure,
                                                            self.w.session_settings())
        except PatchlabError as exc:
            self.w.show_error("Export failed", str(exc))
            return
        self.w.report_errors_later(write_rest)

    @Slot()
    def export_top_cells_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self.w, "Export top cells", "top_cells.csv", "CSV (*.csv)")
        if path:
            self.w.report_errors(exports.export_top_cells, self.w.state,
                                 self.w.stats_presenter.stats, path)

    @Slot()
    def export_script_dialog(self, style: str = "patchlab") -> None:
        name = "reproduce_tl.py" if style == "transformerlens" else "reproduce.py"
        path, _ = QFileDialog.getSaveFileName(self.w, "Export as Python script", name, "Python (*.py)")
        if path:
            self.w.report_errors(exports.export_script, self.w.state, path, style)

    @Slot()
    def export_tl_script_dialog(self) -> None:
        self.export_script_dialog("transformerlens")

    def generate(self, rule: str, n: int, seed: int, template=None) -> bool:
        """Replace the pairs with ``n`` generated ones; False (and a message) on bad input."""
        from patchlab.engine.pairgen import generate_pairs

        model = self.w.model if self.w.model is not None else ""
        return self.try_pairs(lambda _: self.w.pairs_presenter.set_pairs(
            generate_pairs(model, template or rule, n=n, seed=seed)), None, done="Generated") is not None

    @Slot()
    def generate_dialog(self) -> None:
        from patchlab.engine.pairgen import available_generators
        from patchlab.gui.views.generate_dialog import GenerateDialog

        dialog = GenerateDialog(available_generators(self.w.model), self.w)
        if dialog.exec():
            try:
                rule, n, seed, template = dialog.request()
            except PatchlabError as exc:
                self.w.show_error("Generate pairs", str(exc))
                return
            self.generate(rule, n, seed, template)

    @Slot()
    def copy_figure(self) -> None:
        figures.copy_figure(self.w.figure(self.w.current_figure_name()))
        self.w.notify("Figure copied to the clipboard.", 4000)

    @Slot()
    def about(self) -> None:
        info = self.w.model_info()
        model = (f"Model: {info.name} ({info.source})<br>Device: {info.device}, {info.dtype}<br>"
                 f"Processing: {info.processing}" if info else "No model loaded")
        QMessageBox.about(self.w, "About patchlab", f"<b>patchlab {patchlab.__version__}</b><br>"
                          f"Activation patching for transformer language models.<br><br>{model}")
