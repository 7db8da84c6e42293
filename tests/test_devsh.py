"""packaging/dev.sh installs Qt's X11 libraries with or without a display (stubbed apt)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)


def _run_system(tmp_path, uid: str, **env):
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    bin_ = tmp_path / "bin"
    bin_.mkdir(exist_ok=True)
    log = tmp_path / "apt.log"
    log.write_text("")
    _stub(bin_, "dpkg", "exit 1")  # nothing installed
    _stub(bin_, "apt-get", f'echo "$@" >> {log}')
    _stub(bin_, "id", f"echo {uid}")
    _stub(bin_, "sudo", "exit 1")  # sudo never works here
    base = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    proc = subprocess.run(["bash", str(ROOT / "packaging" / "dev.sh"), "system"], stdin=subprocess.DEVNULL,
                          env={**base, "PATH": f"{bin_}:{os.environ['PATH']}", **env},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    installs = [line.split() for line in log.read_text().splitlines() if line.startswith("install")]
    return {p for line in installs for p in line if not p.startswith("-") and p != "install"}, proc.stderr


def test_xcb_libraries_are_installed_on_a_desktop_with_a_display(tmp_path):
    pkgs, _ = _run_system(tmp_path, "0", DISPLAY=":0")
    assert {"libxcb-cursor0", "libxcb-icccm4", "libxkbcommon-x11-0", "libegl1"} <= pkgs
    assert "xvfb" not in pkgs  # a real display needs no virtual one


def test_without_a_display_xvfb_comes_too(tmp_path):
    pkgs, _ = _run_system(tmp_path, "0")
    assert {"libxcb-cursor0", "xvfb", "xauth"} <= pkgs


def test_a_user_without_sudo_is_told_the_command(tmp_path):
    pkgs, err = _run_system(tmp_path, "1000", DISPLAY=":0")
    assert pkgs == set()
    assert "sudo apt-get install" in err and "libxcb-cursor0" in err
