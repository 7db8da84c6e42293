"""The toy-language generator: determinism, documented probabilities, exact induction."""

from collections import Counter

import numpy as np
import pytest

from patchlab.toy import language as L
from patchlab.toy.pairs import make_pairs


@pytest.fixture(scope="module")
def docs():
    return L.sample_documents(seed=7, n=3000, length=64)


def test_toy_generator_is_deterministic():
    a = L.sample_documents(seed=3, n=20)
    b = L.sample_documents(seed=3, n=20)
    c = L.sample_documents(seed=4, n=20)
    assert [d.tokens for d in a] == [d.tokens for d in b]
    assert [d.tokens for d in a] != [d.tokens for d in c]
    assert all(len(d.tokens) == 64 and d.tokens[0] == L.BOS for d in a)


def test_toy_vocabulary_is_unique_and_documented():
    vocab = L.vocabulary()
    assert len(vocab) == len(set(vocab))
    assert vocab[0] == L.BOS
    for row in L.BIGRAMS.values():
        assert sum(row.values()) == pytest.approx(1.0)
    for place in L.PLACES:
        for adj in L.ADJECTIVES:
            assert sum(L.skip_distribution(place, adj).values()) == pytest.approx(1.0)
    assert set(L.describe_rules()) == set(L.RULES)


def _next_counts(docs, rule):
    out = {}
    for d in docs:
        for t in (t for t in d.targets if t.rule == rule):
            ctx = d.tokens[t.key]
            out.setdefault((ctx, d.tokens[t.pos]), Counter())[d.tokens[t.pos + 1]] += 1
    return out


def test_toy_bigram_frequencies_match(docs):
    per_name = {}
    for d in docs:
        for t in (t for t in d.targets if t.rule == "bigram"):
            per_name.setdefault(d.tokens[t.pos], Counter())[d.tokens[t.pos + 1]] += 1
    for name, c in per_name.items():
        n = sum(c.values())
        assert n > 300
        for verb, p in L.BIGRAMS[name].items():
            assert abs(c[verb] / n - p) < 4 * np.sqrt(p * (1 - p) / n) + 0.01, (name, verb)
        assert set(c) <= set(L.BIGRAMS[name])


def test_toy_skip_and_verbobj_frequencies_match(docs):
    hits = [0, 0]
    for c in _next_counts(docs, "skip").items():
        (place, adj), cnt = c
        assert place in L.PLACES and adj in L.ADJECTIVES
        hits[0] += cnt[L.skip_word(place, adj)]
        hits[1] += sum(cnt.values())
    assert abs(hits[0] / hits[1] - L.P_SKIP) < 0.02
    hits = [0, 0]
    for (act, the), cnt in _next_counts(docs, "verbobj").items():
        assert the == "the"
        hits[0] += cnt[L.VENUE_OF[act]]
        hits[1] += sum(cnt.values())
    assert abs(hits[0] / hits[1] - L.P_VERBOBJ) < 0.02


def test_toy_induction_is_exact_and_fillers_never_repeat_otherwise(docs):
    n = 0
    for d in docs:
        for t in (t for t in d.targets if t.rule == "induction"):
            assert d.tokens[t.pos + 1] == d.tokens[t.key]  # B follows the repeated A
            assert d.tokens[t.pos] == d.tokens[t.key - 1]  # the query repeats A
            n += 1
        fillers = [w for w in d.tokens if w in L.FILLERS]
        repeated = {w for w, k in Counter(fillers).items() if k > 1}
        in_targets = {d.tokens[t.pos] for t in d.targets if t.rule == "induction"}
        in_targets |= {d.tokens[t.pos + 1] for t in d.targets if t.rule == "induction"}
        # every repeated filler belongs to an induction repeat (or a truncated one at the end)
        assert len(repeated - in_targets) <= 1
    assert n > 1000


@pytest.mark.parametrize("rule", L.RULES)
def test_toy_pairs_have_equal_length_and_distinct_answers(rule):
    pairs = make_pairs(rule, 50, seed=1)
    assert pairs == make_pairs(rule, 50, seed=1)
    for p in pairs:
        p.check()
        assert len(p.clean.split()) == len(p.corrupted.split())
        assert sum(a != b for a, b in zip(p.clean.split(), p.corrupted.split())) == 1
        assert len(p.answer.split()) == 1 and len(p.wrong.split()) == 1
