"""Sessions through the window (save/open, autosave/restore, corrupt files) and fonts."""

import json

import numpy as np
from guihelpers import WAIT_MS, wait_idle, wait_result
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QColor, QFont, QFontDatabase, QFontMetrics, QImage, QPainter


def _run(qtbot, w):
    assert w.run()
    wait_result(qtbot, w)
    wait_idle(qtbot, w)


def test_session_round_trip(qtbot, window, make_window, tmp_path):
    w = window
    w.experiment.set_settings({"target": "mlp_out" if not getattr(w.model.cfg, "attn_only", False)
                               else "attn_out", "direction": "noise", "metric": "logit_diff",
                               "method": "exact"})
    w.pair_editor.add_pair()
    _run(qtbot, w)
    path = tmp_path / "exp.patchlab"
    assert w.save_session(path)
    w.writer.wait()  # sessions are written off the GUI thread

    w2 = make_window(None, autosave=False)
    assert w2.open_session(path)
    qtbot.waitUntil(lambda: w2.model is not None, timeout=WAIT_MS)
    wait_idle(qtbot, w2)
    assert w2.pair_editor.pairs() == w.pair_editor.pairs()
    assert w2.experiment.settings() == w.experiment.settings()
    np.testing.assert_array_equal(w2.state.result.values, w.state.result.values)
    assert w2.state.result.to_csv() == w.state.result.to_csv()
    assert w.state.estimate is not None  # the preview's estimate and the scatter come back too
    np.testing.assert_array_equal(w2.state.estimate.values, w.state.estimate.values)
    np.testing.assert_array_equal(w2.scatter.pairs()[0], w.scatter.pairs()[0])
    assert w2.scatter.pairs()[0].size > 0
    assert w2.model_info().name == w.model_info().name
    assert "logit_diff" in json.loads(path.read_text())["settings"]["metric"]


def test_corrupt_and_newer_session(qtbot, window, tmp_path):
    w = window
    _run(qtbot, w)
    before = w.state.result
    bad = tmp_path / "bad.patchlab"
    bad.write_text('{"format": "patchlab.session", "format_version": 1, "pairs": [{"clean"')
    assert not w.open_session(bad)
    assert "not valid JSON" in w.last_error
    newer = tmp_path / "newer.patchlab"
    newer.write_text(json.dumps({"format": "patchlab.session", "format_version": 99,
                                 "patchlab_version": "9.9"}))
    assert not w.open_session(newer)
    assert "Update patchlab" in w.last_error
    assert w.state.result is before  # nothing changed


def test_autosave_restores_on_start(qtbot, make_window, gui_model_name, tmp_path):
    w = make_window(gui_model_name)
    _run(qtbot, w)
    w.close()
    assert w.autosave_path.is_file()
    w2 = make_window(None)
    assert w2.restore_autosave()
    qtbot.waitUntil(lambda: w2.model is not None, timeout=WAIT_MS)
    wait_idle(qtbot, w2)
    np.testing.assert_array_equal(w2.state.result.values, w.state.result.values)


def _render(text: str, font: QFont) -> QImage:
    image = QImage(200, 40, QImage.Format_ARGB32)
    image.fill(Qt.white)
    p = QPainter(image)
    p.setFont(font)
    p.setPen(Qt.black)
    p.drawText(QPoint(5, 30), text)
    p.end()
    return image


def test_fonts_render_real_glyphs(qtbot, window):
    families = QFontDatabase.families()
    assert families, "no fonts: install one (e.g. fonts-dejavu-core)"
    font = window.font()
    assert QFontMetrics(font).horizontalAdvance("layer") > 0
    a, b = _render("L", font), _render("W", font)
    tofu_1, tofu_2 = _render("\ue000", font), _render("\ue001", font)
    assert _ink(a) > 0 and _ink(b) > 0, "a letter draws nothing"
    assert a != b, "different letters render identically: glyphs are boxes"
    # two private-use code points have no glyph: whatever is drawn for them (a box, or
    # nothing) is the missing-glyph rendering, and no letter may look like it
    for letter in (a, b):
        for tofu in (tofu_1, tofu_2):
            assert letter != tofu, "a letter renders as the missing-glyph box"


def _ink(image: QImage) -> int:
    """Pixels that are not white."""
    white = QColor(Qt.white).rgb()
    return sum(image.pixel(x, y) != white for x in range(image.width()) for y in range(image.height()))
