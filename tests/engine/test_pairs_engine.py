"""Pair scoring for the pairs table, generated pairs, and the pair errors that need a tokenizer."""

import threading

import numpy as np
import pytest
import torch

import patchlab
from patchlab.core.errors import InputError, PairError
from patchlab.core.pairs import PromptPair
from patchlab.core.pairset import load_pairs, save_pairs
from patchlab.core.templates import IOI, Template, generate
from patchlab.engine.pairgen import available_generators, generate_pairs
from patchlab.engine.pairstats import accuracy, iter_score_pairs, score_pairs
from patchlab.engine.tokens import check_equal_lengths, tokenize_pairs
from patchlab.toy.pairs import make_pairs

PAIRS = [
    PromptPair("John gave a drink to", "Mary gave a drink to", " Mary", " John"),         # 7 tokens
    PromptPair("Tom gave a drink to", "Tom gave a book to", " Anna", " Bob"),             # 6 tokens
    PromptPair("Mary gave a book to", "John gave a book to", " John", " Mary"),           # 7 tokens
    PromptPair("Mary gave a book to", "John gave a book to", "Johnny boy", " Mary"),      # bad answer
    PromptPair("Alice gave a drink to", "Bob gave a drink to", " Alice", " Bob"),         # 7 tokens
]


@pytest.fixture(scope="module")
def gpt2(tiny_dir):
    return patchlab.load_model(str(tiny_dir / "gpt2"), device="cpu")


@pytest.fixture(scope="module")
def toy():
    return patchlab.load_model("toy-attn2", device="cpu")


def test_scores_equal_a_hand_computation_one_pair_at_a_time(gpt2):
    chunks = []
    gen = iter_score_pairs(gpt2, PAIRS, batch_size=2)
    while True:
        try:
            chunks.append(next(gen))
        except StopIteration as end:
            rows = end.value
            break
    assert [r.index for r in rows] == [0, 1, 2, 3, 4]
    assert len(chunks) >= 3  # 7-token pairs in batches of 2, the 6-token pair on its own
    for row, pair in zip(rows, PAIRS):
        if row.index == 3:
            continue
        with torch.no_grad():
            probs = {w: torch.softmax(gpt2(gpt2.to_tokens(t))[0, -1].double(), -1) for w, t in
                     (("clean", pair.clean), ("corrupted", pair.corrupted))}
        a = int(gpt2.to_tokens(pair.answer, prepend_bos=False)[0, 0])
        b = int(gpt2.to_tokens(pair.wrong, prepend_bos=False)[0, 0])
        assert row.tokens_ok and row.n_tokens == gpt2.to_tokens(pair.clean).shape[-1]
        assert row.clean_answer_prob == pytest.approx(float(probs["clean"][a]), rel=1e-4)
        assert row.corrupted_answer_prob == pytest.approx(float(probs["corrupted"][a]), rel=1e-4)
        assert row.clean_correct == (int(probs["clean"].argmax()) == a)
        ld = float(torch.log(probs["clean"][a] / probs["clean"][b]))
        assert row.clean_logit_diff == pytest.approx(ld, abs=1e-4)
    bad = rows[3]
    assert not bad.tokens_ok and "single token" in bad.error and bad.error.startswith("Pair 4")
    assert np.isnan(bad.clean_answer_prob)
    assert accuracy(rows) == np.mean([r.clean_correct for r in rows if r.tokens_ok])


def test_a_bad_pair_from_a_file_names_its_line(gpt2, tmp_path):
    path = save_pairs(PAIRS, tmp_path / "p.csv")
    rows = score_pairs(gpt2, load_pairs(path))
    assert rows[3].error.startswith("p.csv, line 5 (pair 4): The answer 'Johnny boy' is")
    with pytest.raises(PairError, match=r"p.csv, line 5 \(pair 4\): The answer 'Johnny boy'"):
        tokenize_pairs(gpt2, load_pairs(path))


def test_multi_token_answer_suggests_the_leading_space_form(gpt2):
    with pytest.raises(PairError, match=r"Try ' Mary' with a leading space"):
        tokenize_pairs(gpt2, [PromptPair("John gave a drink to", "Mary gave a drink to", "Mary", " John")])


def test_stop_returns_the_rows_scored_so_far(gpt2):
    stop = threading.Event()
    gen = iter_score_pairs(gpt2, PAIRS, stop=stop, batch_size=1)
    first = next(gen)
    stop.set()
    with pytest.raises(StopIteration) as end:
        next(gen)
    assert [r.index for r in end.value.value] == sorted(r.index for r in first)


def test_prompts_that_tokenise_identically_are_rejected(toy):
    # the toy tokenizer splits on whitespace: two spaces and one give the same tokens
    pair = PromptPair("bax alice", "bax  alice", " sees", " helps")
    assert pair.check() is pair  # different strings: fine without a tokenizer
    with pytest.raises(PairError, match="tokenise identically"):
        tokenize_pairs(toy, [pair])


def test_mixed_lengths_name_the_pairs_and_offer_grouping(gpt2):
    tps = tokenize_pairs(gpt2, [PAIRS[0], PAIRS[1], PAIRS[2]])
    with pytest.raises(PairError, match=r"6 tokens: pair 2; 7 tokens: pairs 1, 3.*group_by_length"):
        check_equal_lengths(tps, "resid_pre")
    check_equal_lengths([tps[0], tps[2]], "resid_pre")


