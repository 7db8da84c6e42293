"""Issue 11 item 3 (faults keep work) and issue 13 item 5 (say what ran): fault injection.

Each test breaks one thing on purpose (an exception or an out-of-memory error mid-sweep, a
failed load, an export folder that cannot be written, a truncated session or run record, a
model change while a readout is queued) and checks that the finished work stays, the message
says what happened, the traceback is behind Details and in the log file, and the window stays
usable.
"""

import json

import numpy as np
import pytest
import torch
from guihelpers import Recorder, slow_iter_patch, wait_idle, wait_progress

import patchlab
import patchlab.engine.sweep as sweep_module
from patchlab.core.errors import PatchlabError
from patchlab.gui.jobs import Status

WAIT = 90_000


class FailingBackend:
    """The real exact backend for ``after`` layer rows, then ``exc`` (the fault)."""

    def __init__(self, real, exc, after):
        self.real, self.exc, self.after = real, exc, after
        self.NAME = getattr(real, "NAME", real.__name__)
        self.__name__ = real.__name__

    def iter_rows(self, ctx, stop, batch_size=None):
        for n, row in enumerate(self.real.iter_rows(ctx, stop, batch_size=batch_size)):
            if n == self.after:
                raise self.exc
            yield row
        if self.after >= 0:
            raise self.exc


def inject(monkeypatch, exc, after):
    real = sweep_module._pick_backend

    def pick(ctx, engine):
        backend, reason = real(ctx, engine)
        return FailingBackend(backend, exc, after), reason

    monkeypatch.setattr(sweep_module, "_pick_backend", pick)


def finished(qtbot, w):
    qtbot.waitUntil(lambda: bool(w.last_error) or w.state.result is not None, timeout=WAIT)
    wait_idle(qtbot, w)


