"""The shipped toy models: fast offline loading, TransformerLens hooks, ground-truth circuits."""

import time

import numpy as np
import pytest
import torch

from patchlab.engine import embedded
from patchlab.toy.language import FILLERS, sample_documents

NAMES = [c["name"] for c in embedded.list_embedded()]


@pytest.fixture(scope="module")
def attn2():
    return embedded.load_embedded("toy-attn2")


def test_toy_default_is_shipped_and_cards_are_complete():
    assert embedded.DEFAULT_MODEL == "toy-attn2"
    assert NAMES[0] == "toy-attn2" and "toy-solu1" in NAMES
    assert embedded.is_embedded("toy-attn2") and not embedded.is_embedded("gpt2")
    assert not embedded.is_embedded("../models")
    for card in embedded.list_embedded():
        assert card["description"]
        per_rule = card["evaluation"]["per_rule"]
        assert set(per_rule) == {"bigram", "skip", "verbobj", "induction"}
        text = embedded.format_card(card)
        assert card["name"] in text and "induction" in text


@pytest.mark.parametrize("name", NAMES)
def test_toy_load_embedded_under_a_second_and_runs(name):
    embedded.load_embedded(name)  # warm imports
    t0 = time.perf_counter()
    bridge = embedded.load_embedded(name)
    assert time.perf_counter() - t0 < 1.0
    toks = bridge.to_tokens("alice sees the pool")
    assert toks[0, 0].item() == bridge.tokenizer.bos_token_id and toks.shape == (1, 5)
    assert bridge.to_tokens(" pool", prepend_bos=False).shape == (1, 1)
    logits = bridge(toks)
    assert logits.shape == (1, 5, bridge.cfg.d_vocab) and torch.isfinite(logits).all()


def test_toy_unknown_model_raises():
    with pytest.raises(KeyError, match="toy-attn2"):
        embedded.load_embedded("no-such-model")


def test_toy_hooks_compat_mode_and_tl_patching(attn2):
    toks = attn2.to_tokens("swim kax bez the")
    names = ["blocks.0.attn.hook_z", "blocks.0.hook_resid_pre", "blocks.1.attn.hook_pattern"]
    _, cache = attn2.run_with_cache(toks, names_filter=lambda n: n in names)
    assert cache["blocks.0.attn.hook_z"].shape[:3] == (1, 5, attn2.cfg.n_heads)
    assert cache["blocks.1.attn.hook_pattern"].shape == (1, attn2.cfg.n_heads, 5, 5)
    from transformer_lens import patching

    bridge = embedded.load_embedded("toy-attn2")
    bridge.enable_compatibility_mode()
    clean, corrupt = bridge.to_tokens("swim kax bez the"), bridge.to_tokens("pray kax bez the")
    pool = bridge.to_tokens(" pool", prepend_bos=False)[0, 0]
    church = bridge.to_tokens(" church", prepend_bos=False)[0, 0]
    _, clean_cache = bridge.run_with_cache(clean)
    res = patching.get_act_patch_resid_pre(
        bridge, corrupt, clean_cache, lambda lg: lg[0, -1, pool] - lg[0, -1, church]
    )
    assert res.shape == (bridge.cfg.n_layers, 5)
    # patching the clean residual at the activity position (L0) restores the clean answer
    assert res[0, 1] > 0


def _patterns(bridge, token_rows):
    """Attention patterns ``[layer, batch, head, q, k]`` read straight from the hooks."""
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(bridge.cfg.n_layers)]
    with torch.no_grad():
        _, cache = bridge.run_with_cache(token_rows, names_filter=lambda n: n in names)
    return torch.stack([cache[n] for n in names])


def _doc_tokens(bridge, docs):
    rows = [bridge.to_tokens(d.text)[0] for d in docs]
    assert all(len(r) == len(d.tokens) for r, d in zip(rows, docs))  # word-level, <bos> first
    return torch.stack(rows)


def _repeated_runs(bridge, seed, n=20, half=20):
    """``<bos> A B C .. A B C ..``: fresh fillers (the language's induction rule), built here."""
    rng = np.random.default_rng(seed)
    runs = (rng.choice(FILLERS, size=half, replace=False) for _ in range(n))
    texts = [" ".join(list(run) * 2) for run in runs]
    return torch.cat([bridge.to_tokens(t) for t in texts]), half


