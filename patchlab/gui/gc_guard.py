"""Cyclic garbage collection on the GUI thread only (issue 11: the app's own guard).

Python's cyclic collector runs in whichever thread happens to allocate when a generation's
threshold is crossed. In patchlab that is usually the model worker (a forward pass allocates a
lot), so Qt wrappers caught in reference cycles were freed there, off the GUI thread, and the
GUI tests segfaulted. The guard turns automatic collection off and collects from a ``QTimer``
on the GUI thread instead, generation by generation with the interpreter's own thresholds, so
a young-generation pass stays short (the pattern of pyqtgraph's ``GarbageCollector``, after
Erik Janssens' "Should the Python garbage collector be disabled in Qt apps?").

Everything alive at start-up (modules, Qt, pyqtgraph, the window) can be moved to the
permanent generation with :meth:`GcGuard.freeze`, so the occasional full collection does not
walk it again (CPython's ``gc.freeze``). That matters: once torch, transformers and
TransformerLens are imported (at the first model load) the heap holds ~480k tracked objects and
one full collection took 300 ms of the GUI thread on the shared machine (the same stall through
the GIL when a worker ran it). :meth:`GcGuard.refreeze`, connected to the controller's
``modelChanged``, collects once while a model has just loaded (old-model cycles included) and
freezes the rest: later full collections walk only what was made since (0.01 ms measured).
"""

from __future__ import annotations

import gc
import threading

from PySide6.QtCore import QObject, QTimer, Slot


class GcGuard(QObject):
    """Disable automatic cyclic GC and collect from a timer on the thread that made the guard.

    Parameters
    ----------
    interval_ms : int
        How often the counts are checked (collection itself happens only past a threshold).
    parent : QObject, optional
        Usually the ``QApplication``: the guard lives as long as the app.

    Attributes
    ----------
    collections : list of int
        Per generation, how many collections this guard ran (tests and diagnostics).
    refreezes : int
        How many times :meth:`refreeze` ran.
    thread_id : int
        ``threading.get_ident()`` of the thread the guard collects on (the GUI thread).
    """

    def __init__(self, interval_ms: int = 500, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.thread_id = threading.get_ident()
        self.threshold = gc.get_threshold()
        self.collections = [0, 0, 0]
        self.refreezes = 0
        self._was_enabled = gc.isenabled()
        gc.disable()  # process-wide: from now on no thread collects on its own
        self.timer = QTimer(self)
        self.timer.setInterval(int(interval_ms))
        self.timer.timeout.connect(self.check)
        self.timer.start()

    @property
    def active(self) -> bool:
        return self.timer.isActive()

    @Slot()
    def check(self) -> None:
        """Collect the generations whose allocation counts passed their thresholds."""
        c0, c1, c2 = gc.get_count()
        t0, t1, t2 = self.threshold
        if c0 <= t0:
            return
        gen = 0
        if c1 > t1:
            gen = 2 if c2 > t2 else 1
        gc.collect(gen)  # collects ``gen`` and every younger generation
        self.collections[gen] += 1

    def freeze(self) -> None:
        """Move every object alive now to the permanent generation (never collected).

        Call once after start-up: later full collections then skip the start-up heap.
        """
        gc.collect()
        gc.freeze()

    @Slot()
    @Slot(object)
    def refreeze(self, *_args) -> None:
        """Unfreeze, collect everything, freeze again (after a model load: see the module doc)."""
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self.refreezes += 1

    def stop(self) -> None:
        """Stop the timer and give collection back to the interpreter (tests; app exit)."""
        self.timer.stop()
        if self._was_enabled:
            gc.enable()


_GUARD: GcGuard | None = None


def install(app: QObject, interval_ms: int = 500, freeze: bool = False) -> GcGuard:
    """The app's guard (made once, on the GUI thread, as a child of ``app``)."""
    global _GUARD
    try:
        alive = _GUARD is not None and _GUARD.active
    except RuntimeError:  # its QApplication was deleted (tests make several)
        alive = False
    if not alive:
        _GUARD = GcGuard(interval_ms, parent=app)
        if freeze:
            _GUARD.freeze()
    return _GUARD


def uninstall() -> None:
    """Stop the app's guard and re-enable automatic collection (tests)."""
    global _GUARD
    if _GUARD is not None:
        try:
            _GUARD.stop()
        except RuntimeError:  # the Qt object is gone: at least collect automatically again
            gc.enable()
        _GUARD = None
