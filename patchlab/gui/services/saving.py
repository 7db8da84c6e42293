"""Session saves and autosaves off the GUI thread, and the window's orderly close (issue 11).

A save takes a snapshot of the state on the GUI thread (plain dicts and lists sharing the
result arrays: milliseconds) and leaves the JSON conversion and the atomic write to the
:class:`~patchlab.gui.services.background.BackgroundWriter`, which runs writes in order and
skips an autosave that a newer one has superseded, so the file on disk is always the latest
snapshot. The session is autosaved after every finished sweep or decomposition (work
survives a crash) and on close, where the window waits for the write.

The autosave after a job waits :data:`AUTOSAVE_DELAY_MS`: the writer thread's JSON conversion
is Python code, and while it runs every call the GUI thread makes into Qt has to win the GIL
back; overlapping the redraw of a finished 512-position result, that stretched the redraw into
a 62 ms event-loop stall (``benchmarks/gui_stalls.py``).
"""

from __future__ import annotations

import traceback
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Slot

from patchlab.core.errors import PatchlabError
from patchlab.gui.jobs import Outcome
from patchlab.gui.services import errorlog, sessions

#: Job kinds whose successful end triggers an autosave.
AUTOSAVE_AFTER = ("sweep", "decompose")
#: How long after such a job the autosave starts (the window draws the result first).
AUTOSAVE_DELAY_MS = 750


class SessionSaver(QObject):
    """Saves ``window``'s session through ``window.writer``.

    Reads lazily from the window: ``state``, ``session_settings()``, ``autosave_path``,
    ``error_log_path``; reports through ``notify`` / ``show_error``; on a successful
    explicit save sets ``session_path`` and adds the file to the recent sessions.
    """

    def __init__(self, window) -> None:
        super().__init__(window)
        self.w = window
        self.autosave_timer = QTimer(self)  # one pending autosave at most: later jobs restart it
        self.autosave_timer.setSingleShot(True)
        self.autosave_timer.setInterval(AUTOSAVE_DELAY_MS)
        self.autosave_timer.timeout.connect(self._autosave_after_job)
        window.controller.done.connect(self.on_job_done)

    def _key(self, path) -> str:
        return str(Path(path).resolve())

    def save(self, path: str | Path) -> bool:
        """Start saving to ``path``; False (and a message) when the snapshot failed."""
        w = self.w
        try:
            data = sessions.snapshot(w.state, w.session_settings())
        except PatchlabError as exc:
            w.show_error("Cannot save session", str(exc))
            return False
        w.notify(f"Saving {path}\u2026", 0)
        w.writer.submit(sessions.write_snapshot, data, Path(path), on_done=self._saved,
                        key=self._key(path))
        return True

    def _saved(self, path, error, details) -> None:
        w = self.w
        if error is None:
            w.session_path = Path(path)
            w._add_recent_session(str(path))
            w.notify(f"Saved {path}", 5000)
            return
        if not isinstance(error, PatchlabError):  # a bug: keep the traceback
            errorlog.log_error(w.error_log_path, "save", repr(error), details)
        w.show_error("Cannot save session", str(error) if isinstance(error, PatchlabError)
                     else f"{type(error).__name__}: {error}")

    def autosave(self) -> bool:
        """Start writing the autosave file (nothing without an autosave path)."""
        w = self.w
        if w.autosave_path is None:
            return False
        data = sessions.snapshot(w.state, w.session_settings())
        w.writer.submit(sessions.write_snapshot, data, Path(w.autosave_path),
                        on_done=self._autosaved, key=self._key(w.autosave_path))
        return True

    def _autosaved(self, _path, error, details) -> None:
        # never a dialog: a full disk must not interrupt work or block quitting; it is logged
        if error is not None:
            errorlog.log_error(self.w.error_log_path, "autosave", f"{type(error).__name__}: {error}",
                               details)

    @Slot(object)
    def on_job_done(self, out: Outcome) -> None:
        if out.ok and out.kind in AUTOSAVE_AFTER and not self.w.controller._closing:
            self.autosave_timer.start()

    @Slot()
    def _autosave_after_job(self) -> None:
        if not self.w.controller._closing:  # close() writes its own last autosave
            self._guarded(self.autosave)

    def _guarded(self, step) -> None:
        """Run ``step()``; a failure is logged, never raised (closing must go on)."""
        try:
            step()
        except Exception as exc:  # noqa: BLE001
            errorlog.log_error(self.w.error_log_path, "close", f"{step.__name__}: {exc!r}",
                               traceback.format_exc())

    def close(self) -> None:
        """The window's close: settings, a last autosave, the worker down, writes finished.

        Each step runs whatever the previous one did (``try/finally``); failures are logged.
        """
        w = self.w
        self.autosave_timer.stop()
        try:
            self._guarded(w.save_settings)
            self._guarded(self.autosave)  # serialised on the writer while the worker stops
        finally:
            try:
                w.controller.shutdown()
            finally:
                if not w.writer.wait():
                    errorlog.log_error(w.error_log_path, "close", "a file write did not finish in time")
