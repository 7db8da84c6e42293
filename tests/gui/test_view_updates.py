"""Cheap view updates for long prompts (issue 11 item 4): heatmap ticks, scatter points."""

import numpy as np
from PySide6.QtCore import QPointF

from patchlab.gui.views.heatmap import HeatmapView
from patchlab.gui.views.heatmap_data import (
    ALL_POS,
    MAX_TICKS,
    axis_ticks,
    full_index,
    plane,
    row_spans,
    step_cell,
)
from patchlab.gui.views.scatter_view import ScatterView


def test_axis_ticks_thin_and_show_blanks():
    labels = [f" w{i}" if i % 2 else f"w{i}" for i in range(511)] + ["\n"]
    ticks = axis_ticks(labels, 512, "pos")
    assert len(ticks) <= MAX_TICKS
    assert ticks[0] == (0.5, "w0") and ticks[-1] == (511.5, "\\n")  # a newline token shown escaped
    assert all(t[1] in (labels[int(t[0])], repr(labels[int(t[0])])[1:-1]) for t in ticks)
    assert axis_ticks(["L0", "L1"], 2, "layer") == [(0.5, "L0"), (1.5, "L1")]
    assert axis_ticks(None, 3, "head") == [(0.5, "0"), (1.5, "1"), (2.5, "2")]


def test_plane_helpers_agree_with_the_array():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(3, 4, 5))  # layer, head, pos
    axes = ("layer", "head", "pos")
    shown, _ = plane(values, axes, ALL_POS)
    for layer in range(3):
        for head in range(4):
            idx = full_index(values, axes, layer, head, ALL_POS)
            assert values[idx] == shown[layer, head]  # the cell drawn is the cell named
            assert abs(values[idx]) == np.abs(values[layer, head]).max()
    assert full_index(values, axes, 1, 2, 3) == (1, 2, 3)
    assert step_cell((0, 0), (-1, 5), (3, 4)) == (0, 3)
    assert row_spans({5, 0, 1, 2, 7, 8}) == [(0, 3), (5, 1), (7, 2)]


def test_heatmap_rows_of_a_long_prompt_do_not_relayout_the_axes(qtbot, monkeypatch):
    view = HeatmapView()
    qtbot.addWidget(view)
    labels = {"layer": [f"L{i}" for i in range(12)], "pos": [f"t{i}" for i in range(512)]}
    values = np.full((12, 512), np.nan)
    view.set_data(values, ("layer", "pos"), dict(labels), metric="logit_diff_recovered", title="t")
    view.flush()
    calls = []
    for side in ("bottom", "left"):
        axis = view.plot.getAxis(side)
        monkeypatch.setattr(axis, "setTicks", lambda *a, side=side: calls.append(side))
    for layer in range(12):  # the presenter sends fresh but equal labels with each row
        values = values.copy()
        values[layer] = layer
        view.set_data(values, ("layer", "pos"), {k: list(v) for k, v in labels.items()},
                      metric="logit_diff_recovered", title="t")
        view.flush()
    assert calls == []
    np.testing.assert_array_equal(view.image.image, values)
    view.set_data(values, ("layer", "pos"), dict(labels, pos=[f"u{i}" for i in range(512)]),
                  metric="logit_diff_recovered", title="t")
    view.flush()
    assert calls == ["bottom"]  # new tokens: the x ticks, and only they, change


def test_scatter_draws_when_shown_and_labels_only_the_hovered_point(qtbot):
    view = ScatterView()
    qtbot.addWidget(view)
    view.hide()
    est = np.arange(12.0).reshape(3, 4)
    exact = est.copy()
    exact[1, 2] = np.nan
    asked = []

    def label(index):
        asked.append(index)
        return f"cell {index}"

    view.set_data(est, exact, label, "logit diff")
    view._redraw()  # the throttle timer's tick while hidden: nothing drawn yet
    assert len(view.points.getData()[0]) == 0
    view.show()
    qtbot.waitUntil(lambda: len(view.points.getData()[0]) == 11, timeout=5000)
    xs, ys = view.points.getData()
    keep = np.isfinite(exact.ravel())
    np.testing.assert_array_equal(xs, est.ravel()[keep])
    np.testing.assert_array_equal(ys, exact.ravel()[keep])
    assert asked == []  # no label was made to draw

    class Spot:  # what pyqtgraph passes for the point under the mouse
        def index(self):
            return 7  # the 8th point drawn: cell (2, 0), after the skipped NaN at (1, 2)

        def pos(self):
            return QPointF(8.0, 8.0)

    view._on_hovered(view.points, [Spot()], None)
    assert asked == [(2, 0)]
    assert view.hover.text().startswith("cell (2, 0): estimate 8")
