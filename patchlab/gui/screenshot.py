"""Off-screen screenshots: run the first example on the default model, grab the window."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

VIEWS = ("heatmap", "decompose", "readouts", "scatter")


def _wait(app, predicate, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        app.processEvents()
        if predicate():
            return True
        time.sleep(0.01)
    return False


def screenshot_main(out_path: str, view: str = "heatmap", model: str | None = None,
                    size: tuple[int, int] = (1500, 950), timeout: float = 300.0) -> int:
    """Save a PNG grab of the main window after a complete run; 0 on success.

    Parameters
    ----------
    out_path : str
        PNG file to write (atomically).
    view : {"heatmap", "decompose", "readouts", "scatter"}
        What is on screen: the heatmap, the Decompose tab, the heatmap with a selected head's
        patched run and attention pattern, or the attribution estimate against exact values.
    model : str, optional
        Model to load instead of the embedded default.
    """
    if view not in VIEWS:
        print(f"Unknown view {view!r}: use one of {', '.join(VIEWS)}.")
        return 2
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QSettings

    from patchlab.core.io import atomic_write_bytes
    from patchlab.gui.app import ensure_app, make_window

    app = ensure_app([])
    tmp = tempfile.mkdtemp(prefix="patchlab-shot-")
    settings = QSettings(str(Path(tmp) / "settings.ini"), QSettings.IniFormat)
    window = make_window(settings=settings, autosave_path=None, restore=False, load_default=False)
    window.quiet = True
    window.resize(*size)
    window.show()
    window.load_model(model or "", "auto", "float32", "compat")
    try:
        if not _wait(app, lambda: window.model is not None and window.controller.is_idle(), timeout):
            print(f"The model did not load: {getattr(window, 'last_error', 'timeout')}")
            return 1
        if view == "decompose":
            window.tabs.setCurrentWidget(window.decompose_view)
            window.run_decompose()
            ok = _wait(app, lambda: window.state.decomposition is not None and window.controller.is_idle(), timeout)
        else:
            if view == "scatter":
                window.experiment.set_settings({"target": "attn_head_out_by_pos", "direction": "denoise",
                                                "metric": "logit_diff_recovered", "method": "exact"})
                window.experiment.preview.setChecked(True)
                window.tabs.setCurrentWidget(window.scatter)
            if view == "readouts":
                window.experiment.set_settings({"target": "attn_head_out_all_pos", "direction": "denoise",
                                                "metric": "logit_diff_recovered", "method": "exact"})
            if not window.run():
                print(f"Cannot run: {window.pair_editor.message.text()}")
                return 1
            ok = _wait(app, lambda: window.state.result is not None and window.controller.is_idle(), timeout)
            if ok and view == "readouts":
                best = window.state.result.top_cells(1, absolute=True)[0][0]
                window.heatmap.select_cell(best)
                ok = _wait(app, lambda: window.controller.is_idle(), timeout)
        if not ok:
            print(f"The run did not finish: {getattr(window, 'last_error', 'timeout')}")
            return 1
        _wait(app, lambda: False, 0.3)  # let throttled redraws land
        window.heatmap.flush()
        window.scatter.flush()
        data = QByteArray()
        buf = QBuffer(data)
        buf.open(QIODevice.WriteOnly)
        window.grab().toImage().save(buf, "PNG")
        buf.close()
        atomic_write_bytes(out_path, bytes(data.data()))
        print(f"Saved {out_path}")
        return 0
    finally:
        window.close()
        app.processEvents()
