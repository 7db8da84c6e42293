"""The Weights and Text tab views on their own: they draw what they are given and report picks."""

import numpy as np
from PySide6.QtCore import QUrl

from patchlab.core.text_result import DocScores, TokenScores, TopExample, TopExamples
from patchlab.core.weights_result import CompositionResult, WeightMatrix
from patchlab.gui.views.text_view import TextView
from patchlab.gui.views.weights_view import WeightsView


def _matrix():
    labels = ["alice", "bob", "sees", "helps", "finds"]
    groups = ["names", "names", "verbs", "verbs", "verbs"]
    vals = np.arange(25, dtype=float).reshape(5, 5) - 12
    return WeightMatrix(vals, labels, labels, groups, groups, {"circuit": "direct", "row_axis": "current token",
                                                               "col_axis": "logit of token"})


def test_weights_view_draws_the_matrix_with_group_lines(qtbot):
    view = WeightsView()
    qtbot.addWidget(view)
    view.set_matrix(_matrix())
    np.testing.assert_array_equal(view.image.image, _matrix().values)
    assert view.image.levels.tolist() == [-12.0, 12.0]  # symmetric around zero
    assert [line.value() for line in view._lines] == [2, 2]  # one boundary each way: names | verbs
    assert view.describe(0, 2) == "'alice' x 'sees': -10"
    with qtbot.waitSignal(view.cellSelected) as sig:
        view.select(1, 3)
    assert sig.args == ["bob", "helps"]
    view.set_processing_warning("Weight views need folded LayerNorm.")
    assert not view.banner_box.isHidden()
    with qtbot.waitSignal(view.switchProcessingRequested):
        view.switch_button.click()


def test_weights_view_composition_list_marks_scores_above_the_baseline(qtbot):
    vals = np.full((2, 2, 2, 2), np.nan)
    vals[0, 0, 1] = [0.30, 0.10]
    vals[0, 1, 1] = [0.12, 0.20]
    res = CompositionResult(vals, "k", baseline_mean=0.11, baseline_p99=0.15)
    view = WeightsView()
    qtbot.addWidget(view)
    view.set_composition(res)
    assert view.ranked.rowCount() == 4
    assert [view.ranked.item(r, 2).text() for r in range(4)] == ["0.300 *", "0.200 *", "0.120", "0.100"]
    assert "0.150" in view.baseline.text()
    with qtbot.waitSignal(view.headSelected) as sig:
        view.ranked.cellClicked.emit(1, 1)
    assert sig.args == [1, 1]  # the destination L1H1 of the second-ranked pair
    with qtbot.waitSignal(view.headSelected) as sig:
        view.select(0, 3)
    assert sig.args == [1, 1]


def _scores():
    docs = [DocScores(["<bos>", "alice", "sees"], np.array([np.nan, 1.5, -0.5]), 0),
            DocScores(["<bos>", "bax", "<b>"], np.array([np.nan, 3.0, 0.25]), 1)]
    return TokenScores(docs, {"kind": "token_losses", "value_label": "loss (nats)"})


def test_text_view_renders_spans_hover_and_ranked_tokens(qtbot):
    view = TextView()
    qtbot.addWidget(view)
    view.set_scores(_scores())
    text = view.browser.toHtml()
    assert "alice" in text and "&lt;b&gt;" in text
    assert view.table.rowCount() == 4 and view.table.item(0, 0).text() == "+3"
    assert view.token_value(1, 1) == 3.0
    with qtbot.waitSignal(view.tokenHovered) as sig:
        view.browser.highlighted.emit(QUrl("tok:0:1"))
    assert sig.args == [0, 1, 1.5]
    with qtbot.waitSignal(view.tokenClicked) as sig:
        view.table.cellClicked.emit(0, 3)
    assert sig.args == [1, 1]
    with qtbot.waitSignal(view.tokenClicked) as sig:
        view.browser.anchorClicked.emit(QUrl("tok:1:2"))
    assert sig.args == [1, 2]


def test_text_view_top_examples(qtbot):
    ex = [TopExample(5.0, 3, 10, ["a", "b", "c"], np.array([0.1, 5.0, 0.2]), 1),
          TopExample(4.0, 1, 4, ["d", "e"], np.array([4.0, 0.0]), 0)]
    view = TextView()
    qtbot.addWidget(view)
    view.set_top_examples(TopExamples(ex, {"unit": "L1H3", "value_label": "L1H3 output norm"}))
    assert "L1H3" in view.title.text()
    assert view.token_value(3, 10) == 5.0 and view.token_value(1, 4) == 4.0
    assert [view.table.item(r, 2).text() for r in range(2)] == ["10", "4"]
    assert np.isnan(view.token_value(3, 99))  # not shown
