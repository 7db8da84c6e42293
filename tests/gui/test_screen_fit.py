"""Issue 11 item 2: the window fits small screens; Run and Cancel stay visible, no sideways
scrolling of the side panel; restored off-screen geometry is pulled back."""

import pytest
from PySide6.QtCore import QPoint, QRect


def _fully_visible(widget, window) -> bool:
    """The widget is shown, inside the window's client area and not clipped by a parent."""
    if not widget.isVisibleTo(window):
        return False
    top_left = widget.mapTo(window, QPoint(0, 0))
    rect = QRect(top_left, widget.size())
    if not window.rect().contains(rect):
        return False
    # clipping by a scroll area or splitter shows as a visible region smaller than the widget
    return widget.visibleRegion().boundingRect().size() == widget.size()


@pytest.mark.parametrize("size", [(1280, 720), (1366, 768)])
def test_run_and_cancel_visible_on_small_screens(make_window, qtbot, size):
    w = make_window()
    # the window frame and a panel/taskbar take some of the screen: leave 60 px for them
    width, height = size[0], size[1] - 60
    w.resize(width, height)
    qtbot.waitUntil(lambda: w.width() == width and w.height() == height, timeout=5000)
    assert w.minimumSizeHint().width() <= width and w.minimumSizeHint().height() <= height
    for btn in (w.experiment.run_btn, w.experiment.cancel_btn):
        assert _fully_visible(btn, w), (btn.text(), btn.mapTo(w, QPoint(0, 0)), btn.size(), w.size())
    bar = w.side_scroll.horizontalScrollBar()
    assert not bar.isVisible() and bar.maximum() == 0, "the side panel scrolls sideways"


@pytest.mark.parametrize("size", [(1280, 720), (1366, 768)])
def test_fit_to_screen_pulls_window_back(make_window, qtbot, size):
    from patchlab.gui.app import fit_to_screen

    w = make_window()
    avail = QRect(0, 28, size[0], size[1] - 28 - 40)  # a top bar and a task bar
    w.resize(1900, 1100)
    w.move(2500, 1500)  # e.g. restored from a detached monitor
    fit_to_screen(w, keep_size=True, available=avail)
    assert avail.contains(w.frameGeometry()), (avail, w.frameGeometry())
    assert _fully_visible(w.experiment.run_btn, w)
    # a fresh start: the default size shrinks to the free area as well
    fit_to_screen(w, available=avail)
    assert avail.contains(w.frameGeometry()), (avail, w.frameGeometry())


def test_restored_geometry_is_kept_when_it_fits(make_window, qtbot):
    from patchlab.gui.app import fit_to_screen

    w = make_window()
    avail = QRect(0, 0, 1920, 1040)
    w.resize(1200, 700)
    w.move(avail.x() + 20, avail.y() + 30)
    before = w.geometry()
    fit_to_screen(w, keep_size=True, available=avail)
    assert w.geometry() == before
