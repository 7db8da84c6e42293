"""AppState and the controller's job outcomes, without windows."""

import numpy as np
import pytest
from PySide6.QtCore import QObject, Slot

from patchlab.core.pairs import PromptPair
from patchlab.core.result import PatchResult
from patchlab.gui.presenters.sweep import position_labels, scoped_values
from patchlab.gui.state import ALL_PAIRS, ONE_PAIR, AppState, RunSpec, Scope

PAIRS = [PromptPair(f"a{i} b", f"c{i} b", " x", " y") for i in range(3)]


class Counter(QObject):
    def __init__(self, state):
        super().__init__()
        self.n = {}
        for name in ("pairsChanged", "pairChoiceChanged", "scopeChanged", "resultChanged",
                     "cellChanged", "runSpecChanged"):
            getattr(state, name).connect(self.make(name))

    def make(self, name):
        def bump():
            self.n[name] = self.n.get(name, 0) + 1
        return bump


def test_pair_choice_and_scope_text():
    st = AppState()
    seen = Counter(st)
    st.set_pairs(PAIRS)
    assert seen.n["pairsChanged"] == 1 and st.pairs == PAIRS
    st.set_pairs(list(PAIRS))  # the same pairs: no signal
    assert seen.n["pairsChanged"] == 1
    assert st.pair_mode == ALL_PAIRS and st.scope().text() == "mean of 3 pairs"
    assert st.shown_pairs() == PAIRS
    st.set_pair_index(2)  # all-pairs mode: what the panels show did not change
    assert seen.n.get("scopeChanged", 0) == 1 and st.scope().is_mean
    st.set_pair_mode(ONE_PAIR)
    assert st.scope().text() == "pair 3 of 3" and st.shown_pairs() == [PAIRS[2]]
    st.select_pair(0)
    assert st.scope() == Scope(3, 0) and st.scope().text() == "pair 1 of 3"
    with pytest.raises(IndexError):
        st.set_pair_index(3)
    with pytest.raises(ValueError):
        st.set_pair_mode("some")
    assert Scope(1, 0).text() == "1 pair" and st.scope(1).text() == "1 pair"
    st.set_pairs(PAIRS[:1])  # the index is clamped to the new pair set
    assert st.pair_index == 0


def test_run_spec_resets_results_and_cell():
    st = AppState()
    seen = Counter(st)
    st.set_pairs(PAIRS)
    spec = RunSpec("m", tuple(PAIRS), "resid_pre", "logit_diff", "denoise", "exact")
    st.set_cell((1, 2))
    st.set_result(object())
    st.start_run(spec)
    assert st.run_spec is spec and st.result is None and st.cell is None
    assert seen.n["runSpecChanged"] == 1 and seen.n["cellChanged"] == 2
    # the scope follows the run's pairs, not the editor's, when they differ
    st.set_pairs(PAIRS[:2])
    st.select_pair(1)
    assert st.scope().text() == "pair 2 of 3" and st.scope(2).text() == "pair 2 of 2"


def test_scoped_values_and_position_labels():
    per_pair = np.arange(2 * 2 * 3, dtype=float).reshape(2, 2, 3)
    r = PatchResult(values=per_pair.mean(0), axes=("layer", "pos"),
                    labels={"layer": ["L0", "L1"], "pos": ["a", "b", "c"]}, per_pair=per_pair,
                    meta={"metric": "logit_diff"})
    np.testing.assert_array_equal(scoped_values(r, Scope(2)), per_pair.mean(0))
    np.testing.assert_array_equal(scoped_values(r, Scope(2, 1)), per_pair[1])
    spec = RunSpec("m", tuple(PAIRS[:2]), "resid_pre", "logit_diff", "denoise", "exact",
                   tokens=((("a", "0", "b"), ("a", "1", "b")), (("z", "2", "b"), ("z", "3", "b"))))
    assert position_labels(spec, Scope(2, 1), None) == ["z", "2/3", "b"]
    # the mean: a token shared by every pair, else the position's index
    assert position_labels(spec, Scope(2), None) == ["#0", "#1", "b"]


class Seen(QObject):
    def __init__(self):
        super().__init__()
        self.out = []

    @Slot(object)
    def record(self, outcome):
        self.out.append(outcome)


def _fails():
    raise RuntimeError("boom")


def _cancelled():
    from patchlab.core.errors import Cancelled

    raise Cancelled("cancelled")


def test_controller_outcomes_and_registered_handlers(qtbot):
    from patchlab.gui.controller import Controller
    from patchlab.gui.jobs import Status

    c = Controller()
    seen = Seen()
    progress = []
    c.on_done("sum", seen.record)
    c.on_done("fail", seen.record)
    c.on_done("stop", seen.record)
    c.on_progress("sum", progress.append)

    def gen(n):
        yield from range(n)
        return n * 10

    with pytest.raises(ValueError, match="no handler registered"):
        c.submit("unknown", gen, dict(n=1))
    c.submit("sum", gen, dict(n=3))
    c.submit("fail", _fails)
    c.submit("stop", _cancelled)
    qtbot.waitUntil(lambda: len(seen.out) == 3, timeout=30000)
    by_kind = {o.kind: o for o in seen.out}
    assert by_kind["sum"].status is Status.OK and by_kind["sum"].value == 30 and progress == [0, 1, 2]
    fail = by_kind["fail"]
    assert fail.status is Status.ERROR and "boom" in fail.error and "Traceback" in fail.details
    assert by_kind["stop"].status is Status.CANCELLED and not by_kind["stop"].ok
    assert c.shutdown()
