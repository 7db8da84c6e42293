"""Job bodies run on the worker thread: plain generators, no Qt objects (see DESIGN.md).

Each job is wrapped by :func:`job_generator`, which tags every event with the run id and
kind, limits torch's threads in the worker thread itself, and turns exceptions into an
:class:`Outcome` so the GUI always learns how a run ended.
"""

from __future__ import annotations

import inspect
import os
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from patchlab.core.errors import Cancelled, PatchlabError


class Status(Enum):
    """How a job ended."""

    OK = "ok"
    ERROR = "error"
    CANCELLED = "cancelled"


@dataclass
class Job:
    """A frozen unit of work (inputs never read from widgets once created)."""

    run_id: int
    kind: str
    func: Callable[..., Any]
    kwargs: dict[str, Any]
    stop: threading.Event
    context: Any = None  # GUI-side info handed back with the result (e.g. the cell index)
    background: bool = False  # stopped when a foreground job is submitted
    model_id: int | None = None  # id() of the model loaded at submission (stale-model guard)


@dataclass
class Tagged:
    """An event of a running job."""

    run_id: int
    kind: str
    event: Any


@dataclass
class Outcome:
    """How a job ended.

    ``status`` is :class:`Status`; ``value`` is the job's return value (OK), ``error`` a
    user-facing message (ERROR, or why it stopped when CANCELLED) and ``details`` the
    traceback for a bug report.
    """

    run_id: int
    kind: str
    status: Status = Status.OK
    value: Any = None
    error: str | None = None
    details: str = ""
    context: Any = None

    @property
    def ok(self) -> bool:
        return self.status is Status.OK


def worker_threads() -> int:
    """Threads torch may use: leave one core to the GUI thread."""
    return max(1, (os.cpu_count() or 2) - 1)


#: Niceness of the worker thread: when the cores are busy (another process, torch) the
#: scheduler then favours the GUI thread, which keeps event-loop stalls short.
WORKER_NICE = 10


def lower_thread_priority(nice: int = WORKER_NICE) -> bool:
    """Raise the calling thread's niceness (Linux: per thread); False where not possible."""
    if not hasattr(os, "setpriority") or not hasattr(threading, "get_native_id"):
        return False
    try:
        tid = threading.get_native_id()
        if os.getpriority(os.PRIO_PROCESS, tid) < nice:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
        return True
    except OSError:
        return False


def job_generator(job: Job):
    """Run ``job.func``; yield ``Tagged`` events, return an ``Outcome``."""
    import torch

    # a call in the main thread did not limit the worker; it has to happen here
    torch.set_num_threads(worker_threads())
    lower_thread_priority()
    yield Tagged(job.run_id, job.kind, None)  # lets the GUI show "busy" at once
    try:
        if job.stop.is_set():
            return Outcome(job.run_id, job.kind, Status.CANCELLED, context=job.context)
        value = job.func(**job.kwargs)
        if inspect.isgenerator(value):
            gen = value
            while True:
                try:
                    event = next(gen)
                except StopIteration as stop:
                    value = stop.value
                    break
                yield Tagged(job.run_id, job.kind, event)
        return Outcome(job.run_id, job.kind, Status.OK, value=value, context=job.context)
    except Cancelled as exc:  # stopped before it had anything to return
        return Outcome(job.run_id, job.kind, Status.CANCELLED, error=str(exc), context=job.context)
    except PatchlabError as exc:
        return Outcome(job.run_id, job.kind, Status.ERROR, error=str(exc),
                       details=traceback.format_exc(), context=job.context)
    except Exception as exc:  # shown to the user; the app stays usable
        msg = f"{type(exc).__name__}: {exc}"
        return Outcome(job.run_id, job.kind, Status.ERROR, error=msg,
                       details=traceback.format_exc(), context=job.context)
