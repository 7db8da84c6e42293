"""Instant attribution preview, the estimate-vs-exact view, ETA, and small UI fixes."""

import time

import numpy as np
import pytest
from guihelpers import WAIT_MS, Recorder, slow_iter_patch, wait_idle, wait_result
from PySide6.QtCore import QObject, Slot
from PySide6.QtGui import QImage

import patchlab
import patchlab.engine.sweep as sweep_module
from patchlab.core.pairs import PromptPair
from patchlab.gui.preview import ExactEta, PreviewReady, agreement
from patchlab.gui.views.pairs_table import COL_PROMPT, list_text

REAL_ITER_PATCH = sweep_module.iter_patch
TARGET = "attn_head_out_by_pos"


def settings(target=TARGET, method="exact"):
    return {"target": target, "direction": "denoise", "metric": "logit_diff_recovered",
            "method": method}


class Watcher(QObject):
    """Connected after the window: sees the window's state right after each event."""

    def __init__(self, window):
        super().__init__()
        self.w = window
        self.seen = []
        self.t0 = time.perf_counter()

    @Slot(str, object)
    def on_progress(self, kind, event):
        if kind != "sweep":
            return
        phase = "ready" if isinstance(event, PreviewReady) else getattr(event, "phase", "?")
        self.seen.append((phase, time.perf_counter() - self.t0, self.w.heatmap.title,
                          frozenset(self.w.heatmap.estimate_rows)))


@pytest.fixture
def slow_estimate(monkeypatch):
    """Sleep after each estimate row so a test can act during the preview phase."""
    slow_iter_patch(monkeypatch, 0.5, phase="estimate")


def test_preview_then_exact(qtbot, window, tmp_path):
    w = window
    w.experiment.set_settings(settings())
    assert w.experiment.preview.isChecked()
    watcher = Watcher(w)
    w.controller.progress.connect(watcher.on_progress)
    watcher.t0 = time.perf_counter()
    assert w.run()
    result = wait_result(qtbot, w)
    total = time.perf_counter() - watcher.t0
    phases = [s[0] for s in watcher.seen]
    first_exact = phases.index("exact")
    assert phases[0] == "estimate" and "ready" in phases[:first_exact], phases
    est_title = watcher.seen[0][2]
    assert "estimate (attribution patching)" in est_title and "arriving" in est_title
    assert watcher.seen[0][3] == frozenset(range(result.shape[0])), "all rows start as estimate"
    # exact rows replace estimate rows one layer at a time
    assert watcher.seen[first_exact][3] == frozenset(range(1, result.shape[0]))
    print(f"\npreview shown after {watcher.seen[0][1] * 1000:.0f} ms; exact done after "
          f"{total * 1000:.0f} ms ({result.values.size} cells, {len(w.pair_editor.pairs())} pair)")

    pairs = w.pair_editor.pairs()
    exact = patchlab.patch(w.model, pairs, target=TARGET, method="exact")
    estimate = patchlab.patch(w.model, pairs, target=TARGET, method="attribution")
    assert result.meta["method"] == "exact" and result.meta["complete"]
    np.testing.assert_allclose(result.values, exact.values, atol=1e-4)
    np.testing.assert_allclose(w.state.estimate.values, estimate.values, atol=1e-4)
    assert w.state.estimate.meta["method"] == "attribution"
    # the final state is exact: heatmap = result, no hatching, title without "estimate"
    np.testing.assert_array_equal(w.heatmap.values, result.values)
    assert not w.heatmap.estimate_rows and "estimate" not in w.heatmap.title_item.text

    # the scatter's data are the two results, cell by cell
    w.scatter.flush()
    e, x, labels = w.scatter.pairs()
    np.testing.assert_array_equal(e, w.state.estimate.values.ravel())
    np.testing.assert_array_equal(x, result.values.ravel())
    assert labels[0] == result.cell_label((0, 0, 0))
    xs, ys = w.scatter.points.getData()
    np.testing.assert_array_equal(xs, e)
    np.testing.assert_array_equal(ys, x)
    stats = agreement(w.state.estimate.values, result.values)
    assert f"top-{stats['k']} agreement {stats['top_k']}/{stats['k']}" in w.scatter.title_item.text
    assert "Pearson r = " in w.scatter.title_item.text

    # exports: PNG/SVG of the scatter and one CSV row per cell with both values
    w.tabs.setCurrentWidget(w.scatter)
    png, svg, csv = tmp_path / "s.png", tmp_path / "s.svg", tmp_path / "s.csv"
    w.export_figure(png)
    w.export_figure(svg)
    w.export_data(csv)
    assert QImage(str(png)).width() > 300
    assert "attribution estimate" in svg.read_text()
    rows = csv.read_text().splitlines()
    assert rows[0].endswith("estimate_logit_diff_recovered,exact_logit_diff_recovered")
    assert len(rows) == 1 + result.values.size
    last = rows[-1].split(",")
    assert float(last[-2]) == pytest.approx(w.state.estimate.values.ravel()[-1])
    assert float(last[-1]) == pytest.approx(result.values.ravel()[-1])
    names = {p.name for p in w.export_all(tmp_path)}
    assert {"scatter.png", "scatter.svg", "estimate_vs_exact.csv"} <= names


