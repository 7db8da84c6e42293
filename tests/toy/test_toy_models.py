"""The shipped toy models: fast offline loading, TransformerLens hooks, ground-truth circuits."""

import time

import numpy as np
import pytest
import torch

from patchlab.engine import embedded
from patchlab.toy import evaluate as ev
from patchlab.toy.language import sample_documents

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


def test_toy_attn2_has_previous_token_and_induction_heads(attn2):
    scores = ev.sequence_scores(attn2, seed=11)
    prev, ind = scores["previous_token"], scores["induction"]
    prev_head = int(np.argmax(prev[0]))
    assert prev[0, prev_head] > 0.5, prev
    assert ind[1].max() > 0.5, ind
    assert ind[0].max() < 0.2  # a single layer cannot do induction
    card = embedded.load_card("toy-attn2")
    assert card["found_heads"]["induction_head"] == f"L1H{int(np.argmax(ind[1]))}"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("rule", ["skip", "verbobj"])
def test_toy_rule_heads_attend_from_query_to_key(name, rule):
    """A head fetches the key token for the query: directly, or (toy-attn2's skip-trigrams,
    documented on its card) at the token after the key, where the previous-token head copied it."""
    bridge = embedded.load_embedded(name)
    docs = sample_documents(seed=555, n=60)
    att = ev.rule_attention(bridge, docs, rule)
    if att.max() > 0.5:
        return
    after = ev.rule_attention(bridge, docs, rule, offset=1)
    layer, head = np.unravel_index(int(np.argmax(after)), after.shape)
    assert after[layer, head] > 0.5, (att, after)
    assert layer > 0, "a two-hop route needs an earlier layer to copy the key forward"
    prev = ev.sequence_scores(bridge, seed=5)["previous_token"]
    assert prev[:layer].max() > 0.5, prev
    card = embedded.load_card(name)
    assert card["found_heads"]["skip_trigram_head"] == f"L{layer}H{head}"
    assert any("SURPRISE" in note for note in card["notes"])


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
