"""The app controller: owns the model and the one background worker (superqt).

One worker runs at a time because TransformerLens hooks are state on the model. Every job
gets a run id; events from a run that has been superseded are dropped. Worker signals are
connected only to bound ``@Slot`` methods of this main-thread object (never lambdas).

Who handles a job's events and its end is registered per job kind
(:meth:`Controller.on_progress`, :meth:`Controller.on_done`); the controller calls those
handlers on the main thread. Kinds are open: another analysis registers its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot
from superqt.utils import GeneratorWorker, WorkerBase, create_worker

from patchlab.gui.jobs import Job, Outcome, Status, Tagged, job_generator

Handler = Callable[[Outcome], None]
ProgressHandler = Callable[[Any], None]


class Controller(QObject):
    """Queue of model jobs run one at a time on a superqt ``GeneratorWorker``.

    Signals
    -------
    progress(kind, event)
        An event of the current run of ``kind`` (stale runs are filtered out), emitted after
        the handlers registered with :meth:`on_progress` ran.
    done(outcome)
        :class:`~patchlab.gui.jobs.Outcome` of the latest run of a kind, emitted after the
        handlers registered with :meth:`on_done` ran.
    busy(text)
        What the worker is doing now, ``""`` when idle.
    modelChanged(model)
        A new model was loaded (the previous one stays on failure).
    """

    progress = Signal(str, object)
    done = Signal(object)
    busy = Signal(str)
    modelChanged = Signal(object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.model: Any = None
        self._next_id = 0
        self._latest: dict[str, int] = {}
        self._queue: list[Job] = []
        self._current: Job | None = None
        self._worker: GeneratorWorker | None = None
        self._closing = False
        self._done_handlers: dict[str, list[Handler]] = {}
        self._progress_handlers: dict[str, list[ProgressHandler]] = {}

    # -- public API (main thread) ---------------------------------------------------------
    def on_done(self, kind: str, handler: Handler) -> None:
        """Call ``handler(outcome)`` when the latest job of ``kind`` ends (any status)."""
        self._done_handlers.setdefault(kind, []).append(handler)

    def on_progress(self, kind: str, handler: ProgressHandler) -> None:
        """Call ``handler(event)`` for each event of the latest job of ``kind``."""
        self._progress_handlers.setdefault(kind, []).append(handler)

    @property
    def running_kind(self) -> str | None:
        return self._current.kind if self._current is not None else None

    def is_idle(self) -> bool:
        return self._current is None and not self._queue

    def latest_id(self, kind: str) -> int | None:
        return self._latest.get(kind)

    def submit(self, kind: str, func: Callable[..., Any], kwargs: dict[str, Any] | None = None,
               context: Any = None, background: bool = False) -> int:
        """Queue a job; a job of the same kind that is queued or running is superseded.

        ``func`` is called on the worker thread with ``kwargs`` (plus ``stop`` when it takes
        one) and may return a value or a generator of progress events. A ``background`` job
        (e.g. scoring every pair) is stopped when any other job is submitted; its handler
        learns so from the outcome and may submit the rest again.
        """
        if self._closing:
            return -1
        if kind not in self._done_handlers:
            raise ValueError(f"no handler registered for job kind {kind!r} (Controller.on_done)")
        self._next_id += 1
        job = Job(self._next_id, kind, func, dict(kwargs or {}), threading.Event(), context,
                  background, model_id=id(self.model) if self.model is not None else None)
        if "stop" in job.kwargs:
            job.kwargs["stop"] = job.stop
        self._latest[kind] = job.run_id
        self._queue = [j for j in self._queue if j.kind != kind]
        if kind == "load":  # a new model makes every queued job moot
            for j in self._queue:
                self._latest.pop(j.kind, None)
            self._queue.clear()
        if self._current is not None and (self._current.kind == kind or kind == "load"
                                          or self._current.background and not background):
            self._current.stop.set()
        # foreground jobs go before queued background ones
        at = next((n for n, j in enumerate(self._queue) if j.background), len(self._queue))
        self._queue.insert(len(self._queue) if background else at, job)
        self._start_next()
        return job.run_id

    def cancel(self, kind: str | None = None) -> None:
        """Stop the running job of ``kind`` (any when None) and drop queued ones of it."""
        self._queue = [j for j in self._queue if kind is not None and j.kind != kind]
        if self._current is not None and (kind is None or self._current.kind == kind):
            self._current.stop.set()

    def shutdown(self, timeout_ms: int = 10000) -> bool:
        """Cancel everything and wait for the worker thread (call from closeEvent)."""
        self._closing = True
        self._queue.clear()
        if self._current is not None:
            self._current.stop.set()
        try:
            WorkerBase.await_workers(timeout_ms)
        except RuntimeError:
            return False
        return True

    # -- worker management ----------------------------------------------------------------
    def _start_next(self) -> None:
        if self._worker is not None or not self._queue or self._closing:
            return
        job = self._queue.pop(0)
        self._current = job
        worker = create_worker(job_generator, job, _start_thread=False, _ignore_errors=True)
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self._worker = worker  # keep a reference until finished
        self.busy.emit(job.kind)
        worker.start()

    @Slot(object)
    def _on_yielded(self, tagged: Tagged) -> None:
        if self._closing or self._latest.get(tagged.kind) != tagged.run_id:
            return  # stale: superseded or cancelled run
        if tagged.event is not None:
            for handler in self._progress_handlers.get(tagged.kind, ()):
                handler(tagged.event)
            self.progress.emit(tagged.kind, tagged.event)

    @Slot(object)
    def _on_returned(self, outcome: Outcome) -> None:
        if self._closing or self._latest.get(outcome.kind) != outcome.run_id:
            return
        job = self._current
        if (outcome.kind != "load" and job is not None and job.run_id == outcome.run_id
                and job.model_id is not None and job.model_id != id(self.model)):
            # computed on a model that has been replaced since: never show it for the new one
            outcome = Outcome(outcome.run_id, outcome.kind, Status.CANCELLED,
                              error="the model changed", context=outcome.context)
        if outcome.kind == "load" and outcome.ok:
            self.model = outcome.value
            self.modelChanged.emit(self.model)
        self._finish(outcome)

    def _finish(self, outcome: Outcome) -> None:
        for handler in self._done_handlers.get(outcome.kind, ()):
            handler(outcome)
        self.done.emit(outcome)

    @Slot(object)
    def _on_errored(self, exc: Exception) -> None:
        # job_generator catches everything; this is the safety net for the unexpected
        job = self._current
        if job is not None and not self._closing and self._latest.get(job.kind) == job.run_id:
            self._finish(Outcome(job.run_id, job.kind, Status.ERROR,
                                 error=f"{type(exc).__name__}: {exc}", context=job.context))

    @Slot()
    def _on_finished(self) -> None:
        self._worker = None
        self._current = None
        if self._closing:
            return
        if self._queue:
            self._start_next()
        else:
            self.busy.emit("")