def test_cancel_during_preview(qtbot, window, slow_estimate):
    w = window
    w.experiment.set_settings(settings())
    assert w.run()
    qtbot.waitUntil(lambda: w.sweep.live.estimate_values is not None, timeout=WAIT_MS)
    t0 = time.perf_counter()
    w.cancel()
    wait_result(qtbot, w)
    assert time.perf_counter() - t0 < 1.5
    r = w.state.result
    assert r.meta["cancelled"] and r.meta.get("preview_only")
    assert "Cancelled during the preview" in w.experiment.progress_text.text()
    assert not w.heatmap.estimate_rows


def test_new_run_during_preview_supersedes(qtbot, window, slow_estimate):
    w = window
    seen = []
    recorder = Recorder(seen)
    w.controller.done.connect(recorder.record_done)
    w.experiment.set_settings(settings())
    assert w.run()
    qtbot.waitUntil(lambda: w.sweep.live.estimate_values is not None, timeout=WAIT_MS)
    w.experiment.set_settings(settings("attn_head_out_all_pos"))
    assert w.run()
    r = wait_result(qtbot, w)
    assert r.target == "attn_head_out_all_pos" and r.meta["complete"] and r.meta["method"] == "exact"
    assert w.state.estimate.target == "attn_head_out_all_pos"
    assert [o.value for o in seen if o.kind == "sweep"] == [r], "the superseded run must be dropped"



def test_preview_failure_is_skipped(qtbot, window, monkeypatch):
    def failing(*args, **kwargs):
        if kwargs.get("method") == "attribution":
            raise RuntimeError("no gradients for this architecture")
        return REAL_ITER_PATCH(*args, **kwargs)

    monkeypatch.setattr(sweep_module, "iter_patch", failing)
    w = window
    w.experiment.set_settings(settings("resid_pre"))
    assert w.run()
    r = wait_result(qtbot, w)
    assert r.meta["complete"] and w.state.estimate is None
    assert "No preview" in w.statusBar().currentMessage()


def test_preview_setting_off_and_persisted(qtbot, window):
    w = window
    w.experiment.preview.setChecked(False)
    w.save_settings()
    w.experiment.preview.setChecked(True)
    w.restore_settings()
    assert not w.experiment.preview.isChecked()
    w.experiment.set_settings(settings("resid_pre"))
    assert w.run()
    wait_result(qtbot, w)
    assert w.state.estimate is None and w.state.result.meta["complete"]
    w.experiment.set_settings(settings("resid_pre", method="attribution"))
    assert not w.experiment.preview.isEnabled()


