"""Application start-up: QApplication, palette following the system, the main window."""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QSettings, QStandardPaths, Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

APP_NAME = "patchlab"


#: How long a thread may hold the GIL while another waits for it (CPython's default is 5 ms).
#: Each call from the GUI thread into Qt releases the GIL and takes it back; with a worker or
#: the session writer running Python code, every take-back can wait a whole interval, and a
#: redraw with dozens of such calls stalled the event loop for 100-117 ms during a 512-token
#: sweep. At 1 ms the same run's longest stall was 42 ms, at the same sweep time
#: (``benchmarks/gui_stalls.py``; docs/benchmarks.md).
GIL_SWITCH_INTERVAL_S = 0.001


def ensure_app(argv: list[str] | None = None) -> QApplication:
    """The ``QApplication`` (made once, with patchlab's names, style and palette)."""
    app = QApplication.instance()
    if app is None:
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        app = QApplication([APP_NAME, *(argv or [])])
        app.setApplicationName(APP_NAME)
        app.setOrganizationName(APP_NAME)
        app.setStyle("Fusion")
    apply_palette(app)
    return app


def is_dark() -> bool:
    hints = QGuiApplication.styleHints()
    return hasattr(hints, "colorScheme") and hints.colorScheme() == Qt.ColorScheme.Dark


def apply_palette(app: QApplication) -> None:
    """Light or dark palette after the system; pyqtgraph draws in the palette's colours."""
    import pyqtgraph as pg

    if is_dark():
        pal = QPalette()
        for role, colour in ((QPalette.Window, "#2b2b2b"), (QPalette.WindowText, "#e6e6e6"),
                             (QPalette.Base, "#1e1e1e"), (QPalette.AlternateBase, "#2f2f2f"),
                             (QPalette.Text, "#e6e6e6"), (QPalette.Button, "#353535"),
                             (QPalette.ButtonText, "#e6e6e6"), (QPalette.Highlight, "#3d7fd9"),
                             (QPalette.HighlightedText, "#ffffff"), (QPalette.ToolTipBase, "#333333"),
                             (QPalette.ToolTipText, "#e6e6e6")):
            pal.setColor(role, QColor(colour))
        app.setPalette(pal)
    else:
        app.setPalette(app.style().standardPalette())
    pal = app.palette()
    pg.setConfigOptions(background=pal.color(QPalette.Window), foreground=pal.color(QPalette.WindowText),
                        antialias=True)


def default_autosave_path() -> Path:
    folder = Path(QStandardPaths.writableLocation(QStandardPaths.AppDataLocation) or Path.home() / ".patchlab")
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "autosave.patchlab"


def make_window(settings: QSettings | None = None, autosave_path: Path | None = None,
                restore: bool = True, load_default: bool = True):
    """Create the main window; restore the autosaved session or load the default model."""
    from patchlab.gui.main_window import MainWindow

    window = MainWindow(settings=settings, autosave_path=autosave_path)
    restored = window.restore_autosave() if restore else False
    if not restored and load_default:
        window.load_model("", "auto", "float32", "compat")
    return window


def fit_to_screen(window, width: int = 1400, height: int = 900, keep_size: bool = False,
                  available=None) -> None:
    """Place the window inside the free area of its screen (issue 11: any screen).

    The size is (width, height), or the window's own size with ``keep_size`` (a restored
    geometry), shrunk to the screen's available geometry; a window whose frame lies partly
    or wholly off that area (e.g. restored from a larger or a detached monitor) is moved
    back inside it. ``available`` (a QRect) overrides the screen's free area (tests).
    """
    screen = window.screen() if hasattr(window, "screen") else None
    centre = window.frameGeometry().center()
    at = QGuiApplication.screenAt(centre)
    screen = at or screen or QGuiApplication.primaryScreen()
    if available is None and screen is None:
        window.resize(width, height)
        return
    avail = available if available is not None else screen.availableGeometry()
    if keep_size:
        width, height = window.width(), window.height()
    # the frame (title bar, borders) is not part of resize(): leave room for it
    extra_w = max(0, window.frameGeometry().width() - window.width())
    extra_h = max(0, window.frameGeometry().height() - window.height())
    width = min(width, avail.width() - extra_w)
    height = min(height, avail.height() - extra_h)
    window.resize(max(width, 1), max(height, 1))
    frame = window.frameGeometry()
    x = min(max(frame.x(), avail.x()), avail.right() + 1 - frame.width())
    y = min(max(frame.y(), avail.y()), avail.bottom() + 1 - frame.height())
    if (x, y) != (frame.x(), frame.y()):
        window.move(max(x, avail.x()), max(y, avail.y()))


def _exec(app: QApplication) -> int:
    """The event loop (a function of its own so tests can run :func:`run_app` without it)."""
    return int(app.exec())


def run_app(argv: list[str] | None = None) -> int:
    """Open the main window; the default model loads in the background. Returns the exit code."""
    from patchlab.gui import gc_guard

    argv = list(argv if argv is not None else sys.argv[1:])
    sessions = [a for a in argv if a.endswith(".patchlab")]
    app = ensure_app([a for a in argv if a not in sessions])
    import patchlab.gui.main_window  # noqa: F401 - imported before the freeze below

    # cyclic GC only on this (the GUI) thread: a worker thread's collection freed Qt wrappers
    # off the GUI thread and crashed; the start-up heap goes to the permanent generation
    guard = gc_guard.install(app, freeze=True)
    window = make_window(autosave_path=default_autosave_path(), restore=not sessions,
                         load_default=not sessions)
    window.controller.modelChanged.connect(guard.refreeze)  # torch & the model: frozen once loaded
    if sessions and not window.open_session(sessions[0]):
        window.load_model("", "auto", "float32", "compat")  # the message says why
    fit_to_screen(window, keep_size=window.qsettings.value("window/geometry") is not None)
    window.show()
    return _exec(app)
