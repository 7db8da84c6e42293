"""Circuits from the weights: parity with TransformerLens's composition scores and circuits."""

import json

import numpy as np
import pytest
import torch

import patchlab
from patchlab.core.errors import InputError, TargetUnavailableError
from patchlab.core.weights_result import CompositionResult, WeightMatrix
from patchlab.engine.weights import (
    composition_scores,
    direct_path,
    ov_circuit,
    positional_qk,
    qk_circuit,
)
from patchlab.toy.language import BIGRAMS, NAMES, VERBS


@pytest.mark.parametrize("mode", ["q", "k", "v"])
def test_composition_scores_match_transformer_lens(model, mode):
    res = composition_scores(model, mode, baseline_samples=100)
    with torch.no_grad():
        ref = model.all_composition_scores(mode.upper()).scores.numpy()
    n_l, n_h = model.cfg.n_layers, model.cfg.n_heads
    assert res.values.shape == (n_l, n_h, n_l, n_h) == ref.shape
    later = np.arange(n_l)[:, None, None, None] < np.arange(n_l)[None, None, :, None]
    later = np.broadcast_to(later, ref.shape)
    assert np.isnan(res.values[~later]).all() and (ref[~later] == 0).all()
    np.testing.assert_allclose(res.values[later], ref[later], rtol=1e-5, atol=1e-6)
    assert 0 < res.baseline_mean < res.baseline_p99 < 1
    top = res.ranked(1)[0]
    assert top[2] == pytest.approx(np.nanmax(res.values))
    back = CompositionResult.from_dict(json.loads(res.to_json()))
    np.testing.assert_allclose(back.values, res.values)


def test_random_baseline_matches_random_weights():
    """The baseline is the score of independent random matrices: recompute it from products
    formed explicitly (d_model x d_model) and compare the mean."""
    from patchlab.engine.weights import random_baseline

    g = torch.Generator().manual_seed(5)
    scores = []
    for _ in range(300):
        a, b, c, d = (torch.randn(s, generator=g, dtype=torch.float64) for s in ((32, 8), (8, 32), (32, 8), (8, 32)))
        left, right = a @ b, c @ d
        scores.append(float((left @ right).norm() / (left.norm() * right.norm())))
    mean, p99 = random_baseline((32, 8), (8, 32), (32, 8), (8, 32), 2000, 0)
    assert mean == pytest.approx(np.mean(scores), rel=0.03)
    assert p99 == pytest.approx(np.percentile(scores, 99), rel=0.1)


