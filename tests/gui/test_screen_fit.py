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


@pytest.mark.parametrize("size", [(1280, 720), (1920, 1080)])
def test_pairs_table_columns_fit_the_side_panel(make_window, qtbot, size):
    """Review: at 1280x720 the pairs table scrolled sideways. With 10,000 scored pairs (five-digit
    numbers) every column a researcher reads at a glance shows its header and values whole, and
    the table needs no horizontal scroll bar."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QAction

    from patchlab.core.pairs import PromptPair
    from patchlab.gui.views.pairs_table import COL_PROMPT, COLUMNS

    w = make_window()
    width, height = size[0], size[1] - 60
    w.resize(width, height)
    qtbot.waitUntil(lambda: w.width() == width and w.height() == height, timeout=5000)
    pairs = [PromptPair(f"When Mary and John went to the store number {i}, John gave a drink to",
                        f"When Mary and John went to the store number {i}, Mary gave a drink to",
                        " Mary", " John") for i in range(10_000)]
    editor = w.pair_editor
    editor.set_pairs(pairs)
    model = editor.table_model
    model.set_scores([{"index": i, "pair": p, "n_tokens": 100 + i % 20, "tokens_ok": i % 3 > 0,
                       "clean_answer_prob": 0.123456, "corrupted_answer_prob": 0.999, "clean_correct": i % 2 == 0}
                      for i, p in enumerate(pairs)])
    table = editor.table
    table.scrollToBottom()  # the widest pair numbers
    qtbot.wait(50)
    header = table.horizontalHeader()
    assert table.horizontalScrollBar().maximum() == 0, "the pairs table scrolls sideways"
    assert header.length() <= table.viewport().width()
    glance = (0, 2, 3, 4, 5, 6)  # #, tokens OK, length, P clean, P corrupted, right
    for col in glance:
        assert not table.isColumnHidden(col), COLUMNS[col]
        need = max(table.sizeHintForColumn(col), header.fontMetrics().horizontalAdvance(COLUMNS[col]))
        assert header.sectionSize(col) >= need, (COLUMNS[col], header.sectionSize(col), need)
    assert model.data(model.index(model.rowCount() - 1, 4)) == "0.123"
    # sorted by P clean: Qt's own size for that header (label, margins, sort arrow) fits too
    table.sortByColumn(4, Qt.DescendingOrder)
    qtbot.wait(50)
    assert header.sortIndicatorSection() == 4
    assert header.sectionSize(4) >= header.sectionSizeHint(4)
    assert table.horizontalScrollBar().maximum() == 0 and header.length() <= table.viewport().width()
    assert header.sectionSize(COL_PROMPT) >= 60, "no room left for the prompt"
    # the name column is behind the header's context menu; showing it keeps the table inside
    assert table.isColumnHidden(1)
    show_name = next(a for a in header.actions() if isinstance(a, QAction) and a.text() == "Show name")
    show_name.trigger()
    assert not table.isColumnHidden(1)
    show_name.trigger()
    assert table.isColumnHidden(1)
