"""Helpers shared by the GUI tests (a plain module: 'conftest' is ambiguous on sys.path)."""

from PySide6.QtCore import QObject, Slot

WAIT_MS = 90_000


def wait_idle(qtbot, window, timeout=WAIT_MS):
    qtbot.waitUntil(lambda: window.controller.is_idle(), timeout=timeout)


def wait_result(qtbot, window, timeout=WAIT_MS):
    """Wait for a sweep result; a failure shows its message instead of a bare timeout."""
    qtbot.waitUntil(lambda: window.state.result is not None or bool(window.last_error), timeout=timeout)
    assert window.last_error is None, window.last_error
    wait_idle(qtbot, window, timeout)
    return window.state.result


def wait_progress(qtbot, window, timeout=WAIT_MS):
    qtbot.waitUntil(lambda: window.experiment.progress.value() > 0 or bool(window.last_error), timeout=timeout)
    assert window.last_error is None, window.last_error


def slow_iter_patch(monkeypatch, delay: float, phase: str | None = None):
    """Make every sweep sleep ``delay`` s after each layer row (of ``phase`` only, if given),
    so a test can act mid-run on a tiny model."""
    import time

    import patchlab.engine.sweep as sweep_module

    real = sweep_module.iter_patch

    def slow(*args, **kwargs):
        gen = real(*args, **kwargs)
        while True:
            try:
                event = next(gen)
            except StopIteration as stop:
                return stop.value
            yield event
            if phase is None or event.phase == phase:
                time.sleep(delay)

    monkeypatch.setattr(sweep_module, "iter_patch", slow)


class Recorder(QObject):
    """Collects the controller's finished outcomes (a bound slot on a main-thread object)."""

    def __init__(self, out):
        super().__init__()
        self.out = out

    @Slot(object)
    def record_done(self, outcome):
        self.out.append(outcome)
