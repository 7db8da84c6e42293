"""GUI test fixtures: a main window on a temp QSettings file and autosave path, thread checks."""

import gc
import threading

import pytest

if __import__("os").environ.get("CI", "").lower() in ("1", "true", "yes"):
    import PySide6  # noqa: F401
    import pytestqt  # noqa: F401  (in CI a missing GUI test dependency fails, never skips)
pytest.importorskip("PySide6", reason="PySide6 is not installed: GUI tests skipped")
pytest.importorskip("pytestqt", reason="pytest-qt is not installed: GUI tests skipped")

from guihelpers import WAIT_MS, wait_idle  # noqa: E402
from PySide6.QtCore import QSettings, QThreadPool  # noqa: E402


@pytest.fixture(scope="session")
def gui_model_name(tiny_dir):
    """The embedded default model when it is built, else a tiny random GPT-2."""
    from patchlab.engine import embedded

    if embedded.is_embedded(embedded.DEFAULT_MODEL):
        return embedded.DEFAULT_MODEL
    return str(tiny_dir / "gpt2")


@pytest.fixture(autouse=True)
def _free_qt_objects_on_the_gui_thread():
    """Free a test's Qt objects here, after pytest-qt has closed its widgets (autouse: torn down last).

    Qt wrappers caught in reference cycles are otherwise freed by whichever thread next runs the
    cyclic garbage collector; when that was a later test's worker thread, the run segfaulted.
    """
    yield
    from PySide6.QtCore import QCoreApplication, QEvent

    if QCoreApplication.instance() is not None:
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    gc.collect()


def _python_threads():
    return {t for t in threading.enumerate() if not isinstance(t, threading._DummyThread)}


@pytest.fixture
def make_window(qtbot, tmp_path):
    """Factory: a shown main window (no autosave restore, quiet dialogs); closed at teardown."""
    from patchlab.gui.app import ensure_app
    from patchlab.gui.app import make_window as _make

    ensure_app([])
    before = _python_threads()
    windows = []

    def factory(model=None, autosave=True):
        settings = QSettings(str(tmp_path / f"settings{len(windows)}.ini"), QSettings.IniFormat)
        w = _make(settings=settings, autosave_path=tmp_path / "autosave.patchlab" if autosave else None,
                  restore=False, load_default=False)
        w.quiet = True
        w.error_log_path = tmp_path / "errors.log"  # never the user's data folder
        w.resize(1300, 850)
        qtbot.addWidget(w)
        w.show()
        windows.append(w)
        if model is not None:
            w.load_model(model, "cpu", "float32", "compat")
            qtbot.waitUntil(lambda: w.model is not None, timeout=WAIT_MS)
            wait_idle(qtbot, w)
        return w

    yield factory
    for w in windows:
        w.close()
    assert QThreadPool.globalInstance().activeThreadCount() == 0, "a worker thread is still running"
    leaked = _python_threads() - before
    assert not leaked, f"leaked threads: {leaked}"


@pytest.fixture
def window(make_window, gui_model_name):
    w = make_window(gui_model_name)
    assert w.pair_editor.pairs()[0].clean, "the first example should be filled in"
    return w
