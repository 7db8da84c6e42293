"""The full user flow: model, example, run, click a cell, readouts, exports."""

import numpy as np
from guihelpers import WAIT_MS, wait_idle, wait_result
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage

import patchlab


def run_and_wait(qtbot, w, target=None):
    if target:
        w.experiment.set_settings({"target": target, "direction": "denoise",
                                   "metric": "logit_diff_recovered", "method": "exact"})
    assert w.run()
    wait_result(qtbot, w)
    wait_idle(qtbot, w)
    return w.state.result


def test_full_flow(qtbot, window, tmp_path):
    w = window
    w.pair_editor.load_example(0)
    qtbot.waitUntil(lambda: "P(answer" in w.readouts.labels["clean"].text(), timeout=WAIT_MS)
    assert "P(answer" in w.readouts.labels["corrupted"].text()
    result = run_and_wait(qtbot, w, "resid_pre")
    assert result.meta["complete"] and np.isfinite(result.values).all()
    assert w.model_info().name in w.windowTitle()
    assert "Residual stream before each layer" in w.heatmap.title_item.text
    assert "clean activations \u2192 corrupted run" in w.heatmap.title_item.text

    # click the cell with the largest effect, through the real mouse path
    (layer, pos), _ = result.top_cells(1, absolute=True)[0]
    w.heatmap.flush()
    qtbot.wait(50)
    view = w.heatmap.graphics
    point = view.mapFromScene(w.heatmap.cell_scene_pos(layer, pos))
    qtbot.mouseClick(view.viewport(), Qt.LeftButton, pos=point)
    qtbot.waitUntil(lambda: w.heatmap.selected == (layer, pos), timeout=5000)
    assert w.state.cell == (layer, pos)
    rp = w.readout_presenter
    qtbot.waitUntil(lambda: rp.patched is not None, timeout=WAIT_MS)
    assert "P(answer" in w.readouts.labels["patched"].text()
    assert f"layer {layer}" in w.readouts.title("patched")
    # the patched run's logit difference is what the sweep measured for that cell
    ld = result.meta["cell_raw"]["logit_diff"][layer, pos]
    assert abs(rp.patched["logit_diff"] - ld) < 1e-3

    png, svg, csv = tmp_path / "h.png", tmp_path / "h.svg", tmp_path / "h.csv"
    w.export_figure(png, "heatmap")
    w.export_figure(svg, "heatmap")
    w.export_data(csv)
    image = QImage(str(png))
    assert not image.isNull() and image.width() > 400
    colours = {image.pixel(x, y) for x in range(0, image.width(), 7) for y in range(0, image.height(), 7)}
    assert len(colours) > 20, "the PNG looks blank"
    text = svg.read_text()
    assert "<image" in text, "the SVG lacks the heatmap image"
    assert "layer" in text and "L0" in text and "Logit difference recovered" in text
    assert csv.read_text() == result.to_csv()
    # and the result is the engine's: a fresh run agrees (float noise of batched passes aside)
    engine = patchlab.patch(w.model, w.pair_editor.pairs(), target="resid_pre")
    np.testing.assert_allclose(result.values, engine.values, atol=1e-4)
    assert (tmp_path / "h.json").is_file()

    out = w.export_all(tmp_path)
    assert {p.name for p in out} >= {"heatmap.png", "heatmap.svg", "patching.csv", "patching.json"}


def test_export_failure_is_reported(qtbot, window, tmp_path):
    run_and_wait(qtbot, window, "resid_pre")
    assert window.report_errors(window.export_figure, tmp_path / "missing" / "x.png") is None
    assert "does not exist" in window.last_error


def test_head_target_and_decompose(qtbot, window):
    w = window
    result = run_and_wait(qtbot, w, "attn_head_out_by_pos")
    assert result.values.ndim == 3 and w.heatmap.pos_box.isVisible()
    w.heatmap.select_position(2)
    w.heatmap.flush()
    w.heatmap.select_cell((1, 2, 0))
    qtbot.waitUntil(lambda: w.readouts.attention.isVisible(), timeout=WAIT_MS)
    wait_idle(qtbot, w)
    w.run_decompose()
    qtbot.waitUntil(lambda: w.state.decomposition is not None or bool(w.last_error), timeout=WAIT_MS)
    assert not w.last_error, w.last_error
    assert w.state.decomposition.heads.shape[1] == w.model.cfg.n_layers
