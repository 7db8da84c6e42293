"""Issue 9 in the window: Trace a head from the heatmap's context menu (toy-attn2)."""

import numpy as np
import pytest
from guihelpers import WAIT_MS, wait_idle, wait_result
from PySide6.QtCore import Qt

import patchlab
from patchlab.engine import embedded
from patchlab.toy.prevtoken import prev_token_pairs

pytestmark = pytest.mark.skipif(not embedded.is_embedded("toy-attn2"), reason="toy-attn2 is not built")


def test_trace_previous_token_head_works_through_induction_keys(qtbot, make_window):
    w = make_window("toy-attn2")
    pairs = prev_token_pairs(8)
    w.pair_editor.set_pairs(pairs)
    w.experiment.set_settings({"target": "attn_head_out_all_pos", "direction": "denoise",
                               "metric": "logit_diff_recovered", "method": "exact"})
    assert w.run()
    wait_result(qtbot, w)
    # right-click L0H3 in the head map through the real mouse path: the cell menu offers Trace
    w.heatmap.flush()
    qtbot.wait(50)
    view = w.heatmap.graphics
    point = view.mapFromScene(w.heatmap.cell_scene_pos(0, 3))
    with qtbot.waitSignal(w.heatmap.cellMenuRequested, timeout=5000):
        qtbot.mouseClick(view.viewport(), Qt.RightButton, pos=point)
    assert w.state.cell == (0, 3)
    menu = w.trace_presenter.menu
    menu.hide()
    (action,) = menu.actions()
    assert action.text() == "Trace L0H3" and action.isEnabled()
    action.trigger()
    assert w.tabs.currentWidget() is w.trace_view
    qtbot.waitUntil(lambda: w.trace_presenter.result is not None or "failed" in w.trace_view.status.text(),
                    timeout=WAIT_MS)
    wait_idle(qtbot, w)
    assert w.trace_presenter.result is not None, w.trace_view.status.text()

    # the window shows the keys map, with the induction head's key dominant
    tv = w.trace_view
    assert tv.receiver_box.currentData() == "k"
    title = tv.receivers.title.text()
    assert "L0H3" in title and "keys" in title and "denoise" in title and "mean of 8 pairs" in title
    ref_k = patchlab.path_patch(w.model, pairs, "L0H3", "k").values
    np.testing.assert_allclose(tv.receivers.values, ref_k, atol=1e-5, equal_nan=True)
    assert np.isnan(tv.receivers.values[0]).all()  # layer 0 is not after the sender
    assert np.nanargmax(tv.receivers.values[1]) == 3  # L1H3, the induction head
    ref_eff = patchlab.effects(w.model, pairs, components="heads")
    c = ref_eff.labels["component"].index("L0H3")
    total = ref_eff.values[0, c]
    assert np.nansum(ref_k[1]) > 0.5 * total
    # bars: the same total / direct / indirect as the engine; L0H3 acts indirectly
    np.testing.assert_allclose(tv.effects.values, ref_eff.values, atol=1e-5)
    assert abs(tv.effects.values[1, c]) < 0.1 * abs(tv.effects.values[0, c])
    # q and v receivers are offered and small
    for rec in ("q", "v"):
        tv.receiver_box.setCurrentIndex(tv.receiver_box.findData(rec))
        tv.receiverChosen.emit(rec)
        assert np.nanmax(np.abs(tv.receivers.values)) < 0.05 * total
        assert "queries" in tv.receivers.title.text() or "values" in tv.receivers.title.text()
    assert not tv.neurons.isVisible()  # a head: no neuron table


@pytest.mark.skipif(not embedded.is_embedded("toy-solu1"), reason="toy-solu1 is not built")
def test_trace_mlp_shows_neurons_and_patches_one(qtbot, make_window):
    import torch

    w = make_window("toy-solu1")
    pairs = [e.pair for e in patchlab.examples(w.model) if e.rule == "verbobj"][:1]
    w.pair_editor.set_pairs(pairs)
    w.experiment.set_settings({"target": "mlp_out", "direction": "denoise",
                               "metric": "logit_diff", "method": "exact"})
    assert w.run()
    wait_result(qtbot, w)
    w.heatmap.select_cell((0, 1))
    assert w.trace_view.sender.text() == "Sender: MLP0"
    w.trace_view.trace_btn.click()  # the Trace button
    qtbot.waitUntil(lambda: w.trace_presenter.result is not None or "failed" in w.trace_view.status.text(),
                    timeout=WAIT_MS)
    wait_idle(qtbot, w)
    tv = w.trace_view
    assert tv.neurons.isVisibleTo(tv) and tv.neurons.table.rowCount() == 50
    assert "MLP 0 neurons" in tv.neurons.title.text() and "1 pair" in tv.neurons.title.text()
    # the one-layer model: nothing after MLP0 reads it, so its effect is all direct
    comp = w.trace_presenter.result["effects"].labels["component"].index("MLP0")
    np.testing.assert_allclose(tv.effects.values[0, comp], tv.effects.values[1, comp], atol=1e-4)
    # double-click the top neuron: it is patched alone and the readouts match a hand-hooked run
    tv.neurons.table.sortItems(3, Qt.DescendingOrder)
    n = tv.neurons.neuron_at(0)
    tv.neurons.table.cellDoubleClicked.emit(0, 0)
    qtbot.waitUntil(lambda: w.trace_presenter.neuron_readout is not None, timeout=WAIT_MS)
    wait_idle(qtbot, w)
    assert f"L0N{n} patched alone" in tv.neuron_readout.text()
    lds = []
    with torch.no_grad():
        for p in pairs:
            _, cache = w.model.run_with_cache(p.clean)
            src = cache["blocks.0.mlp.hook_post"][..., n]

            def hook(act, hook, src=src):  # noqa: ARG001
                act[..., n] = src
                return act

            logits = w.model.run_with_hooks(p.corrupted, fwd_hooks=[("blocks.0.mlp.hook_post", hook)])[0, -1]
            a, b = w.model.to_single_token(p.answer), w.model.to_single_token(p.wrong)
            lds.append(float(logits[a] - logits[b]))
    assert w.trace_presenter.neuron_readout["logit_diff"] == pytest.approx(np.mean(lds), abs=1e-3)
