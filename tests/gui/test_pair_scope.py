"""Every panel shows the pairs the state says, and says which: "mean of 3 pairs" / "pair 2 of 3"."""

import numpy as np
import pytest
from guihelpers import WAIT_MS, wait_idle, wait_result

import patchlab
from patchlab.gui.state import ALL_PAIRS

TARGET = "attn_head_out_by_pos"


def same_length_pairs(w, n=3):
    groups = {}
    for e in patchlab.examples(w.model_info().name) or []:
        groups.setdefault(len(w.model.to_str_tokens(e.pair.clean)), []).append(e.pair)
    best = max(groups.values(), key=len, default=[])
    if len(best) < 2:
        pytest.skip("the model has no two examples of one token length")
    return best[:n]


def titles(w):
    return {"heatmap": w.heatmap.title, "clean": w.readouts.title("clean"),
            "corrupted": w.readouts.title("corrupted"), "patched": w.readouts.title("patched"),
            "attention": w.readouts.attention_title, "scope bar": w.scope_bar.summary.text()}


def settle(qtbot, w):
    wait_idle(qtbot, w)
    rp = w.readout_presenter
    qtbot.waitUntil(lambda: rp.patched is not None and rp.attention is not None, timeout=WAIT_MS)
    wait_idle(qtbot, w)


def test_every_panel_names_and_shows_the_same_pairs(qtbot, window):
    w = window
    pairs = same_length_pairs(w)
    n = len(pairs)
    w.pair_editor.set_pairs(pairs)
    assert w.validate()
    w.experiment.set_settings({"target": TARGET, "direction": "denoise", "metric": "logit_diff",
                               "method": "exact"})
    result = wait_result(qtbot, w) if w.run() else None
    assert result.per_pair.shape[0] == n
    cell = tuple(int(i) for i in result.top_cells(1, absolute=True)[0][0])
    w.heatmap.select_cell(cell)
    assert w.state.cell == cell
    settle(qtbot, w)

    # all pairs: every title says the mean; the patched run is the mean of the pairs' runs
    assert w.state.pair_mode == ALL_PAIRS
    for name, text in titles(w).items():
        assert f"mean of {n} pairs" in text, (name, text)
    np.testing.assert_array_equal(w.heatmap.values, result.values)
    rp = w.readout_presenter
    # metric logit_diff: a cell's value is the patched run's logit difference (sweep vs readout)
    assert rp.patched["logit_diff"] == pytest.approx(result.values[cell], abs=1e-3)

    # one pair, chosen in the state: every panel follows and names it
    w.state.select_pair(1)
    settle(qtbot, w)
    qtbot.waitUntil(lambda: "pair 2 of" in w.readouts.title("clean"), timeout=WAIT_MS)
    for name, text in titles(w).items():
        assert f"pair 2 of {n}" in text, (name, text)
        assert "mean of" not in text, (name, text)
    np.testing.assert_array_equal(w.heatmap.values, result.per_pair[1])
    assert rp.patched["logit_diff"] == pytest.approx(result.per_pair[1][cell], abs=1e-3)
    # the clean readout is pair 2's own run (its top tokens are shown: one pair)
    assert rp.runs["clean"]["tokens"] == list(w.model.to_str_tokens(pairs[1].clean))
    # position labels are pair 2's tokens (where clean and corrupted agree)
    clean = [str(t) for t in w.model.to_str_tokens(pairs[1].clean)]
    corrupted = [str(t) for t in w.model.to_str_tokens(pairs[1].corrupted)]
    assert w.heatmap.position_labels == [a if a == b else f"{a}/{b}" for a, b in zip(clean, corrupted)]
    # the attention pattern is pair 2's
    from patchlab.engine.readout import attention_patterns

    reference = attention_patterns(w.model, pairs[1], cell[0], cell[2])
    np.testing.assert_allclose(rp.attention["clean"], reference["clean"], atol=1e-6)
    # the editor shows the same pair
    assert w.pair_editor.current_index() == 1

    # Decompose follows the same choice
    assert w.run_decompose()
    qtbot.waitUntil(lambda: w.state.decomposition is not None, timeout=WAIT_MS)
    wait_idle(qtbot, w)
    assert f"pair 2 of {n}" in w.decompose_view.title_item.text
    total = w.state.decomposition.total
    assert total[0] == pytest.approx(rp.runs["clean"]["logit_diff"], abs=1e-3)

    # back to the mean: the decomposition's total is the mean of the pairs' clean logit diffs
    w.state.set_pair_mode(ALL_PAIRS)
    settle(qtbot, w)
    qtbot.waitUntil(lambda: "mean of" in w.readouts.title("clean"), timeout=WAIT_MS)
    for name, text in titles(w).items():
        assert f"mean of {n} pairs" in text, (name, text)
    assert w.run_decompose()
    qtbot.waitUntil(lambda: f"mean of {n}" in w.decompose_view.title_item.text, timeout=WAIT_MS)
    wait_idle(qtbot, w)
    assert w.state.decomposition.total[0] == pytest.approx(rp.runs["clean"]["logit_diff"], abs=1e-3)
