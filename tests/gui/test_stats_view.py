"""Statistics in the window: faded non-significant cells, the per-pair view, the ranked table."""

import csv

import numpy as np
import pytest
from guihelpers import WAIT_MS, wait_idle, wait_result
from PySide6.QtCore import Qt
from test_pair_scope import same_length_pairs

from patchlab.gui.state import ALL_PAIRS, ONE_PAIR


def test_significance_cell_view_and_top_cells(qtbot, window, tmp_path):
    w = window
    base = same_length_pairs(w)
    pairs = (base * 12)[:12]  # repeated pairs: the exact sign-flip test over 12 reaches p < .001
    w.pair_editor.set_pairs(pairs)
    assert w.validate()
    w.experiment.set_settings({"target": "resid_pre", "direction": "denoise",
                               "metric": "logit_diff_recovered", "method": "exact"})
    assert w.run()
    r = wait_result(qtbot, w)
    sp = w.stats_presenter
    qtbot.waitUntil(lambda: sp.stats is not None, timeout=WAIT_MS)
    wait_idle(qtbot, w)
    # the map fades exactly the cells the result's own test does not call significant
    expected = r.significant(0.05)
    np.testing.assert_array_equal(w.heatmap.significant, expected)
    assert 0 < expected.sum() < expected.size, "some cells significant, some not"
    assert "not significant" in w.heatmap.legend.text() and "12 pairs" in w.heatmap.legend.text()
    low, high = r.bootstrap_ci()
    np.testing.assert_allclose(sp.stats.ci_low, low)
    np.testing.assert_allclose(sp.stats.ci_high, high)

    # ranked table: the cell farthest from no effect first, with its CI and p/q
    far = np.unravel_index(np.nanargmax(np.abs(r.values - r.no_effect)), r.shape)
    assert w.cell_pairs.top_text(0, 0) == r.cell_label(far)
    assert w.cell_pairs.top_text(0, 2) == f"{low[far]:.3g}"
    out = tmp_path / "top.csv"
    from patchlab.gui.services.exports import export_top_cells

    export_top_cells(w.state, sp.stats, out)
    rows = list(csv.DictReader(out.open()))
    assert rows[0]["cell"] == r.cell_label(far)
    assert float(rows[0]["q"]) == pytest.approx(r.qvalues()[far])

    # clicking a ranked row selects the cell; the per-pair view shows one point per pair
    w.tabs.setCurrentWidget(w.cell_pairs)
    w.cell_pairs.table.cellClicked.emit(0, 0)
    assert w.state.cell == tuple(int(i) for i in far)
    np.testing.assert_array_equal(w.cell_pairs.values, r.per_pair[(slice(None), *far)])
    assert "one point per pair (12)" in w.cell_pairs.title_item.text and "95% CI" in w.cell_pairs.title_item.text
    # clicking a point selects that pair in the state: every panel then shows it
    qtbot.wait(100)
    view = w.cell_pairs.graphics
    point = view.mapFromScene(w.cell_pairs.point_pos(4))
    qtbot.mouseClick(view.viewport(), Qt.LeftButton, pos=point)
    qtbot.waitUntil(lambda: w.state.pair_mode == ONE_PAIR, timeout=5000)
    assert w.state.pair_index == 4
    assert "pair 5 of 12" in w.heatmap.title
    assert w.heatmap.significant is None and "statistics are over all pairs" in w.heatmap.legend.text()
    w.state.set_pair_mode(ALL_PAIRS)
    np.testing.assert_array_equal(w.heatmap.significant, expected)
    wait_idle(qtbot, w)


def test_difference_map_denoise_vs_noise(qtbot, window):
    w = window
    runs = []
    for direction in ("denoise", "noise"):
        w.experiment.set_settings({"target": "resid_pre", "direction": direction,
                                   "metric": "logit_diff", "method": "exact"})
        assert w.run()
        runs.append(wait_result(qtbot, w))
    assert "Run twice" not in w.difference.title
    np.testing.assert_allclose(w.difference.values, runs[1].values - runs[0].values)
    assert "Difference map: noise minus denoise" in w.difference.title
    # a run with another target has no difference map with the previous one
    w.experiment.set_settings({"target": "attn_out", "direction": "noise", "metric": "logit_diff",
                               "method": "exact"})
    assert w.run()
    wait_result(qtbot, w)
    assert w.difference.values is None and w.difference_presenter.values is None
