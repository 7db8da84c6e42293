"""Pre-flight check of Qt's platform plugin: name the missing system package instead of an abort.

Qt aborts the whole process (``qt.qpa.plugin: Could not load the Qt platform plugin "xcb"``,
then SIGABRT) when a library its X11 plugin links is absent; Ubuntu desktops ship without
``libxcb-cursor0``, minimal Debian images without most of the xcb set. Qt's own message names
``xcb-cursor0`` whatever is missing, so the missing libraries are read from ``ldd`` on the plugin
first, and a probe in a child process (which may abort without taking patchlab down) catches
the rest.

This module imports no Qt: it runs before the first Qt import.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from patchlab.core.errors import InputError

#: shared library (soname) -> Debian/Ubuntu package that provides it
PACKAGES = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-glx.so.0": "libxcb-glx0",
    "libxcb.so.1": "libxcb1",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libSM.so.6": "libsm6",
    "libICE.so.6": "libice6",
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libOpenGL.so.0": "libopengl0",
    "libGLX.so.0": "libglx0",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0",
}

_NOT_FOUND = re.compile(r"^\s*(\S+)\s*=>\s*not found", re.M)
_QT_NEEDS = re.compile(r"(\S+) or (\S+) is needed to load the Qt (\w+) platform plugin")


def package_for(soname: str) -> str:
    """The Debian/Ubuntu package that ships ``soname`` (a guess from the name when unknown)."""
    if soname in PACKAGES:
        return PACKAGES[soname]
    m = re.match(r"(lib[\w+-]+?)\.so\.(\d+)", soname)
    if not m:
        return soname
    stem, major = m.groups()
    return f"{stem.lower()}{'-' if stem[-1].isdigit() else ''}{major}"


def missing_libraries(ldd_output: str) -> list[str]:
    """Sonames that ``ldd`` reports as ``not found`` (each once, in order)."""
    return list(dict.fromkeys(_NOT_FOUND.findall(ldd_output)))


def packages_from_qt_message(stderr: str) -> list[str]:
    """Packages named by Qt's "X or Y is needed to load the Qt xcb platform plugin" line."""
    return list(dict.fromkeys(m.group(2) for m in _QT_NEEDS.finditer(stderr)))


def xcb_plugin() -> Path | None:
    """Path of PySide6's ``libqxcb.so``, found without importing Qt."""
    spec = importlib.util.find_spec("PySide6")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "Qt" / "plugins" / "platforms" / "libqxcb.so"
        if path.is_file():
            return path
    return None


def ldd_missing(plugin: Path) -> list[str]:
    """Libraries the plugin (and what it links) cannot find; empty when ``ldd`` is unavailable."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return []
    try:
        proc = subprocess.run([ldd, str(plugin)], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return missing_libraries(proc.stdout + proc.stderr)


def probe(timeout: float = 30.0) -> tuple[bool, str]:
    """Create a ``QGuiApplication`` in a child process; ``(ok, stderr)``. A timeout counts as ok."""
    code = "from PySide6.QtGui import QGuiApplication; QGuiApplication([])"
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return True, ""  # a slow X server is not a missing library: let the window try
    except OSError as exc:
        return False, str(exc)
    return proc.returncode == 0, proc.stderr


def install_hint(packages: list[str]) -> str:
    """How to install ``packages``: an apt-get line on Debian/Ubuntu, else the names."""
    names = " ".join(packages)
    if shutil.which("apt-get"):
        sudo = "" if hasattr(os, "geteuid") and os.geteuid() == 0 else "sudo "
        return f"Install with:\n    {sudo}apt-get install {names}"
    return f"Install the system package(s) that provide: {names}"


def _message(packages: list[str], detail: str) -> str:
    return (f"The window cannot start: Qt's X11 (xcb) platform plugin is missing system "
            f"package(s) {', '.join(packages)} ({detail}). {install_hint(packages)}\n"
            "or run `bash packaging/dev.sh app`, which installs them (as root). The command line "
            "(`patchlab sweep`, `patchlab decompose`) needs no window.")


def uses_xcb(env: dict[str, str] | None = None) -> bool:
    """Whether Qt will pick the X11 plugin: Linux, an X display, no other platform asked for."""
    env = dict(os.environ) if env is None else env
    platform = env.get("QT_QPA_PLATFORM", "").split(":")[0].split(";")[0].strip()
    if not sys.platform.startswith("linux") or platform not in ("", "xcb"):
        return False
    if platform == "" and env.get("WAYLAND_DISPLAY"):
        return False  # Qt tries wayland first there
    return bool(env.get("DISPLAY")) or platform == "xcb"


#: PySide6 releases whose bindings drop a reference to ``None`` on every call of a Qt method that
#: returns nothing. Python < 3.12 counts references to None, so after ~170,000 such calls (about
#: 150 sweeps in the window, measured by benchmarks/soak.py) the process aborts with
#: "Fatal Python error: none_dealloc". 6.11.3 is fine; 3.12+ made None immortal.
NONE_REFCOUNT_BUG = ("6.12.0",)


def pyside_warning(version: str | None = None, python: tuple[int, int] | None = None) -> str | None:
    """A warning when the installed PySide6 will crash this Python after long use, else None."""
    if version is None:
        from importlib import metadata

        for dist in ("PySide6-Essentials", "PySide6"):
            try:
                version = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
    python = python or sys.version_info[:2]
    if version not in NONE_REFCOUNT_BUG or python >= (3, 12):
        return None
    return (f"patchlab: warning: PySide6 {version} on Python {python[0]}.{python[1]} loses a reference "
            "to None on every Qt call; the window aborts after about 150 runs. Install another "
            "release: pip install 'PySide6-Essentials==6.11.3' (or use Python 3.12+).")


def check_platform(env: dict[str, str] | None = None, run_probe: bool = True) -> None:
    """Raise :class:`InputError` naming the missing package when Qt's xcb plugin cannot load.

    Parameters
    ----------
    env : dict, optional
        Environment to judge (default ``os.environ``).
    run_probe : bool
        Also start Qt in a child process when ``ldd`` finds nothing missing (catches what
        ``ldd`` cannot see; costs about half a second).
    """
    env = dict(os.environ) if env is None else env
    warning = pyside_warning()
    if warning:
        print(warning, file=sys.stderr)
    if env.get("PATCHLAB_SKIP_PLATFORM_CHECK") or not uses_xcb(env):
        return
    plugin = xcb_plugin()
    if plugin is None:
        return
    missing = ldd_missing(plugin)
    if missing:
        raise InputError(_message([package_for(s) for s in missing], "not found: " + ", ".join(missing)))
    if not run_probe:
        return
    ok, stderr = probe()
    if ok:
        return
    packages = packages_from_qt_message(stderr)
    if packages:
        raise InputError(_message(packages, "Qt's own message"))
    tail = "\n".join(stderr.strip().splitlines()[-4:])
    raise InputError(
        "The window cannot start: Qt could not load its platform plugin. Qt said:\n"
        f"{tail}\nCheck that DISPLAY points to a running X server, run with QT_DEBUG_PLUGINS=1 "
        "for details, or use `bash packaging/dev.sh app`."
    )
