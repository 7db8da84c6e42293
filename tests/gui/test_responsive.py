"""Serialisation off the GUI thread (issue 11 item 4): sessions, autosave, exports, close.

A fake serialiser that blocks until the test releases it proves that the GUI thread is not
the one writing (it keeps processing events while the write waits); ordering and close are
checked with the files on disk.
"""

import json
import threading

import pytest
from guihelpers import WAIT_MS, wait_result
from PySide6.QtCore import QObject, QTimer, Slot

from patchlab.gui.services import sessions
from patchlab.gui.services.background import BackgroundWriter


class Ticker(QObject):
    """Counts the ticks of a GUI-thread timer (the event loop running)."""

    def __init__(self):
        super().__init__()
        self.ticks = 0
        self.timer = QTimer(self)
        self.timer.setInterval(5)
        self.timer.timeout.connect(self.tick)
        self.timer.start()

    @Slot()
    def tick(self):
        self.ticks += 1


class Gate:
    """Wraps a write function: records its thread, blocks until released."""

    def __init__(self, fn):
        self.fn = fn
        self.started = threading.Event()
        self.release = threading.Event()
        self.threads = []

    def __call__(self, *args):
        self.threads.append(threading.current_thread())
        self.started.set()
        assert self.release.wait(30), "never released"
        return self.fn(*args)


def test_writer_runs_off_the_gui_thread_in_order(qtbot, tmp_path):
    writer = BackgroundWriter()
    path = tmp_path / "f.txt"
    gate = Gate(lambda text: path.write_text(text) and path)
    done = []
    writer.submit(gate, "first", on_done=lambda v, e, d: done.append(("first", e, threading.current_thread())))
    assert gate.started.wait(10)
    ticker = Ticker()  # the GUI thread's event loop keeps running while the write is blocked
    qtbot.waitUntil(lambda: ticker.ticks >= 5, timeout=WAIT_MS)
    writer.submit(lambda text: path.write_text(text), "second",
                  on_done=lambda v, e, d: done.append(("second", e, threading.current_thread())))
    assert writer.pending() == 2
    gate.release.set()
    qtbot.waitUntil(lambda: len(done) == 2, timeout=WAIT_MS)
    assert gate.threads[0] is not threading.main_thread()
    assert [d[0] for d in done] == ["first", "second"]  # submission order, never reversed
    assert all(d[1] is None and d[2] is threading.main_thread() for d in done)  # reported on the GUI thread
    assert path.read_text() == "second"
    assert writer.wait() and writer.pending() == 0


def test_writer_skips_a_superseded_write_and_reports_errors(qtbot, tmp_path):
    writer = BackgroundWriter()
    gate = Gate(lambda: None)
    writer.submit(gate, key="other")
    assert gate.started.wait(10)
    written, errors = [], []
    for n in range(3):  # queued behind the blocked write: only the newest of key "f" runs
        writer.submit(written.append, n, key="f")
    writer.submit(_boom, on_done=lambda v, e, d: errors.append((e, d)))
    gate.release.set()
    assert writer.wait()
    assert written == [2] and writer.skipped == 2
    assert isinstance(errors[0][0], ValueError) and "_boom" in errors[0][1]  # with its traceback


def _boom():
    raise ValueError("disk on fire")


@pytest.fixture
def slow_write(monkeypatch):
    """Session writes wait for ``gate.release`` (and record their thread)."""
    gate = Gate(sessions.write_snapshot)
    monkeypatch.setattr(sessions, "write_snapshot", gate)
    return gate


def test_save_session_does_not_block_the_gui_thread(qtbot, window, tmp_path, slow_write):
    w = window
    assert w.run()
    wait_result(qtbot, w)
    path = tmp_path / "s.patchlab"
    assert w.save_session(path)
    assert slow_write.started.wait(10)
    assert not path.exists() and w.session_path != path  # still writing: the GUI went on
    ticker = Ticker()
    qtbot.waitUntil(lambda: ticker.ticks >= 5, timeout=WAIT_MS)
    slow_write.release.set()
    qtbot.waitUntil(lambda: w.session_path == path, timeout=WAIT_MS)
    assert slow_write.threads[0] is not threading.main_thread()
    saved = sessions.load(path)
    assert saved.patch_result.to_csv() == w.state.result.to_csv()


