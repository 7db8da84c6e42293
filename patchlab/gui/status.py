"""The window's status line and error messages (the status/error panel).

:class:`StatusReporter` owns what the window says about outcomes: transient status messages,
the permanent status-bar labels (engine of the last sweep, loaded model), the last failure shown
(``last_error``, read by tests and the screenshot tool), the Details dialog with a job's
traceback, the error log file, and the "run this export and say how it went" helpers the menus
use. The window exposes these under its own names (``MainWindow.notify``, ``.last_error``...).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Slot
from PySide6.QtWidgets import QLabel, QMainWindow, QMessageBox

from patchlab.core.errors import PatchlabError
from patchlab.gui.jobs import Outcome
from patchlab.gui.services import errorlog
from patchlab.gui.services.background import BackgroundWriter


def engine_text(meta: dict) -> str:
    """Status-line text: which engine ran the sweep, and why it fell back (issue 13 item 5)."""
    path = meta.get("engine_path") or ""
    if not path:
        return ""
    reason = meta.get("fallback_reason") or ""
    return f"engine: {path}" + (f" (fallback: {reason})" if reason else "")


class StatusReporter(QObject):
    """Status messages, error dialogs and the error log of ``window``.

    Parameters
    ----------
    window : QMainWindow
        Whose status bar shows the messages; the parent of the dialogs.
    writer : BackgroundWriter
        Runs :meth:`report_errors_later`'s writes off the GUI thread.

    Attributes
    ----------
    quiet : bool
        No modal dialogs (tests, screenshots).
    last_error : str or None
        The last failure message shown.
    last_details : str
        The last traceback shown by :meth:`show_details` (with where the log file is).
    error_log_path : Path or None
        Where tracebacks are logged (tests use a temporary file); ``None`` logs nothing.
    engine_label, model_label : QLabel
        The status bar's permanent labels: engine of the last sweep, loaded model.
    """

    def __init__(self, window: QMainWindow, writer: BackgroundWriter) -> None:
        super().__init__(window)
        self.window = window
        self.writer = writer
        self.quiet = False
        self.last_error: str | None = None
        self.last_details = ""
        self.error_log_path: Path | None = errorlog.default_log_path()
        self.engine_label = QLabel("")
        self.engine_label.setAccessibleName("engine of the last run")
        window.statusBar().addPermanentWidget(self.engine_label)
        self.model_label = QLabel("no model")
        window.statusBar().addPermanentWidget(self.model_label)

    def notify(self, text: str, timeout_ms: int = 5000) -> None:
        self.window.statusBar().showMessage(text, timeout_ms)

    def record_error(self, text: str) -> None:
        self.last_error = text

    @Slot(object)
    def after_job(self, out: Outcome) -> None:
        """Every finished job: log tracebacks; say which engine a sweep ran on."""
        if out.status.value == "error":
            errorlog.log_error(self.error_log_path, out.kind, out.error or "", out.details)
        if out.kind != "sweep" or not out.ok or out.value is None:
            return
        meta = getattr(out.value, "meta", {})
        if meta.get("partial"):
            errorlog.log_error(self.error_log_path, "sweep", str(meta.get("error")),
                               meta.get("error_details", ""))
        self.engine_label.setText(engine_text(meta))
        self.engine_label.setToolTip(meta.get("fallback_reason") or "")

    def show_details(self, message: str, details: str) -> None:
        """The Details button: ``message`` over the traceback, and where the log file is."""
        where = f"\n\nAlso written to {self.error_log_path}" if self.error_log_path else ""
        self.last_details = details + where
        if self.quiet:
            return
        box = QMessageBox(QMessageBox.Warning, "Error details", message, QMessageBox.Close, self.window)
        box.setDetailedText(self.last_details)
        box.exec()

    def show_error(self, title: str, text: str) -> None:
        self.notify(text, 15000)
        self.last_error = text
        if not self.quiet:
            QMessageBox.warning(self.window, title, text)

    def report_errors(self, fn, *args):
        """Call ``fn(*args)``; a PatchlabError is shown (and None returned) instead of raised."""
        try:
            out = fn(*args)
        except PatchlabError as exc:
            self.show_error("Export failed", str(exc))
            return None
        self.notify(f"Exported {out}", 8000)
        return out

    def report_errors_later(self, fn, *args, then=None) -> None:
        """:meth:`report_errors` with ``fn`` run off the GUI thread (file writes only: it must
        touch no widget and no model); ``then(value)`` runs on the main thread on success."""
        def done(value, error, details):
            if isinstance(error, PatchlabError):
                self.show_error("Export failed", str(error))
            elif error is not None:
                errorlog.log_error(self.error_log_path, "write", repr(error), details)
                self.show_error("Export failed", f"{type(error).__name__}: {error}")
            else:
                self.notify(f"Saved {value}", 8000)
                if then is not None:
                    then(value)

        self.notify("Writing\u2026", 0)
        self.writer.submit(fn, *args, on_done=done)