def test_ov_qk_and_direct_path_match_the_bridges_factored_circuits(model):
    toks = [" John", " Mary", " the", " store"]
    ids = [model.to_single_token(t) for t in toks]
    with torch.no_grad():
        w_e, w_u = model.W_E[ids], model.W_U[:, ids]
        ov = model.OV[1, 2].AB
        qk = model.QK[2, 1].AB
        np.testing.assert_allclose(direct_path(model, toks).values, (w_e @ w_u).numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(ov_circuit(model, 1, 2, toks).values, (w_e @ ov @ w_u).numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(qk_circuit(model, 2, 1, toks).values, (w_e @ qk @ w_e.T).numpy(), rtol=1e-4, atol=1e-5)
    m = direct_path(model, toks)
    assert m.row_labels == toks and m.row_groups == ["tokens"] * 4
    back = WeightMatrix.from_dict(json.loads(m.to_json()))
    np.testing.assert_allclose(back.values, m.values)


def test_positional_qk_only_with_learned_positions(tiny_models):
    gpt2 = tiny_models["gpt2"]
    res = positional_qk(gpt2, 0, 1, n_pos=10)
    with torch.no_grad():
        p = gpt2.W_pos[:10]
        ref = (p @ gpt2.QK[0, 1].AB @ p.T).numpy()
    tril = np.tril_indices(10)
    np.testing.assert_allclose(res.values[tril], ref[tril], rtol=1e-4, atol=1e-5)
    assert np.isnan(res.values[np.triu_indices(10, 1)]).all()
    with pytest.raises(TargetUnavailableError, match="positional"):
        positional_qk(tiny_models["llama"], 0, 0)


def test_weight_views_need_compat_processing(tiny_dir):
    raw = patchlab.load_model(str(tiny_dir / "gpt2"), device="cpu", processing="raw")
    with pytest.raises(InputError, match="processing='compat'"):
        composition_scores(raw, "k")
    with pytest.raises(InputError, match="allow_raw"):
        direct_path(raw, [" the"])
    assert direct_path(raw, [" the"], allow_raw=True).values.shape == (1, 1)
    with pytest.raises(InputError, match="tokens="):
        direct_path(patchlab.load_model(str(tiny_dir / "gpt2"), device="cpu"))
    with pytest.raises(InputError, match="No head"):
        ov_circuit(raw, 5, 0, [" the"], allow_raw=True)


def test_toy_direct_path_shows_the_bigram_table():
    """Ground truth: each name's strongest verb in W_E W_U is its most likely verb."""
    model = patchlab.load_model("toy-attn2", device="cpu")
    m = direct_path(model)
    assert m.values.shape == (119, 119)
    spans = {g: (a, b) for g, a, b in m.group_spans()}
    assert m.row_labels[spans["names"][0]:spans["names"][1]] == list(NAMES)
    verbs = slice(*spans["verbs"])
    hits = 0
    for name in NAMES:
        row = m.values[m.row_labels.index(name), verbs]
        best = VERBS[int(np.argmax(row))]
        hits += best == max(BIGRAMS[name], key=BIGRAMS[name].get)
    assert hits >= 5, hits


def test_token_axes_take_the_pairs_tokens_then_the_users(tiny_models):
    model = tiny_models["gpt2"]
    pair = patchlab.PromptPair("John gave a drink to", "Mary gave a drink to", " Mary", " John")
    m = direct_path(model, tokens=[" the", " Mary"], pairs=[pair])
    pair_ids = model.to_tokens(pair.clean, prepend_bos=False)[0].tolist()
    expected = [model.tokenizer.decode([i]) for i in dict.fromkeys(
        pair_ids + model.to_tokens(pair.corrupted, prepend_bos=False)[0].tolist()
        + [model.to_single_token(" Mary"), model.to_single_token(" John")])]
    n = len(expected)
    assert m.row_labels[:n] == expected and m.row_groups[:n] == ["pairs"] * n
    assert m.row_labels[n:] == [" the"] and m.row_groups[n:] == ["tokens"]  # " Mary" already there
    with pytest.raises(InputError, match="single token"):
        direct_path(model, tokens=[" the cat sat"])


def test_unknown_toy_words_are_refused_by_name(tiny_models):
    """Ground truth: the toy vocabulary lacks 'Zorro' and 'Quux', which its word-level tokenizer
    would read as the one <unk> token; the weight views name them instead of showing <unk>."""
    from patchlab.engine.weights import unknown_words
    from patchlab.toy.language import UNK, vocabulary

    model = patchlab.load_model("toy-attn2", device="cpu")
    vocab = vocabulary()
    assert "Zorro" not in vocab and "Quux" not in vocab
    assert model.to_tokens("Zorro", prepend_bos=False)[0].tolist() == [vocab.index(UNK)]
    with pytest.raises(InputError, match=r"'Zorro' \(in the token list\) is not in the model's vocabulary: it "
                                         r"would be read as <unk>.*Use words the model knows"):
        direct_path(model, tokens=[NAMES[0], "Zorro"])
    with pytest.raises(InputError, match=r"'Zorro', 'Quux' \(in the token list\) are not"):
        direct_path(model, tokens=["Zorro Quux"])
    pair = patchlab.PromptPair(f"{NAMES[0]} {VERBS[0]}", f"Zorro {VERBS[0]}", NAMES[1], NAMES[2])
    with pytest.raises(InputError, match=r"'Zorro' \(in pair 1's corrupted prompt\)"):
        ov_circuit(model, 0, 0, pairs=[pair])
    wrong = patchlab.PromptPair(f"{NAMES[0]} {VERBS[0]}", f"{NAMES[1]} {VERBS[0]}", NAMES[1], "Quux")
    with pytest.raises(InputError, match=r"'Quux' \(in pair 1's wrong answer\)"):
        direct_path(model, pairs=[wrong])
    # known words, and the unknown-word token asked for on purpose, still work
    m = direct_path(model, tokens=[NAMES[0], VERBS[1], UNK])
    assert m.row_labels == [NAMES[0], VERBS[1], UNK]
    # BPE vocabularies have no unknown words; GPT-2's unk token is <|endoftext|>, typed on purpose here
    gpt2 = tiny_models["gpt2"]
    assert unknown_words(gpt2, "Zorro <|endoftext|> xyzzy") == []
    assert unknown_words(model, f"{NAMES[0]} Zorro {VERBS[0]} Quux") == ["Zorro", "Quux"]
