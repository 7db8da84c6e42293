"""The menu bar and its dialogs: File (sessions, exports), Model, Help.

:class:`FileMenu` owns the actions and the file dialogs; the work itself is the window's public
API (``open_session``, ``export_figure``...) and the services behind it.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Slot
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QFileDialog, QMessageBox

import patchlab
from patchlab.core.session import SUFFIX
from patchlab.gui.services import figures
from patchlab.gui.services import settings as settings_service


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
        self._act(file, "Export figure (PNG/SVG)\u2026", self.export_figure_dialog, "Ctrl+E")
        self._act(file, "Export data (CSV + JSON run record)\u2026", self.export_data_dialog)
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
    def export_figure_dialog(self) -> None:
        name = self.w.current_figure_name()
        path, _ = QFileDialog.getSaveFileName(self.w, "Export figure", f"{name}.png", "PNG (*.png);;SVG (*.svg)")
        if path:
            self.w.report_errors(self.w.export_figure, path)

    @Slot()
    def export_data_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self.w, "Export data", "result.csv", "CSV (*.csv)")
        if path:
            self.w.report_errors(self.w.export_data, path)

    @Slot()
    def export_all_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.w, "Export all to folder")
        if folder:
            self.w.report_errors(self.w.export_all, folder)

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
