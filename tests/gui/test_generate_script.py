"""Generated pairs in the window, the template dialog, and 'Export as Python script'."""

import ast

from guihelpers import wait_result

from patchlab.gui.views.generate_dialog import CUSTOM, GenerateDialog


def test_generate_toy_rule_and_export_scripts(qtbot, window, tmp_path):
    w = window
    from patchlab.engine.pairgen import available_generators

    rule = available_generators(w.model)[0]
    assert w.file_menu.generate(rule, 12, 3)
    pairs = w.state.pairs
    assert len(pairs) == 12 and pairs[0].name == f"{rule}-1" and w.state.pairs_ok
    assert w.file_menu.generate(rule, 12, 3) and w.state.pairs == pairs, "same seed, same pairs"
    # toy pairs differ in length: a target over all positions takes them all
    w.experiment.set_settings({"target": "attn_head_out_all_pos", "direction": "denoise",
                               "metric": "logit_diff", "method": "exact"})
    assert w.run()
    wait_result(qtbot, w)
    from patchlab.gui.services.exports import export_script

    for style in ("patchlab", "transformerlens"):
        path = export_script(w.state, tmp_path / f"{style}.py", style)
        text = path.read_text()
        ast.parse(text)  # valid Python
        assert pairs[0].clean in text, "the pairs are inline"
        assert ("get_act_patch" in text) == (style == "transformerlens")
    assert not w.file_menu.generate("no-such-rule", 5, 0)
    assert "no-such-rule" in w.last_error


def test_custom_template_dialog(qtbot):
    from patchlab.engine.pairgen import generate_pairs

    d = GenerateDialog(["ioi"])
    qtbot.addWidget(d)
    d.generator.setCurrentIndex(d.generator.findData(CUSTOM))
    assert d.clean.isVisibleTo(d)
    d.count.setValue(5)
    rule, n, seed, template = d.request()
    pairs = generate_pairs("", template, n=n, seed=seed)
    assert len(pairs) == 5
    for p in pairs:  # IO and S differ, so the two prompts differ and the answers are the names
        assert p.clean != p.corrupted and p.answer != p.wrong
        assert p.clean.startswith(f"When{p.answer} and{p.wrong}")


def test_mixed_lengths_on_a_by_position_target(qtbot, window):
    w = window
    from patchlab.engine.pairgen import available_generators

    assert w.file_menu.generate(available_generators(w.model)[0], 12, 3)
    lengths = [len(t[0]) for t in w.state.tokens]
    assert len(set(lengths)) > 1, "the toy rule gives pairs of several lengths"
    w.experiment.set_settings({"target": "resid_pre", "direction": "denoise",
                               "metric": "logit_diff", "method": "exact"})
    assert not w.run() and w.state.run_spec is None
    assert "position axis" in w.last_error and "pairs" in w.pair_editor.message.text()
    common = max(set(lengths), key=lengths.count)
    kept = w.pairs_presenter.keep_largest_length_group()
    assert len(kept) == lengths.count(common) and {len(t[0]) for t in w.state.tokens} == {common}
    w.last_error = None
    assert w.run()
    assert wait_result(qtbot, w).n_pairs == len(kept)
