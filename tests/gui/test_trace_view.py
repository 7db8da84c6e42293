"""The passive Trace views: setters draw what they are given, clicks come out as signals."""

import numpy as np
import pytest
from PySide6.QtCore import Qt

from patchlab.gui.views.trace_view import EffectBars, NeuronTable, ReceiverMap, TraceView


def test_effect_bars(qtbot):
    view = EffectBars()
    qtbot.addWidget(view)
    values = np.array([[0.9, 0.1], [0.0, 0.1], [0.9, 0.0]])
    view.set_effects(values, ["L0H3", "L1H3"], title="denoise, 8 pairs", metric_label="recovered")
    assert len(view.bars) == 3 and "8 pairs" in view.title.text()
    np.testing.assert_array_equal(view.bars[1].opts["height"], values[1])
    assert view.index_at(1.2) == 1 and view.index_at(5) is None
    with pytest.raises(ValueError):
        view.set_effects(values[:2], ["a", "b"])


def test_receiver_map_skips_nan_cells(qtbot):
    view = ReceiverMap()
    qtbot.addWidget(view)
    values = np.array([[np.nan] * 4, [0.02, 0.1, 0.0, 0.5]])
    view.set_receivers(values, ["L0", "L1"], ["H0", "H1", "H2", "H3"], title="L0H3 -> k")
    with qtbot.assertNotEmitted(view.receiverClicked):
        view.click_cell(0, 1)  # NaN: before the sender
    with qtbot.waitSignal(view.receiverClicked) as blocker:
        view.click_cell(1, 3)
    assert blocker.args == [1, 3]
    view.set_receivers(np.array([np.nan, 0.3]), ["L0", "L1"], title="L0H0 -> mlp")
    with qtbot.waitSignal(view.receiverClicked) as blocker:
        view.click_cell(1, 0)
    assert blocker.args == [1, -1]


def test_neuron_table_sorts_and_reports(qtbot):
    view = NeuronTable()
    qtbot.addWidget(view)
    dla = np.array([0.1, 3.0, -0.5, 0.0])
    est = np.array([0.2, 0.6, 0.1, 0.0])
    exact = np.array([np.nan, 0.5, 0.3, np.nan])
    tokens = {"1": {"promoted": [[" store", 1.0]], "suppressed": [[" dez", -1.0]]}}
    view.set_neurons(0, [1, 2, 0], dla, est, exact, tokens)
    assert view.table.rowCount() == 3
    row = [view.neuron_at(r) for r in range(3)].index(1)
    assert view.table.item(row, 4).text() == "store" and view.table.item(row, 5).text() == "dez"
    view.table.sortItems(1, Qt.AscendingOrder)  # by DLA
    assert [view.neuron_at(r) for r in range(3)] == [2, 0, 1]
    view.table.sortItems(3, Qt.AscendingOrder)  # exact: NaN last
    assert view.neuron_at(2) == 0
    with qtbot.waitSignal(view.neuronActivated) as blocker:
        view.table.cellDoubleClicked.emit(0, 0)
    assert blocker.args == [0, view.neuron_at(0)]
    with qtbot.waitSignal(view.exportRequested):
        view.export.click()


def test_trace_view_holds_all_three(qtbot):
    view = TraceView()
    qtbot.addWidget(view)
    assert isinstance(view.neurons, NeuronTable) and isinstance(view.receivers, ReceiverMap)