@pytest.mark.parametrize("name", NAMES)
def test_toy_induction_head_on_the_card_is_the_one_measured_here(name):
    """Induction scores recomputed from raw patterns, and the ground truth (after the repeated
    A comes B, probability 1) checked on the model's own predictions."""
    assert {embedded.load_card(n)["architecture"]["n_layers"] for n in NAMES} >= {1, 2}  # both branches run
    bridge = embedded.load_embedded(name)
    toks, half = _repeated_runs(bridge, seed=2027)
    pats = _patterns(bridge, toks)  # [layer, batch, head, q, k]
    q = torch.arange(half + 1, 2 * half + 1)  # second copy (after <bos>)
    prev = pats[:, :, :, torch.arange(1, 2 * half + 1), torch.arange(0, 2 * half)].mean((1, 3)).numpy()
    ind = pats[:, :, :, q, q - half + 1].mean((1, 3)).numpy()  # attend to the token after the first copy
    with torch.no_grad():
        pred = bridge(toks)[:, q[:-1]].argmax(-1)
    truth = toks[:, q[:-1] - half + 1]  # the token that followed the first copy
    acc = float((pred == truth).float().mean())
    card = embedded.load_card(name)
    # the card's scores agree with this measurement on other random runs
    np.testing.assert_allclose(card["head_scores"]["induction"], ind, atol=0.06)
    np.testing.assert_allclose(card["head_scores"]["previous_token"], prev, atol=0.06)
    if bridge.cfg.n_layers == 1:
        # one attention layer cannot compose with a previous-token head: no induction
        assert ind.max() < 0.3 and acc < 0.2, (ind, acc)
        assert "induction_head" not in card["found_heads"]
        assert card["evaluation"]["per_rule"]["induction"]["top1_accuracy"] < 0.2
    else:
        assert prev[0].max() > 0.5, prev
        assert ind[0].max() < 0.2  # layer 0 cannot do induction
        assert ind[-1].max() > 0.5 and acc > 0.9, (ind, acc)
        # several heads reach ~0.9 here: the named one must be among them
        layer, head = (int(v) for v in card["found_heads"]["induction_head"][1:].split("H"))
        assert ind[layer, head] > 0.5, ind
        layer, head = (int(v) for v in card["found_heads"]["previous_token_head"][1:].split("H"))
        assert layer == 0 and prev[layer, head] == prev[0].max()
        assert card["evaluation"]["per_rule"]["induction"]["top1_accuracy"] > 0.9


def _rule_attention_by_hand(bridge, docs, rule, offset):
    pats = _patterns(bridge, _doc_tokens(bridge, docs))
    picks = [(i, t.pos, t.key + offset) for i, d in enumerate(docs) for t in d.targets
             if t.rule == rule and t.key + offset < t.pos]
    assert len(picks) > 20
    i, qpos, kpos = (torch.tensor(v) for v in zip(*picks))
    # advanced indices split by a slice go first: [pick, layer, head]
    return pats[:, i, :, qpos, kpos].mean(0).numpy()


# the route each shipped model learned (toy-attn2's skip route is the documented SURPRISE)
ROUTES = [("toy-attn2", "skip", "two-hop"), ("toy-attn2", "verbobj", "direct"),
          ("toy-solu1", "skip", "direct"), ("toy-solu1", "verbobj", "direct"),
          ("toy-attn1", "skip", "direct"), ("toy-attn1", "verbobj", "direct")]


@pytest.mark.parametrize("name,rule,route", ROUTES)
def test_toy_rule_heads_attend_from_query_to_key(name, rule, route):
    """A head fetches the key token for the query: directly, or (toy-attn2's skip-trigrams,
    documented on its card) at the token after the key, where the previous-token head copied
    it. Query and key positions come from the toy language's own targets."""
    assert {n for n, _, _ in ROUTES} == set(NAMES)
    bridge = embedded.load_embedded(name)
    docs = sample_documents(seed=555, n=60)
    direct = _rule_attention_by_hand(bridge, docs, rule, offset=0)
    after = _rule_attention_by_hand(bridge, docs, rule, offset=1)
    card = embedded.load_card(name)
    key = {"skip": "skip_trigram_head", "verbobj": "verb_object_head"}[rule]
    if route == "direct":
        layer, head = np.unravel_index(int(np.argmax(direct)), direct.shape)
        assert direct[layer, head] > 0.5, direct
        assert direct.max() > after.max()
    else:
        assert direct.max() < 0.5, direct  # nobody looks at the key itself
        layer, head = np.unravel_index(int(np.argmax(after)), after.shape)
        assert after[layer, head] > 0.5, (direct, after)
        assert layer > 0, "a two-hop route needs an earlier layer to copy the key forward"
        toks, half = _repeated_runs(bridge, seed=5)
        pats = _patterns(bridge, toks)
        prev = pats[:layer, :, :, torch.arange(1, 2 * half + 1), torch.arange(0, 2 * half)].mean((1, 3))
        assert float(prev.max()) > 0.5, prev
        assert any("SURPRISE" in note for note in card["notes"])
    assert card["found_heads"][key] == f"L{layer}H{head}"


def test_toy_training_smoke(tmp_path):
    import json

    from patchlab.toy import train

    rc = train.main(["--out", str(tmp_path), "--steps", "3", "--docs", "40", "--eval-docs",
                     "20", "--only", "toy-solu1"])
    assert rc == 0
    folder = tmp_path / "toy-solu1"
    for f in ("model.safetensors", "config.json", "tokenizer.json", "card.json"):
        assert (folder / f).is_file()
    card = json.loads((folder / "card.json").read_text())
    assert card["training"]["steps"] == 3 and card["evaluation"]["per_rule"]["bigram"]["n"] > 0
