"""patchlab's own results agree with the ground-truth induction circuit of toy-attn2."""

import numpy as np
import pytest

import patchlab
from patchlab.core.examples import load_examples
from patchlab.engine import embedded
from patchlab.toy import evaluate as ev


@pytest.fixture(scope="module")
def model():
    return patchlab.load_model("toy-attn2")


@pytest.fixture(scope="module")
def induction_head(model):
    """(layer, head) with the highest induction score, found from attention patterns alone."""
    ind = ev.sequence_scores(model, seed=3)["induction"]
    layer, head = np.unravel_index(int(np.argmax(ind)), ind.shape)
    assert layer == 1
    return int(layer), int(head)


def _pairs(rule):
    pairs = [e.pair for e in load_examples("toy-attn2") if e.rule == rule]
    assert len(pairs) >= 3
    return pairs


def test_toy_default_examples_are_for_the_default_model():
    assert {e.model for e in load_examples(None)} == {embedded.DEFAULT_MODEL}
    for name in ("toy-attn2", "toy-solu1"):
        rules = [e.rule for e in load_examples(name)]
        for rule in ("bigram", "skip", "verbobj", "induction"):
            assert rules.count(rule) >= 3, (name, rule)
    gpt2 = {e.rule for e in load_examples("gpt2")}
    assert {"ioi", "greater-than", "factual-recall"} <= gpt2


@pytest.mark.parametrize("name", ["toy-attn2", "toy-solu1"])
def test_toy_models_solve_their_examples_unless_the_rule_needs_two_layers(name):
    """Which examples a model solves follows from the language, not from the examples' text:
    induction needs a previous-token head feeding a later layer, so a 1-layer model fails it
    (its induction examples must then say they are negative controls); everything else is solved
    (top-1 is the answer on the clean prompt and the wrong answer on the corrupted one)."""
    model = patchlab.load_model(name)
    examples = load_examples(name)
    needs_two_layers = {"induction"}
    controls = 0
    for ex in examples:
        toks = model.to_tokens([ex.pair.clean, ex.pair.corrupted])
        top = model(toks)[:, -1].argmax(-1).tolist()
        ans = int(model.to_tokens(ex.pair.answer, prepend_bos=False)[0, 0])
        wrong = int(model.to_tokens(ex.pair.wrong, prepend_bos=False)[0, 0])
        if ex.rule in needs_two_layers and model.cfg.n_layers < 2:
            controls += 1
            assert "NOT solve" in ex.description, ex.name
        else:
            assert top == [ans, wrong], ex.name
            assert "NOT solve" not in ex.description, ex.name
    assert (controls > 0) == (model.cfg.n_layers < 2)  # the 1-layer model has induction examples


def test_toy_head_patching_ranks_the_induction_head_first(model, induction_head):
    res = patchlab.patch(model, _pairs("induction"), target="attn_head_out_all_pos",
                         metric="logit_diff_recovered", direction="denoise")
    values = np.asarray(res.values)
    assert values.shape == (model.cfg.n_layers, model.cfg.n_heads)
    best = np.unravel_index(int(np.nanargmax(values)), values.shape)
    assert tuple(int(i) for i in best) == induction_head, values


def test_toy_dla_puts_the_induction_head_among_top_contributors(model, induction_head):
    layer, head = induction_head
    for pair in _pairs("induction"):
        dla = patchlab.decompose(model, pair).heads[0]  # clean run, [layer, head]
        top = np.argsort(dla.ravel())[::-1][:3]
        assert layer * dla.shape[1] + head in top, dla
        assert dla[layer, head] > 0
