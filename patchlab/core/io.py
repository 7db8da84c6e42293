"""Atomic file writes and JSON helpers (never pickle)."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from patchlab.core.errors import PatchlabError


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: a temp file in the same folder, then rename.

    On failure the previous file (if any) is untouched and a :class:`PatchlabError` says why.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise PatchlabError(f"Cannot write {path}: the folder {folder} does not exist.")
    fd = None
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "wb") as fh:
            fd = None
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _file_mode(path))  # mkstemp makes 0600; exports should follow the umask
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise PatchlabError(f"Cannot write {path}: {exc.strerror or exc}.") from exc
    finally:
        if fd is not None:
            os.close(fd)
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _file_mode(path: Path) -> int:
    """Mode for a new file: the existing file's, else 0666 minus the umask."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def to_jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays and NaN to plain JSON values (NaN -> None)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):
        return to_jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def dump_json(obj: Any) -> str:
    return json.dumps(to_jsonable(obj), indent=1, allow_nan=False)


def read_json(path: str | os.PathLike, what: str = "file") -> Any:
    """Read JSON with a message a person can act on."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PatchlabError(f"The {what} {path} does not exist.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PatchlabError(f"Cannot read the {what} {path}: {exc}.") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PatchlabError(
            f"The {what} {path} is not valid JSON (line {exc.lineno}, column {exc.colno}: "
            f"{exc.msg}). It may be truncated or not a patchlab file."
        ) from exc