@pytest.mark.parametrize("exc", [RuntimeError("boom in layer 1"),
                                 torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")],
                         ids=["exception", "out_of_memory"])
def test_error_mid_sweep_keeps_finished_rows(qtbot, window, tmp_path, monkeypatch, exc):
    w = window
    pairs = w.pair_editor.pairs()
    reference = patchlab.patch(w.model, pairs, target="resid_pre")  # before the fault is injected
    inject(monkeypatch, exc, after=1)
    w.experiment.set_settings({"target": "resid_pre"})
    assert w.run()
    finished(qtbot, w)
    r = w.state.result
    assert r is not None, w.last_error
    assert r.meta.get("partial"), (w.last_error, r.meta.get("method"), w.experiment.error_details)
    assert r.meta["partial"] and not r.meta["complete"]
    assert type(exc).__name__ in r.meta["error"] and str(exc) in w.last_error
    # the first layer row is the engine's own (independent fault-free run); the rest is blank
    np.testing.assert_allclose(r.values[0], reference.values[0], atol=1e-4)
    assert np.isnan(r.values[1:]).all()
    assert np.array_equal(np.isfinite(w.heatmap.values), np.isfinite(r.values))
    text = w.experiment.progress_text.text()
    assert "failed after" in text and "kept" in text
    assert w.experiment.details_btn.isVisibleTo(w) and "Traceback" in w.experiment.error_details
    w.experiment.details_btn.click()
    assert "Traceback" in w.last_details and str(w.error_log_path) in w.last_details
    log = w.error_log_path.read_text()
    assert type(exc).__name__ in log and "Traceback" in log
    # exportable, and marked partial in the run record
    csv_path, json_path = w.export_data(tmp_path / "partial.csv")
    record = json.loads(json_path.read_text())
    assert record["meta"]["partial"] is True and csv_path.is_file()
    # the window stays usable: the next run (no fault) completes
    monkeypatch.undo()
    w.last_error = None
    assert w.run()
    qtbot.waitUntil(lambda: w.state.result is not None and w.state.result.meta.get("complete"), timeout=WAIT)
    assert not w.experiment.details_btn.isVisibleTo(w)


def test_error_before_any_row_shows_details(qtbot, window, monkeypatch):
    w = window
    inject(monkeypatch, RuntimeError("fails at once"), after=0)
    w.experiment.preview.setChecked(False)
    assert w.run()
    finished(qtbot, w)
    assert "fails at once" in w.last_error and "Run failed" in w.experiment.progress_text.text()
    assert w.experiment.details_btn.isVisibleTo(w) and "fails at once" in w.experiment.error_details
    assert "fails at once" in w.error_log_path.read_text()


def test_status_line_says_which_engine_ran(qtbot, window, monkeypatch):
    w = window
    assert w.run()
    qtbot.waitUntil(lambda: w.state.result is not None, timeout=WAIT)
    wait_idle(qtbot, w)
    meta = w.state.result.meta
    assert meta["engine_path"] and f"engine: {meta['engine_path']}" in w.status_engine.text()
    # a forced fallback shows its reason
    real = sweep_module._pick_backend
    monkeypatch.setattr(sweep_module, "_pick_backend",
                        lambda ctx, engine: (real(ctx, "generic")[0], "test: fast path refused"))
    assert w.run()
    qtbot.waitUntil(lambda: "fallback" in w.status_engine.text(), timeout=WAIT)
    assert "test: fast path refused" in w.status_engine.text()


def test_failed_load_keeps_model_and_logs(qtbot, window, tmp_path):
    w = window
    before = w.model
    w.load_model(str(tmp_path / "no-such-model"), "cpu", "float32", "compat")
    qtbot.waitUntil(lambda: bool(w.last_error), timeout=WAIT)
    wait_idle(qtbot, w)
    assert w.model is before
    assert "no-such-model" in w.error_log_path.read_text()


def test_readout_error_clears_stale_readout(qtbot, window, monkeypatch):
    from patchlab.gui import pair_jobs

    w = window
    wait_idle(qtbot, w)
    assert "computing" not in w.readouts.labels["clean"].text()
    def broken(**kwargs):
        raise RuntimeError("readout exploded")
    monkeypatch.setattr(pair_jobs, "readout_job", broken)
    w.readout_presenter.request_runs()
    wait_idle(qtbot, w)
    for key in ("clean", "corrupted"):
        assert "readout exploded" in w.readouts.labels[key].text()
    assert w.readout_presenter.runs is None


@pytest.mark.parametrize("how", ["not_a_folder", "disk_full"])
def test_export_folder_unwritable(qtbot, window, tmp_path, monkeypatch, how):
    w = window
    assert w.run()
    qtbot.waitUntil(lambda: w.state.result is not None, timeout=WAIT)
    wait_idle(qtbot, w)
    if how == "not_a_folder":  # (tests run as root: a chmod'ed folder would still be written)
        (tmp_path / "file").write_text("x")
        target = tmp_path / "file" / "out.csv"
    else:
        import os
        import tempfile

        def full(*args, **kwargs):
            raise OSError(28, os.strerror(28))
        monkeypatch.setattr(tempfile, "mkstemp", full)
        target = tmp_path / "out.csv"
    assert w.report_errors(w.export_data, target) is None
    assert w.last_error and ("No space" in w.last_error or "does not exist" in w.last_error)
    assert w.state.result is not None  # the result is still there to export elsewhere


def test_truncated_session_and_run_record(qtbot, window, tmp_path):
    w = window
    assert w.run()
    qtbot.waitUntil(lambda: w.state.result is not None, timeout=WAIT)
    wait_idle(qtbot, w)
    session = tmp_path / "s.patchlab"
    assert w.save_session(session)
    w.writer.wait()  # sessions are written off the GUI thread
    text = session.read_text()
    session.write_text(text[: len(text) // 2])
    result = w.state.result
    assert not w.open_session(session)
    assert w.last_error and w.state.result is result, "a bad file changes nothing"
    record = result.save_json(tmp_path / "r.json")
    record.write_text(record.read_text()[:200])
    with pytest.raises(PatchlabError):
        type(result).load_json(record)


@pytest.mark.parametrize("where", ["snapshot", "write_snapshot"])  # GUI thread / writer thread
def test_close_survives_failing_autosave(qtbot, make_window, gui_model_name, monkeypatch, where):
    from patchlab.gui.services import sessions

    w = make_window(gui_model_name)
    def broken(*args, **kwargs):
        raise RuntimeError("autosave bug")
    monkeypatch.setattr(sessions, where, broken)
    assert w.close() and not w.isVisible()
    assert w.controller._closing, "the worker was shut down although autosave raised"
    assert "autosave bug" in w.error_log_path.read_text()


def test_model_change_drops_queued_readout(qtbot, window, monkeypatch, gui_model_name):
    w = window
    out = []
    rec = Recorder(out)
    w.controller.done.connect(rec.record_done)
    slow_iter_patch(monkeypatch, 0.4)
    assert w.run()
    wait_progress(qtbot, w)
    w.readout_presenter.request_runs()  # queued behind the sweep, for the old model
    queued = w.controller.latest_id("readout")
    old = w.model
    w.load_model(gui_model_name, "cpu", "float32", "compat")
    qtbot.waitUntil(lambda: w.model is not old, timeout=WAIT)
    wait_idle(qtbot, w)
    stale = [o for o in out if o.kind == "readout" and o.run_id == queued]
    assert all(o.status is not Status.OK for o in stale), "a readout for the old model was shown"
    # the readouts on screen now come from the new model
    assert "computing" not in w.readouts.labels["clean"].text()


def test_export_data_off_the_gui_thread(qtbot, window, tmp_path):
    import threading

    w = window
    assert w.run()
    qtbot.waitUntil(lambda: w.state.result is not None, timeout=WAIT)
    wait_idle(qtbot, w)
    threads, saved = [], []

    def export(path):
        threads.append(threading.current_thread())
        return w.export_data(path)

    w.report_errors_later(export, tmp_path / "bg.csv", then=saved.append)
    qtbot.waitUntil(lambda: bool(saved), timeout=WAIT)
    assert threads and threads[0] is not threading.main_thread()
    assert (tmp_path / "bg.csv").read_text() == w.state.result.to_csv()
    # a failing write comes back to the main thread as a message
    w.report_errors_later(w.export_data, tmp_path / "missing" / "x.csv")
    qtbot.waitUntil(lambda: bool(w.last_error), timeout=WAIT)
    assert "does not exist" in w.last_error


def test_patched_readout_for_an_old_run_never_fills_the_new_one(qtbot, window, monkeypatch):
    import time

    from patchlab.gui import pair_jobs

    w = window
    assert w.run()
    qtbot.waitUntil(lambda: w.state.result is not None, timeout=WAIT)
    wait_idle(qtbot, w)
    real = pair_jobs.patched_job

    def slow(**kwargs):
        time.sleep(1.0)
        return real(**kwargs)

    monkeypatch.setattr(pair_jobs, "patched_job", slow)
    w.heatmap.select_cell((0, 0))  # the patched job for this run starts (slowly)
    qtbot.waitUntil(lambda: w.controller.running_kind == "patched", timeout=WAIT)
    old = w.state.run_spec
    assert w.run()  # a new run: the old run's patched readout must not appear for it
    qtbot.waitUntil(lambda: w.state.run_spec is not old and w.state.result is not None, timeout=WAIT)
    wait_idle(qtbot, w)
    assert w.readout_presenter.patched is None
    assert "click a cell" in w.readouts.title("patched")
