"""File writes off the GUI thread (issue 11 item 4): CSV, JSON run records and sessions.

Serialising a long sweep's CSV or a session with several results takes long enough to freeze
the window; these writes touch no model and no widget, so they run on a plain Python thread
(never the model worker, so they need not wait for a sweep). Writes run one at a time in the
order they were submitted, so a later save of a file can never be overwritten by an earlier
one finishing late; a write that is still queued when a newer one with the same ``key``
arrives is skipped (the newer one supersedes it). Outcomes come back to the main thread
through a queued Qt signal; :meth:`BackgroundWriter.wait` (on close) lets pending writes
finish and delivers their outcomes at once, so quitting right after "Save" never leaves a
half-written file or an unreported error.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot

Done = Callable[[Any, BaseException | None, str], None]


@dataclass
class _Write:
    ticket: int
    fn: Callable[..., Any]
    args: tuple
    on_done: Done | None
    key: Hashable | None


class BackgroundWriter(QObject):
    """Runs ``fn(*args)`` on a writer thread in submission order.

    ``on_done(value, error, details)`` runs on the main thread (``error`` None on success,
    ``details`` the traceback). The thread exists only while there is work, so an idle app
    holds no extra thread and the interpreter never waits for one at exit.

    Attributes
    ----------
    skipped : int
        Writes dropped because a newer write with the same key was queued behind them.
    """

    _poke = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._lock = threading.Lock()
        self._queue: deque[_Write] = deque()
        self._outcomes: deque[tuple[Done | None, Any, BaseException | None, str]] = deque()
        self._latest: dict[Hashable, int] = {}
        self._thread: threading.Thread | None = None
        self._next = 0
        self._busy = False
        self.skipped = 0
        self._poke.connect(self._deliver)

    def submit(self, fn: Callable[..., Any], *args: Any, on_done: Done | None = None,
               key: Hashable | None = None) -> int:
        """Queue ``fn(*args)``; returns its ticket (increasing). ``key``: see the module doc."""
        with self._lock:
            self._next += 1
            job = _Write(self._next, fn, args, on_done, key)
            self._queue.append(job)
            if key is not None:
                self._latest[key] = job.ticket
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="patchlab-writer", daemon=False)
                self._thread.start()
        return job.ticket

    def pending(self) -> int:
        """Writes queued or running."""
        with self._lock:
            return len(self._queue) + int(self._busy)

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._thread = None  # a submit after this starts a new thread
                    self._busy = False
                    return
                job = self._queue.popleft()
                stale = job.key is not None and self._latest.get(job.key) != job.ticket
                self._busy = not stale
            if stale:
                self.skipped += 1
                continue
            try:
                value, error, details = job.fn(*job.args), None, ""
            except Exception as exc:  # noqa: BLE001 - handed to the main thread, shown there
                value, error, details = None, exc, traceback.format_exc()
            with self._lock:
                self._outcomes.append((job.on_done, value, error, details))
                self._busy = False
            try:
                self._poke.emit()  # queued to the main thread
            except RuntimeError:  # the window (and this QObject) is gone: nobody to tell
                pass

    def wait(self, timeout_s: float = 60.0) -> bool:
        """Let pending writes finish (call on the main thread, e.g. before the window closes),
        then deliver their outcomes now. Returns False when ``timeout_s`` ran out first."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                thread = self._thread
            if thread is None:
                break
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                self._deliver()
                return False
        self._deliver()
        return True

    @Slot()
    def _deliver(self) -> None:
        while True:
            with self._lock:
                if not self._outcomes:
                    return
                on_done, value, error, details = self._outcomes.popleft()
            if on_done is not None:
                try:
                    on_done(value, error, details)
                except Exception:  # noqa: BLE001 - one bad report must not lose the others
                    sys.excepthook(*sys.exc_info())
