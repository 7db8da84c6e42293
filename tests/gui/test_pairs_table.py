"""The pairs table: 10,000 rows, sorting, the 'gets it right' filter, scores, files, paste, drop."""

import json

import numpy as np
import pytest
from guihelpers import WAIT_MS, wait_idle
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QTableView

from patchlab.core.pairs import PromptPair
from patchlab.gui.views.pairs_table import COL_PROMPT, PairsTableModel


class CountingModel(PairsTableModel):
    calls = 0

    def data(self, index, role=Qt.DisplayRole):
        CountingModel.calls += 1
        return super().data(index, role)


def test_ten_thousand_pairs_sort_and_filter_without_per_row_work(qtbot):
    n = 10_000
    rng = np.random.default_rng(0)
    pairs = [PromptPair(f"p{i} a b", f"q{i} a b", " x", " y") for i in range(n)]
    model = CountingModel()
    view = QTableView()
    view.setModel(model)
    view.verticalHeader().setDefaultSectionSize(20)
    view.resize(600, 300)
    qtbot.addWidget(view)
    view.show()
    model.set_pairs(pairs)
    p_clean = rng.random(n)
    right = rng.random(n) < 0.3
    model.set_scores([{"index": i, "pair": pairs[i], "n_tokens": 4, "tokens_ok": True,
                       "clean_answer_prob": float(p_clean[i]), "corrupted_answer_prob": 0.1,
                       "clean_correct": bool(right[i])} for i in range(n)])
    qtbot.wait(50)
    CountingModel.calls = 0
    model.sort(4, Qt.DescendingOrder)
    qtbot.wait(50)
    # the view asked only for the rows on screen, not for 10,000
    assert CountingModel.calls < 50 * 8 * 6, CountingModel.calls
    order = model.visible_pairs()
    assert order == sorted(range(n), key=lambda i: -p_clean[i])
    assert model.data(model.index(0, 4)) == f"{p_clean.max():.3f}"
    model.set_only_right(True)
    assert model.rowCount() == int(right.sum())
    shown = model.visible_pairs()
    assert all(right[i] for i in shown) and shown == sorted(shown, key=lambda i: -p_clean[i])
    # an edited pair loses its scores (they belonged to the old text)
    model.set_only_right(False)
    model.update_pair(5, PromptPair("new a b", "q5 a b", " x", " y"))
    assert np.isnan(model.clean_p[5]) and model.first_unscored() == 5


def test_scores_load_filter_paste_and_drop(qtbot, window, tmp_path):
    w = window
    from patchlab.engine.readout import run_readout

    good = w.pair_editor.pairs()[0]
    wrong_answer = PromptPair(good.clean, good.corrupted, good.wrong, good.answer)  # swapped
    path = tmp_path / "pairs.csv"
    from patchlab.core.pairset import save_pairs

    save_pairs([good, wrong_answer, good], path)
    assert w.file_menu.load_pairs_file(path)
    assert w.state.pairs == [good, wrong_answer, good]
    table = w.pair_editor.table_model
    qtbot.waitUntil(lambda: table.first_unscored() is None, timeout=WAIT_MS)
    wait_idle(qtbot, w)
    for i, pair in enumerate(w.state.pairs):
        ref = run_readout(w.model, pair)
        assert table.clean_p[i] == pytest.approx(ref["clean"]["answer_prob"], abs=1e-4)
        assert table.corrupted_p[i] == pytest.approx(ref["corrupted"]["answer_prob"], abs=1e-4)
        answer_token = w.model.to_str_tokens(pair.answer, prepend_bos=False)[-1]
        assert bool(table.right[i]) == (ref["clean"]["top_k"][0][0] == answer_token)
    assert table.right[0] != table.right[1], "the swapped answer flips 'right on clean'"
    w.pair_editor.only_right.setChecked(True)
    assert table.visible_pairs() == [i for i in range(3) if table.right[i] == 1]
    w.pair_editor.only_right.setChecked(False)

    # paste tab-separated rows: appended
    text = f"{good.clean}\t{good.corrupted}\t{good.answer}\t{good.wrong}\n"
    assert w.file_menu.try_pairs(w.pairs_presenter.paste, text, done="Pasted")
    assert len(w.state.pairs) == 4
    # a bad file: the message names the problem and the pairs stay
    bad = tmp_path / "bad.csv"
    bad.write_text("clean,corrupted,answer\nA,B,C\n")
    assert not w.file_menu.load_pairs_file(bad)
    assert "wrong" in w.last_error and len(w.state.pairs) == 4
    # identical clean and corrupted prompts: a clear error, Run disabled
    same = tmp_path / "same.jsonl"
    same.write_text(json.dumps({"clean": good.clean, "corrupted": good.clean, "answer": good.answer,
                                "wrong": good.wrong}) + "\n")
    assert not w.file_menu.drop_files([str(same)])
    assert "identical" in w.last_error and "line 1" in w.last_error
    w.pair_editor.set_current_pair(PromptPair(good.clean, good.clean, good.answer, good.wrong))
    assert "identical" in w.pair_editor.message.text() and not w.experiment.run_btn.isEnabled()
    assert not w.run()
    # clicking a row shows that pair and makes it the state's pair
    assert w.file_menu.drop_files([str(path)])
    w.pair_editor.table.selectRow(table.row_of(1))
    assert w.state.pair_index == 1 and w.pair_editor.answer.currentText() == wrong_answer.answer
    assert "1" in table.data(table.index(0, COL_PROMPT))
