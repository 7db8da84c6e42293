"""Pre-flight check of Qt's platform plugin: a missing xcb library gives a message, not an abort."""

import subprocess

import pytest

from patchlab.cli import main
from patchlab.core.errors import InputError
from patchlab.gui import platform_check as pc

# what ldd printed for PySide6's libqxcb.so on a Debian image without the xcb set
LDD = """\
\tlinux-vdso.so.1 (0x00007ffc)
\tlibQt6XcbQpa.so.6 => /venv/PySide6/Qt/lib/libQt6XcbQpa.so.6 (0x00007f1e)
\tlibxcb-cursor.so.0 => not found
\tlibxcb-icccm.so.4 => not found
\tlibxcb.so.1 => /lib/x86_64-linux-gnu/libxcb.so.1 (0x00007f1e)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-ewmh.so.2 => not found
"""
QT_ABORT = """\
qt.qpa.plugin: From 6.5.0, xcb-cursor0 or libxcb-cursor0 is needed to load the Qt xcb platform plugin.
qt.qpa.plugin: Could not load the Qt platform plugin "xcb" in "" even though it was found.
This application failed to start because no Qt platform plugin could be initialized.
"""
X11 = {"DISPLAY": ":0"}


def test_ldd_output_is_parsed_into_debian_packages():
    libs = pc.missing_libraries(LDD)
    assert libs == ["libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxcb-ewmh.so.2"]
    # known names from the table, an unknown one by Debian's soname rule
    assert [pc.package_for(s) for s in libs] == ["libxcb-cursor0", "libxcb-icccm4", "libxcb-ewmh2"]
    assert pc.package_for("libxkbcommon-x11.so.0") == "libxkbcommon-x11-0"
    assert pc.package_for("libfoo1.so.3") == "libfoo1-3"  # a digit before the major: a dash
    assert pc.packages_from_qt_message(QT_ABORT) == ["libxcb-cursor0"]
    assert pc.packages_from_qt_message("qt.qpa.xcb: could not connect to display :9") == []


