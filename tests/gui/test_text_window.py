"""Issue 10 in the window: the Text tab (compare models, head ablation, token ablation, top examples)."""

import numpy as np
import pytest
import torch
from guihelpers import WAIT_MS, wait_idle

from patchlab.engine import embedded
from patchlab.engine.text.corpus import toy_corpus

pytestmark = pytest.mark.skipif(not (embedded.is_embedded("toy-attn1") and embedded.is_embedded("toy-attn2")),
                                reason="toy models are not built")


def _run(qtbot, w, analysis, **setup):
    tab, p = w.text_view, w.text_presenter
    tab.analysis.setCurrentIndex(tab.analysis.findData(analysis))
    for fn in setup.values():
        fn(tab)
    p.result = None
    assert p.run()
    assert not w.text_view.run_btn.isEnabled() and w.text_view.cancel_btn.isEnabled()
    qtbot.waitUntil(lambda: p.result is not None or "Failed" in tab.status.text(), timeout=WAIT_MS)
    wait_idle(qtbot, w)
    assert p.result is not None, tab.status.text()
    assert tab.progress.value() == 1000 and tab.run_btn.isEnabled()
    return p.result


def _table(view, n):
    return [(float(view.table.item(r, 0).text()), int(view.table.item(r, 1).text()), int(view.table.item(r, 2).text()))
            for r in range(n)]


def test_compare_attn1_with_attn2_puts_induction_tokens_on_top(qtbot, make_window, tmp_path):
    w = make_window("toy-attn1")
    n_docs = 30
    _run(qtbot, w, "compare", src=lambda t: (t.source.setCurrentIndex(t.source.findData("toy")),
                                             t.n_docs.setValue(n_docs)),
         b=lambda t: t.model_b.setCurrentText("toy-attn2"))
    rows = _table(w.text_view.view, 20)
    corpus = toy_corpus(n_docs)  # the same sample (seed 0): the toy language says which rule each token follows
    rules = {(i, t.pos + 1): t.rule for i, d in enumerate(corpus.toy_docs) for t in d.targets}
    kinds = [rules.get((doc, pos), "none") for _, doc, pos in rows]
    assert kinds.count("induction") >= 16, kinds
    assert rows[0][0] >= rows[-1][0] > 0  # attn2 beats attn1 there
    # hovering shows the same value the table lists
    v, doc, pos = rows[0]
    assert w.text_view.view.token_value(doc, pos) == pytest.approx(v, rel=1e-3)
    # exports
    for fmt in ("csv", "json", "html"):
        out = w.text_presenter.export(tmp_path / f"cmp.{fmt}")
        assert out.stat().st_size > 100
    assert "<span" in (tmp_path / "cmp.html").read_text()


def test_head_ablation_token_ablation_and_top_examples(qtbot, make_window):
    w = make_window("toy-attn2")
    tab = w.text_view
    # head ablation (mean, over sampled toy text): a table of every head, drill-down as text
    res = _run(qtbot, w, "ablate", src=lambda t: (t.source.setCurrentIndex(t.source.findData("toy")),
                                                  t.n_docs.setValue(10)),
               opts=lambda t: (t.components.setCurrentIndex(t.components.findData("heads")),
                               t.method.setCurrentIndex(t.method.findData("mean"))))
    assert tab.table.isVisibleTo(tab) and tab.table.rowCount() == 8
    labels = [tab.table.item(r, 0).text() for r in range(8)]
    assert sorted(labels) == sorted(f"L{la}H{h}" for la in range(2) for h in range(4))
    # the card: ablating the previous-token head or L0H0 hurts most; both beat the other heads
    assert set(labels[:2]) <= {"L0H0", "L0H3", "L1H0"}, labels
    assert float(tab.table.item(0, 1).text()) > 0.2
    tab.table.cellClicked.emit(1, 0)
    assert labels[1] in tab.view.title.text() or res.drilldown(labels[1]).value_label in tab.view.title.text()

    # token ablation on pasted text: deleting the earlier copy of 'bax' breaks the induction guess
    text = "alice sees bax bez kax bax"
    _run(qtbot, w, "token", src=lambda t: (t.source.setCurrentIndex(t.source.findData("paste")),
                                           t.paste.setPlainText(text)),
         opts=lambda t: (t.position.setValue(-1), t.target.setText("logprob: bez")))
    ids = w.model.to_tokens(text)[0].tolist()
    bez = w.model.to_single_token("bez")
    with torch.no_grad():
        base = torch.log_softmax(w.model(torch.tensor([ids]))[0, -1], -1)[bez]
        row = ids[:3] + ids[4:]
        ref = float(torch.log_softmax(w.model(torch.tensor([row]))[0, -1], -1)[bez] - base)
    assert tab.view.token_value(0, 3) == pytest.approx(ref, abs=1e-4)  # a hand deletion
    vals = [tab.view.token_value(0, p) for p in range(1, len(ids) - 1)]
    assert int(np.nanargmin(vals)) + 1 in (3, 4)

    # top examples of head L1H3 over sampled toy text: the value is the head's output norm there
    _run(qtbot, w, "top", src=lambda t: (t.source.setCurrentIndex(t.source.findData("toy")), t.n_docs.setValue(8)),
         opts=lambda t: t.unit.setText("L1H3"))
    rows = _table(tab.view, 3)
    assert rows[0][0] >= rows[1][0] >= rows[2][0]
    v, doc, pos = rows[0]
    toks = w.model.to_tokens(next(d for d in toy_corpus(8) if d.index == doc).text)  # with BOS
    with torch.no_grad():
        _, cache = w.model.run_with_cache(toks)
        norm = (cache["blocks.1.attn.hook_z"][0, pos, 3] @ w.model.blocks[1].attn.W_O[3]).norm()
    assert float(norm) == pytest.approx(v, rel=1e-3)
    # bad input is a message, not a job
    tab.unit.setText("head three")
    assert not w.text_presenter.run() and "L1H3" in tab.status.text()
