"""Ground truth from the toy language: what the second layer adds, which heads carry induction."""

from collections import Counter

import numpy as np
import pytest

import patchlab
from patchlab.engine import embedded
from patchlab.engine.text.ablate import ablate
from patchlab.engine.text.corpus import toy_corpus
from patchlab.engine.text.losses import compare_models
from patchlab.engine.weights import composition_scores
from patchlab.toy import evaluate as ev


@pytest.fixture(scope="module")
def attn2():
    return patchlab.load_model("toy-attn2", device="cpu")


@pytest.fixture(scope="module")
def attn1():
    return patchlab.load_model("toy-attn1", device="cpu")


def _rule_at(corpus):
    """(doc, pos) of every token a rule predicts -> the rule (the generator's ground truth)."""
    return {(i, t.pos + 1): t.rule for i, d in enumerate(corpus.toy_docs) for t in d.targets}


def test_toy_attn1_is_shipped_with_the_same_tokenizer(attn1, attn2):
    card = embedded.load_card("toy-attn1")
    assert card["architecture"]["n_layers"] == 1 and card["architecture"]["attn_only"]
    assert attn1.tokenizer.get_vocab() == attn2.tokenizer.get_vocab()
    per_rule = card["evaluation"]["per_rule"]
    assert per_rule["induction"]["top1_accuracy"] < 0.05 and per_rule["verbobj"]["top1_accuracy"] > 0.95
    assert [e.rule for e in patchlab.examples("toy-attn1")]


def test_where_two_layers_beat_one_is_induction(attn1, attn2):
    corpus = toy_corpus(60, seed=7)
    res = compare_models(attn1, attn2, corpus, floor=-5.0)
    rules = _rule_at(corpus)
    top = res.top(50)
    kinds = Counter(rules.get((h.doc, h.pos), "none") for h in top)
    assert kinds["induction"] >= 40, kinds  # >= 80% of the 50 tokens where toy-attn2 wins most
    assert res.top(1)[0].value > 3


def test_head_ablation_on_induction_tokens_finds_the_induction_circuit(attn2):
    corpus = toy_corpus(40, seed=8)
    res = ablate(attn2, corpus, components="heads", method="mean")
    induction = [pos for pos, rule in _rule_at(corpus).items() if rule == "induction"]
    on = res.mean_on(induction)
    scores = ev.sequence_scores(attn2, seed=11)
    ind, prev = scores["induction"], scores["previous_token"]
    # the last layer's most harmful head on induction tokens is an induction head
    best_l1 = int(np.argmax(on[1]))
    assert ind[1, best_l1] > 0.5, (on, ind)
    # overall first: the previous-token head that every induction head K-composes with
    # (one shared bottleneck; the induction heads back each other up), or an induction head
    layer, head = np.unravel_index(int(np.argmax(on)), on.shape)
    assert ind[layer, head] > 0.5 or prev[layer, head] > 0.5
    # and induction tokens suffer far more than the corpus average
    assert on.max() > 2 * res.values.max()


def test_previous_token_head_k_composes_into_the_induction_heads(attn2):
    res = composition_scores(attn2, "k")
    card = embedded.load_card("toy-attn2")
    prev = int(card["found_heads"]["previous_token_head"][-1])
    scores = ev.sequence_scores(attn2, seed=11)["induction"]
    heads = [h for h in range(attn2.cfg.n_heads) if scores[1, h] > 0.5]
    assert len(heads) >= 1
    for h in heads:
        assert res.values[0, prev, 1, h] > res.baseline_p99, (h, res.values[0, prev, 1], res.baseline_p99)
    # the induction heads' keys read the previous-token head more than any other layer-0 head
    assert all(int(np.argmax(res.values[0, :, 1, h])) == prev for h in heads)