@pytest.mark.parametrize("env,xcb", [
    ({"DISPLAY": ":0"}, True),
    ({"DISPLAY": ":0", "QT_QPA_PLATFORM": "offscreen"}, False),
    ({"QT_QPA_PLATFORM": "xcb"}, True),
    ({"WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":0"}, False),
    ({"DISPLAY": ":0", "QT_QPA_PLATFORM": "xcb:foo=1"}, True),
])
def test_only_the_x11_plugin_is_checked(env, xcb, monkeypatch):
    monkeypatch.setattr(pc.sys, "platform", "linux")
    assert pc.uses_xcb(env) is xcb


@pytest.fixture
def linux_with_plugin(monkeypatch, tmp_path):
    monkeypatch.setattr(pc.sys, "platform", "linux")
    plugin = tmp_path / "libqxcb.so"
    plugin.write_bytes(b"")
    monkeypatch.setattr(pc, "xcb_plugin", lambda: plugin)
    monkeypatch.setattr(pc.shutil, "which", lambda name: f"/usr/bin/{name}")

    calls = []

    def fake_run(cmd, **kw):
        calls.append(cmd)
        if cmd[0].endswith("ldd"):
            return subprocess.CompletedProcess(cmd, 0, stdout=LDD, stderr="")
        return subprocess.CompletedProcess(cmd, -6, stdout="", stderr=QT_ABORT)

    monkeypatch.setattr(pc.subprocess, "run", fake_run)
    return calls


def test_missing_libraries_name_the_package_and_the_install_line(linux_with_plugin):
    with pytest.raises(InputError) as err:
        pc.check_platform(X11)
    msg = str(err.value)
    assert "libxcb-cursor0" in msg and "libxcb-icccm4" in msg and "libxcb-ewmh2" in msg
    assert "apt-get install libxcb-cursor0 libxcb-icccm4 libxcb-ewmh2" in msg
    assert "dev.sh app" in msg
    assert [c[0] for c in linux_with_plugin] == ["/usr/bin/ldd"]  # no Qt probe needed


def test_when_ldd_sees_nothing_the_probe_reads_qts_message(linux_with_plugin, monkeypatch):
    monkeypatch.setattr(pc, "ldd_missing", lambda plugin: [])
    with pytest.raises(InputError, match=r"(?s)libxcb-cursor0.*apt-get install libxcb-cursor0"):
        pc.check_platform(X11)
    assert "QGuiApplication" in linux_with_plugin[-1][-1]  # Qt ran in a child process


def test_an_unexplained_plugin_failure_quotes_qt(linux_with_plugin, monkeypatch):
    monkeypatch.setattr(pc, "ldd_missing", lambda plugin: [])
    monkeypatch.setattr(pc, "probe", lambda timeout=30.0: (False, "qt.qpa.xcb: could not connect to display :9\n"))
    with pytest.raises(InputError, match="could not connect to display :9"):
        pc.check_platform(X11)


def test_nothing_is_checked_offscreen_or_when_skipped(linux_with_plugin):
    pc.check_platform({"QT_QPA_PLATFORM": "offscreen"})
    pc.check_platform({**X11, "PATCHLAB_SKIP_PLATFORM_CHECK": "1"})
    assert linux_with_plugin == []


def test_a_working_plugin_passes(linux_with_plugin, monkeypatch):
    monkeypatch.setattr(pc, "ldd_missing", lambda plugin: [])
    monkeypatch.setattr(pc, "probe", lambda timeout=30.0: (True, ""))
    pc.check_platform(X11)


def test_the_gui_command_exits_2_with_the_package_instead_of_aborting(linux_with_plugin, monkeypatch, capsys):
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.delenv("PATCHLAB_SKIP_PLATFORM_CHECK", raising=False)
    import patchlab.gui.app as app

    monkeypatch.setattr(app, "run_app", lambda argv: pytest.fail("the window must not start"))
    assert main(["gui"]) == 2
    err = capsys.readouterr().err
    assert "libxcb-cursor0" in err and "apt-get install" in err and "Traceback" not in err


def test_the_real_plugin_is_found_and_ldd_runs():
    """On this machine: the helper finds PySide6's plugin and ldd's answer parses (any result)."""
    plugin = pc.xcb_plugin()
    if plugin is None:
        pytest.skip("PySide6 is not installed")
    assert plugin.name == "libqxcb.so"
    assert all(s.endswith(tuple(f".so.{i}" for i in range(10))) or ".so" in s for s in pc.ldd_missing(plugin))


def test_pyside_release_that_loses_none_references_is_named():
    """PySide6 6.12.0 on Python 3.11 drops a None reference per void Qt call (soak: abort after
    ~150 window runs); 3.12+ and other releases are fine."""
    msg = pc.pyside_warning("6.12.0", (3, 11))
    assert msg and "6.11.3" in msg and "150 runs" in msg
    assert pc.pyside_warning("6.12.0", (3, 12)) is None
    assert pc.pyside_warning("6.11.3", (3, 11)) is None


def test_the_installed_pyside_keeps_nones_reference_count():
    """The measurement behind the warning, on the installed PySide6 (void calls in a loop)."""
    import sys

    pytest.importorskip("PySide6")
    code = ("import sys; from PySide6.QtCore import QTimer; t = QTimer(); t.start(10); "
            "a = sys.getrefcount(None)\nfor _ in range(1000): t.start(10)\n"
            "print(sys.getrefcount(None) - a)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    lost = -int(proc.stdout.split()[-1])
    warned = pc.pyside_warning() is not None
    # either this PySide6 keeps the count, or patchlab warns about it at start-up
    assert lost < 100 or warned, f"{lost} references to None lost in 1000 calls, and no warning"