def test_toy_rules_use_the_toy_sampler_and_the_model_solves_induction(toy):
    pairs = generate_pairs("toy-attn2", "induction", n=24, seed=3)
    raw = make_pairs("induction", 24, seed=3)
    assert [(p.clean, p.corrupted, p.answer, p.wrong) for p in pairs] == \
        [(p.clean, p.corrupted, p.answer, p.wrong) for p in raw]
    assert pairs[0].name == "induction-1" and {p.group for p in pairs} == {"induction"}
    assert generate_pairs(toy, "induction", n=24, seed=3) == pairs  # a loaded model works too
    rows = score_pairs(toy, pairs)
    assert all(r.tokens_ok for r in rows)
    # ground truth from the language: the answer is the token that followed A before
    assert accuracy(rows) >= 0.8
    assert "induction" in available_generators("toy-attn2") and "ioi" in available_generators(toy)


def test_ioi_template_on_a_gpt2_tokenizer(gpt2):
    pairs = generate_pairs(gpt2, "ioi", n=12, seed=1)
    tps = tokenize_pairs(gpt2, pairs)  # every answer a single token, prompts line up
    check_equal_lengths(tps, "resid_pre")  # words cut to single tokens: one length for all
    for p in pairs:
        io, s = p.answer.strip(), p.wrong.strip()
        assert io != s and p.clean.startswith(f"When {io} and {s} went to the ")
        assert p.clean.endswith(f"{s} gave a " + p.clean.split(" gave a ")[1])
        assert p.corrupted == p.clean.replace(f", {s} gave", f", {io} gave")
    assert generate_pairs(gpt2, "ioi", n=12, seed=1) == pairs
    assert generate_pairs(gpt2, "ioi", n=12, seed=2) != pairs
    assert len(generate(IOI, 50, seed=0)) == 50  # the full word lists, without a tokenizer


def test_generator_errors_say_what_to_change(gpt2):
    with pytest.raises(InputError, match="toy models' language.*ioi"):
        generate_pairs(gpt2, "induction")
    with pytest.raises(InputError, match="Choose one of"):
        generate_pairs("toy-attn2", "nope")
    with pytest.raises(InputError, match="uses the slot"):
        generate(Template("{A} x", "{B} x", " {A}", " {B}", slots={"A": ["a"]}), 3)
    with pytest.raises(InputError, match="only 1 distinct"):
        generate(Template("{A} {B}", "{B} {A}", " {A}", " {B}", slots={"A": ["a"], "B": ["a"]},
                          distinct=[("A", "B")]), 3)


def test_templates_round_trip_and_typed_word_lists():
    from patchlab.core.templates import parse_slots

    assert Template.from_dict(IOI.to_dict()) == IOI
    slots = parse_slots("A: Mary, John\n\nB: store park\n")
    assert slots == {"A": ["Mary", "John"], "B": ["store", "park"]}
    t = Template("When {A} went to the {B}, {A} said", "When {A} went to the {B}, {A} asked", " hi", " no", slots)
    assert [p.clean for p in generate(t, 3, seed=0)] == [p.clean for p in generate(t, 3, seed=0)]
    with pytest.raises(InputError, match="line 1"):
        parse_slots("no colon here")


def test_shipped_pair_sets_equal_a_fresh_generation_and_give_significant_cells(toy):
    from patchlab.core.resources import resource_path

    folder = resource_path("pairs")
    for rule in ("induction", "skip"):
        shipped = load_pairs(folder / f"toy-attn2-{rule}-50.csv")
        assert shipped == generate_pairs("toy-attn2", rule, n=50, seed=0, same_length=True)
        assert len({len(p.clean.split()) for p in shipped}) == 1
    assert load_pairs(folder / "gpt2-ioi-50.csv") == generate(IOI, 50, seed=0)

    pairs = load_pairs(folder / "toy-attn2-induction-50.csv")
    res = patchlab.patch(toy, pairs, target="resid_pre")
    # identity: at layer 0 the residual stream is the embedding, so patching the one token that
    # differs turns the corrupted run into the clean run (recovered = 1 for every pair), and
    # patching a token both prompts share changes nothing (effect 0: p = 1)
    tokens = [toy.to_str_tokens(p.clean) for p in pairs]
    diff = [next(i for i, (a, b) in enumerate(zip(t, toy.to_str_tokens(p.corrupted))) if a != b)
            for t, p in zip(tokens, pairs)]
    p = res.pvalues()
    sig = res.significant(0.05)
    for k, d in enumerate(diff):
        np.testing.assert_allclose(res.per_pair[k, 0, d], 1.0, atol=1e-4)
    same = [i for i in range(len(tokens[0])) if i not in diff]
    np.testing.assert_allclose(res.values[0, same], 0.0, atol=1e-5)
    assert (p[0, same] == 1.0).all() and not sig[0, same].any()
    # the swapped token sits at different positions in different pairs; where most pairs have
    # it, all those pairs restore fully (same sign), so the cell is significant
    counts = {d: diff.count(d) for d in set(diff)}
    top = max(counts, key=counts.get)
    assert counts[top] >= 8 and sig[0, top]
    lo, hi = res.bootstrap_ci()
    assert lo[0, top] > 0.2 and hi[0, top] <= 1.0 + 1e-6
