"""Worker tracebacks to a log file in the user's data folder (issue 11 item 3, issue 13 item 5).

The window shows a short message and a Details button; the full traceback also goes here so a
bug report can quote it after the window is closed. Logging never raises: a read-only or
full disk must not turn one failure into two.
"""

from __future__ import annotations

import datetime
from pathlib import Path

#: The log is cut to its newest half when it grows past this many bytes.
MAX_BYTES = 1_000_000


def default_log_path() -> Path:
    """``errors.log`` in Qt's AppDataLocation (``~/.local/share/patchlab`` on Linux)."""
    from PySide6.QtCore import QStandardPaths

    folder = QStandardPaths.writableLocation(QStandardPaths.AppDataLocation)
    return Path(folder or Path.home() / ".patchlab") / "errors.log"


def log_error(path: Path | None, kind: str, message: str, details: str = "") -> bool:
    """Append one entry (time, job kind, message, traceback); False when it could not be written."""
    if path is None:
        return False
    stamp = datetime.datetime.now().isoformat(timespec="seconds")
    entry = f"--- {stamp} job {kind!r}: {message}\n{details.rstrip()}\n"
    try:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_file() and path.stat().st_size > MAX_BYTES:
            text = path.read_text(encoding="utf-8", errors="replace")
            path.write_text(text[len(text) // 2:], encoding="utf-8")
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(entry)
    except OSError:
        return False
    return True
