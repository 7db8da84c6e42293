"""File writes off the GUI thread (issue 11 item 4): CSV, JSON run records and sessions.

Serialising a long sweep's CSV or a session with several results takes long enough to freeze
the window; these writes touch no model and no widget, so they run on a plain Python thread
(never the model worker, so they need not wait for a sweep). The outcome comes back to the
main thread through a queued Qt signal. :meth:`BackgroundWriter.wait` (on close) lets
pending writes finish, so quitting right after "Save" never leaves a half-written file.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot


class BackgroundWriter(QObject):
    """Runs ``fn(*args)`` on a thread; ``on_done(value, error, details)`` on the main thread."""

    _finished = Signal(object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._threads: list[threading.Thread] = []
        self._finished.connect(self._deliver)

    def submit(self, fn: Callable[..., Any], *args: Any,
               on_done: Callable[[Any, BaseException | None, str], None]) -> threading.Thread:
        def body() -> None:
            try:
                value, error, details = fn(*args), None, ""
            except Exception as exc:  # noqa: BLE001 - handed to the main thread, shown there
                value, error, details = None, exc, traceback.format_exc()
            self._finished.emit((on_done, value, error, details))

        thread = threading.Thread(target=body, name="patchlab-writer", daemon=False)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        return thread

    def pending(self) -> int:
        return sum(t.is_alive() for t in self._threads)

    def wait(self, timeout_s: float = 30.0) -> None:
        """Let pending writes finish (call before the window closes)."""
        for t in self._threads:
            t.join(timeout_s)
        self._threads = []

    @Slot(object)
    def _deliver(self, packed) -> None:
        on_done, value, error, details = packed
        on_done(value, error, details)
