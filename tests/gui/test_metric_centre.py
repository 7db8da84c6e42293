"""Issue 11 item 7: colours centred on the no-effect value; top-k agreement by the change."""

import numpy as np
from guihelpers import wait_idle

from patchlab.gui.preview import agreement


def test_agreement_ranks_by_change_from_centre():
    # unpatched value 5: the cells that matter are the ones far from 5, not the largest
    exact = np.array([5.0, 5.1, 9.0, 1.0, 5.05])
    estimate = np.array([5.2, 4.9, 8.0, 2.0, 5.0])
    by_change = agreement(estimate, exact, k=2, centre=5.0)
    assert by_change["top_k"] == 2  # both rank cells 2 and 3 first (|change| 4 and 4 / 3 and 3)
    by_value = agreement(estimate, exact, k=2)  # centred on 0: picks by level
    # exact top-2 by |value|: cells 2 (9) and 4 (5.05); estimate: cells 2 (8) and 0 (5.2)
    assert by_value["top_k"] == 1


def test_heatmap_levels_centred(qtbot):
    from patchlab.gui.views.heatmap import HeatmapView

    view = HeatmapView()
    qtbot.addWidget(view)
    values = np.array([[2.0, 2.5], [1.0, np.nan]])
    view.set_data(values, ("layer", "pos"), {"layer": ["L0", "L1"], "pos": ["a", "b"]},
                  metric="logit_diff", title="t", centre=2.0)
    view.flush()
    lo, hi = view.image.getLevels()
    assert (lo, hi) == (1.0, 3.0)  # white at 2.0, half-width max |v - 2| = 1
    assert "unpatched" in view.colorbar.axis.labelText
    view.set_data(values, ("layer", "pos"), {"layer": ["L0", "L1"], "pos": ["a", "b"]},
                  metric="logit_diff_recovered", title="t")
    view.flush()
    assert tuple(view.image.getLevels()) == (-2.5, 2.5)


def test_window_centres_raw_metric_on_unpatched_run(qtbot, window):
    w = window
    w.experiment.set_settings({"target": "resid_pre", "metric": "logit_diff"})
    assert w.run()
    qtbot.waitUntil(lambda: w.state.result is not None or bool(w.last_error), timeout=90_000)
    wait_idle(qtbot, w)
    r = w.state.result
    assert r.metric == "logit_diff"
    # independent: the denoising no-effect value is the corrupted run's own logit difference,
    # computed here from the model's logits
    import torch

    pair = w.pair_editor.pairs()[0]
    model = w.model
    with torch.no_grad():
        logits = model(model.to_tokens(pair.corrupted))[0, -1]
    a = model.to_single_token(pair.answer)
    b = model.to_single_token(pair.wrong)
    expected = float(logits[a] - logits[b])
    assert abs(w.heatmap._centre - expected) < 1e-3, (w.heatmap._centre, expected)
    lo, hi = w.heatmap.image.getLevels()
    assert abs((lo + hi) / 2 - expected) < 1e-3


def test_long_prompt_ticks_thinned_and_positions_searchable(qtbot):
    from patchlab.gui.views.heatmap import MAX_TICKS, HeatmapView, thin_ticks

    ticks = [(i + 0.5, f"t{i}") for i in range(500)]
    thin = thin_ticks(ticks)
    assert len(thin) <= MAX_TICKS and thin[0] == ticks[0] and thin[-1] == ticks[-1]
    assert thin_ticks(ticks[:10]) == ticks[:10]

    view = HeatmapView()
    qtbot.addWidget(view)
    n_pos = 300
    values = np.zeros((2, 4, n_pos))
    pos = [f"w{i}" for i in range(n_pos)]
    view.set_data(values, ("layer", "head", "pos"), {"layer": ["L0", "L1"], "head": ["H0", "H1", "H2", "H3"],
                                                    "pos": pos}, metric="logit_diff_recovered", title="t")
    view.flush()
    assert len(view.plot.getAxis("left")._tickLevels[0]) <= MAX_TICKS
    view.pos_box.show()
    # searchable: typing filters the positions by substring
    completer = view.pos_box.completer()
    completer.setCompletionPrefix("w123")
    assert completer.currentCompletion() == "123: 'w123'"
    assert view.pos_box.count() == n_pos + 1
    view.set_data(np.zeros((2, n_pos)), ("layer", "pos"), {"layer": ["L0", "L1"], "pos": pos},
                  metric="logit_diff_recovered", title="t")
    view.flush()
    assert len(view.plot.getAxis("bottom")._tickLevels[0]) <= MAX_TICKS