def test_later_save_wins_and_close_waits_for_pending_writes(qtbot, make_window, gui_model_name, tmp_path,
                                                             slow_write):
    w = make_window(gui_model_name)
    path = tmp_path / "s.patchlab"
    pairs = w.pair_editor.pairs()
    assert w.save_session(path)  # blocked in the writer with the first snapshot
    assert slow_write.started.wait(10)
    w.pair_editor.add_pair()
    w.validate()
    assert len(w.state.pairs) == len(pairs) + 1
    assert w.save_session(path)  # queued behind it, with the second
    slow_write.release.set()
    w.close()  # waits for both, in order; the autosave of the closing state too
    assert len(sessions.load(path).pairs) == len(pairs) + 1
    assert len(sessions.load(w.autosave_path).pairs) == len(pairs) + 1
    assert w.session_path == path  # the outcome was delivered before the window went


def test_autosave_after_each_sweep(qtbot, window):
    w = window
    assert w.run()
    result = wait_result(qtbot, w)
    qtbot.waitUntil(lambda: w.autosave_path.is_file() and w.writer.pending() == 0, timeout=WAIT_MS)
    data = json.loads(w.autosave_path.read_text())
    assert data["results"]["patch"]["values"] == json.loads(result.to_json())["values"]


def test_export_data_resolves_the_result_before_writing(qtbot, window, tmp_path, monkeypatch):
    """The menu's export binds the result shown when asked: a run started meanwhile (which
    replaces ``state.result``) does not change what the writer thread writes."""
    from patchlab.gui.services import exports

    w = window
    assert w.run()
    first = wait_result(qtbot, w)
    write = exports.data_writer(w.state, "heatmap")
    w.state.set_result(None)
    csv_path, json_path = write(tmp_path / "out.csv")
    assert csv_path.read_text() == first.to_csv()
    with pytest.raises(Exception, match="Nothing to export"):
        exports.data_writer(w.state, "heatmap")


def test_export_all_renders_figures_now_and_writes_the_rest_later(qtbot, window, tmp_path):
    from patchlab.gui.services import exports

    w = window
    assert w.run()
    first = wait_result(qtbot, w)
    figures, write_rest = exports.export_all_parts(w.state, tmp_path, w.figure, w.session_settings())
    assert {p.name for p in figures} >= {"heatmap.png", "heatmap.svg"} and all(p.is_file() for p in figures)
    assert not (tmp_path / "patching.csv").exists()  # nothing else written on the GUI thread
    w.state.set_result(None)  # what the state does meanwhile does not change what is written
    out = []
    thread = threading.Thread(target=lambda: out.extend(write_rest()))
    thread.start()
    thread.join(60)
    assert (tmp_path / "patching.csv").read_text() == first.to_csv()
    assert sessions.load(tmp_path / "session.patchlab").patch_result.to_csv() == first.to_csv()
    assert tmp_path / "session.patchlab" in out


def test_autosave_after_a_sweep_waits_for_the_redraw(qtbot, window):
    """The writer's JSON work must not overlap the finished result's redraw (GIL contention):
    the autosave starts AUTOSAVE_DELAY_MS later, with the state as it is then."""
    from patchlab.gui.services import saving

    w = window
    assert w.run()
    wait_result(qtbot, w)
    assert w.saver.autosave_timer.isActive() and not w.autosave_path.is_file()
    assert w.saver.autosave_timer.interval() == saving.AUTOSAVE_DELAY_MS
    qtbot.waitUntil(lambda: w.autosave_path.is_file() and w.writer.pending() == 0, timeout=WAIT_MS)
    assert not w.saver.autosave_timer.isActive()
