"""Issue 11 item 9: empty and stale states, unknown words in the token strip."""

from guihelpers import wait_idle

from patchlab.core.pairs import PromptPair
from patchlab.gui.views.pair_editor import token_strip_html

WAIT = 90_000


def test_decompose_tab_says_how_to_start_and_runs_on_first_open(qtbot, window):
    w = window
    assert "Decompose current pair" in w.decompose_view.note.text()
    assert w.state.decomposition is None
    w.tabs.setCurrentWidget(w.decompose_view)
    qtbot.waitUntil(lambda: w.state.decomposition is not None or bool(w.last_error), timeout=WAIT)
    wait_idle(qtbot, w)
    assert w.state.decomposition is not None, w.last_error
    assert not w.decompose_view.stale
    # editing the pair marks the decomposition stale (dimmed, "inputs changed: run again")
    p = w.pair_editor.pairs()[0]
    w.state.set_pairs([PromptPair(p.clean, p.corrupted, p.wrong, p.answer)])  # answers swapped
    assert w.decompose_view.stale == "pairs"
    assert "inputs changed: run again" in w.decompose_view.note.text()
    assert w.decompose_view.lens.opacity() < 1


def test_result_dimmed_when_inputs_change(qtbot, window):
    w = window
    w.experiment.set_settings({"target": "resid_pre", "metric": "logit_diff_recovered"})
    assert w.run()
    qtbot.waitUntil(lambda: w.state.result is not None or bool(w.last_error), timeout=WAIT)
    wait_idle(qtbot, w)
    assert w.heatmap.stale == "" and w.heatmap.image.opacity() == 1.0
    w.experiment.set_settings({"target": "resid_pre", "metric": "logit_diff"})
    assert w.heatmap.stale == "metric"
    assert "inputs changed: run again" in w.heatmap.stale_label.text()
    assert w.heatmap.stale_label.isVisibleTo(w) and w.heatmap.image.opacity() < 1
    w.experiment.set_settings({"target": "resid_pre", "metric": "logit_diff_recovered"})
    assert w.heatmap.stale == ""  # back to the inputs of the run on screen
    p = w.pair_editor.pairs()[0]
    w.state.set_pairs([PromptPair(p.clean, p.corrupted, p.wrong, p.answer)])  # swapped answers
    assert w.heatmap.stale == "pairs"


def test_unknown_words_flagged():
    html = token_strip_html(["<bos>", "zqx", "<unk>"], ["<bos>", "zqx", "the"])
    assert "1 unknown word" in html and "#e74c3c" in html
    plain = token_strip_html(["<bos>", "a"], ["<bos>", "b"])
    assert "unknown" not in plain and "#e74c3c" not in plain


def test_unknown_word_in_window(qtbot, window):
    w = window
    if w.model_info().source != "embedded":
        import pytest

        pytest.skip("the tiny GPT-2 fallback's BPE vocabulary has no <unk> token")
    p = w.pair_editor.pairs()[0]
    w.pair_editor.set_pairs([PromptPair("florbix " + p.clean, "florbix " + p.corrupted, p.answer, p.wrong)], 0)
    w.validate()
    assert w.pair_editor.unknown_words >= 2 and "unknown word" in w.pair_editor.strip.text()


def test_validation_never_touches_the_model_device(window, monkeypatch):
    """Issue 11 item 4: each edit tokenises on the CPU, not on the model's device."""
    import patchlab.engine.tokens as tokens

    def forbidden(model):
        raise AssertionError("validation asked for the model's device")

    monkeypatch.setattr(tokens, "_model_device", forbidden)
    w = window
    assert w.validate() and w.state.tokens
