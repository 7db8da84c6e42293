"""Helpers shared by the GUI tests (a plain module: 'conftest' is ambiguous on sys.path)."""

WAIT_MS = 90_000


def wait_idle(qtbot, window, timeout=WAIT_MS):
    qtbot.waitUntil(lambda: window.controller.is_idle(), timeout=timeout)
