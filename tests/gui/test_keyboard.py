"""Issue 11 item 8: keyboard use, with real key events (QTest.keyClick)."""

import numpy as np
from guihelpers import wait_idle
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QLabel

WAIT = 90_000


def _activate(qtbot, w):
    w.activateWindow()
    w.raise_()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is w, timeout=5000)


def test_ctrl_enter_runs_and_arrows_enter_pick_cells(qtbot, window):
    w = window
    _activate(qtbot, w)
    w.experiment.set_settings({"target": "resid_pre"})
    QTest.keyClick(w, Qt.Key_Return, Qt.ControlModifier)
    qtbot.waitUntil(lambda: w.state.result is not None or bool(w.last_error), timeout=WAIT)
    wait_idle(qtbot, w)
    r = w.state.result
    assert r is not None, w.last_error
    n_layers, n_pos = r.values.shape
    hm = w.heatmap
    hm.setFocus()
    qtbot.waitUntil(hm.hasFocus, timeout=5000)
    QTest.keyClick(hm, Qt.Key_Right)  # shows the cursor at the top-left cell
    assert hm.cursor_cell == (0, 0)
    QTest.keyClick(hm, Qt.Key_Right)
    QTest.keyClick(hm, Qt.Key_Down)
    assert hm.cursor_cell == (min(1, n_layers - 1), min(1, n_pos - 1))
    for _ in range(n_layers + 3):  # clamps at the last row
        QTest.keyClick(hm, Qt.Key_Down)
    assert hm.cursor_cell[0] == n_layers - 1
    assert w.state.cell is None, "moving the cursor does not start a patched run"
    QTest.keyClick(hm, Qt.Key_Return)
    want = (n_layers - 1, min(1, n_pos - 1))
    assert w.state.cell == want
    wait_idle(qtbot, w)
    assert "Patched run" in w.readouts.title("patched")
    assert w.readout_presenter.patched is not None
    assert np.isfinite(r.values[want])


def test_form_labels_have_buddies_and_mnemonics(qtbot, window):
    w = window
    _activate(qtbot, w)
    for field in (w.experiment.target, w.experiment.metric, w.experiment.method,
                  w.experiment.direction, w.pair_editor.clean, w.pair_editor.corrupted,
                  w.pair_editor.answer, w.pair_editor.wrong, w.model_panel.device):
        labels = [lab for lab in w.findChildren(QLabel) if lab.buddy() is field]
        assert labels and "&" in labels[0].text(), f"no mnemonic label for {field.accessibleName()}"
        assert field.accessibleName()
    # a mnemonic moves the focus to its field
    QTest.keyClick(w, Qt.Key_I, Qt.AltModifier)
    qtbot.waitUntil(w.experiment.metric.hasFocus, timeout=5000)
    QTest.keyClick(w, Qt.Key_T, Qt.AltModifier)
    qtbot.waitUntil(w.experiment.target.hasFocus, timeout=5000)


def test_accessible_names(window):
    w = window
    for widget in (w.heatmap, w.experiment.run_btn, w.experiment.cancel_btn, w.experiment.progress,
                   w.model_panel.picker):
        assert widget.accessibleName(), widget