def test_exact_eta_follows_cheaper_later_layers():
    eta = ExactEta()
    assert eta.eta(120, 12) is None
    eta.add(10, 4.0, 0)  # the first row carries the set-up: average rate until more rows
    assert eta.eta(120, 12) == pytest.approx(110 / (10 / 4.0))
    # then each row is 0.2 s cheaper than the one before (rows start at their layer)
    t = 4.0
    for layer in (1, 2, 3):
        t += 2.4 - 0.2 * layer
        eta.add(10 * (layer + 1), t, layer)
    expected = sum(max(2.4 - 0.2 * layer, 0.1 * 1.8) for layer in range(4, 12))
    assert eta.eta(120, 12) == pytest.approx(expected)
    assert eta.eta(120, 12) < (120 - 40) / eta.rate(), "cheaper than the average rate says"


def test_pair_list_keeps_first_word(qtbot, window):
    p = PromptPair("fux koz kuz buz puz poz fiz kux tox foz buz", "x", " puz", " kaz")
    assert list_text(0, p).startswith("1: fux koz kuz")
    long = PromptPair("When John and Mary went to the store, John gave a drink to", "x", " Mary", " John")
    text = list_text(1, long)
    assert text.startswith("2: When John") and "\u2026" in text
    table = window.pair_editor.table_model
    shown = table.data(table.index(0, COL_PROMPT))
    assert shown.startswith("1: " + window.pair_editor.pairs()[0].clean.split()[0])


def test_decomposition_progress_reads_done(qtbot, window):
    w = window
    w.run_decompose()
    qtbot.waitUntil(lambda: w.state.decomposition is not None or bool(w.last_error), timeout=WAIT_MS)
    wait_idle(qtbot, w)
    bar = w.experiment.progress
    assert bar.value() == bar.maximum() and "pairs" in bar.format()
    assert "Decomposition done" in w.experiment.progress_text.text()


def test_the_estimate_comes_before_any_exact_preparation(tiny_dir, monkeypatch):
    """The generator the window runs: its first event is an estimate row, produced without the
    exact sweep's prepare (both prompts through the bridge) in front of it; that runs once, after."""
    from patchlab.engine import attribution_pass
    from patchlab.gui.preview import preview_then_exact

    model = patchlab.load_model(str(tiny_dir / "gpt2"), device="cpu")
    pair = PromptPair("Alice saw John gave a drink to", "Alice saw Mary gave a drink to", " Mary", " John")
    calls = []
    real = sweep_module.prepare
    monkeypatch.setattr(sweep_module, "prepare", lambda *a, **k: calls.append(k.get("method")) or real(*a, **k))
    attribution_pass.clear_cache()
    gen = preview_then_exact(model, pair, target=TARGET, metric="logit_diff", direction="denoise")
    first = next(gen)
    assert first.phase == "estimate" and first.layer == 0 and calls == []
    events = [first]
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            result = stop.value
            break
    assert calls == ["exact"]
    assert any(isinstance(e, PreviewReady) for e in events)
    assert result.meta["method"] == "exact" and result.meta["complete"]
    exact = patchlab.patch(model, pair, target=TARGET, metric="logit_diff")
    np.testing.assert_allclose(result.values, exact.values, atol=1e-6)


def test_pairs_of_different_lengths_are_refused_not_skipped(tiny_dir):
    from patchlab.core.errors import PairError
    from patchlab.gui.preview import PreviewFailed, preview_then_exact

    model = patchlab.load_model(str(tiny_dir / "gpt2"), device="cpu")
    pairs = [PromptPair("Alice saw John gave a drink to", "Alice saw Mary gave a drink to", " Mary", " John"),
             PromptPair("When Alice saw John, John gave a drink to", "When Alice saw John, Mary gave a drink to",
                        " Mary", " John")]
    gen = preview_then_exact(model, pairs, target=TARGET, metric="logit_diff", direction="denoise")
    with pytest.raises(PairError, match="same number of tokens"):
        event = next(gen)
        assert not isinstance(event, PreviewFailed)
