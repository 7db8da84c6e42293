"""The app's garbage-collection guard: automatic cyclic GC off, collection on the GUI thread."""

import gc
import threading
import weakref

import pytest
from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QApplication

from patchlab.gui import app as app_module
from patchlab.gui import gc_guard


@pytest.fixture
def restore_gc():
    enabled = gc.isenabled()
    yield
    gc_guard.uninstall()
    gc.unfreeze()  # run_app freezes the start-up heap; give this test process's back
    if enabled:
        gc.enable()


class Node:
    pass


def make_cycle(seen):
    """A reference cycle whose collection records the collecting thread in ``seen``."""
    a, b = Node(), Node()
    a.other, b.other = b, a
    weakref.finalize(a, lambda: seen.append(threading.get_ident()))


def test_run_app_turns_automatic_collection_off(qtbot, monkeypatch, restore_gc):
    class FakeController(QObject):
        modelChanged = Signal(object)

    class FakeWindow:  # run_app's own steps only; the real window is tested elsewhere
        qsettings = type("S", (), {"value": staticmethod(lambda key: None)})()
        controller = FakeController()

        def show(self):
            pass

    during = {}

    def fake_exec(app):
        during["enabled"] = gc.isenabled()
        during["guard"] = gc_guard._GUARD
        return 0

    monkeypatch.setattr(app_module, "make_window", lambda **kw: FakeWindow())
    monkeypatch.setattr(app_module, "fit_to_screen", lambda *a, **k: None)
    monkeypatch.setattr(app_module, "default_autosave_path", lambda: None)
    monkeypatch.setattr(app_module, "_exec", fake_exec)
    gc.enable()
    assert app_module.run_app([]) == 0
    assert during["enabled"] is False, "the app left automatic (any-thread) collection on"
    guard = during["guard"]
    assert guard is not None and guard.active and guard.parent() is QApplication.instance()
    assert guard.thread_id == threading.main_thread().ident
    # a model load (torch, TransformerLens, the weights) is frozen once it is in: a cycle
    # frozen earlier (e.g. the previous model's) is collected by the refreeze
    seen = []
    make_cycle(seen)
    gc.freeze()
    FakeWindow.controller.modelChanged.emit(None)
    assert guard.refreezes == 1 and gc.get_freeze_count() > 0
    assert seen == [threading.main_thread().ident]


def test_guard_collects_a_cycle_on_the_gui_thread(qtbot, restore_gc):
    guard = gc_guard.install(QApplication.instance(), interval_ms=10)
    assert not gc.isenabled()
    seen = []
    make_cycle(seen)
    # allocations in another thread no longer trigger a collection there
    junk = []
    worker = threading.Thread(target=lambda: junk.extend([[i] for i in range(50_000)]))
    worker.start()
    worker.join()
    assert seen == [], "a collection ran outside the guard"
    before = sum(guard.collections)
    qtbot.waitUntil(lambda: bool(seen), timeout=5000)  # the guard's timer tick collects it
    assert seen == [threading.main_thread().ident]
    assert sum(guard.collections) > before
    gc_guard.uninstall()
    assert gc.isenabled(), "uninstall gives collection back"


def test_new_app_hands_the_gil_to_the_gui_thread_sooner():
    """``ensure_app`` shortens CPython's 5 ms GIL switch interval when it makes the app.

    Run in a fresh interpreter: this process's ``QApplication`` already exists.
    """
    import os
    import subprocess
    import sys

    code = ("import sys; from patchlab.gui.app import ensure_app, GIL_SWITCH_INTERVAL_S as want; "
            "before = sys.getswitchinterval(); ensure_app([]); "
            "print(before, sys.getswitchinterval(), want)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert out.returncode == 0, out.stderr
    before, after, want = map(float, out.stdout.split())
    assert before == pytest.approx(0.005) and after == pytest.approx(want) and want < before
