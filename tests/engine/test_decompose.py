"""Decomposition of the logit difference: sums and TransformerLens parity."""

import numpy as np
import pytest
import torch

import patchlab
from patchlab.engine.tokens import tokenize_pair


def test_components_sum_to_total_logit_difference(model, pair):
    res = patchlab.decompose(model, pair)
    np.testing.assert_allclose(res.components.sum(axis=1), res.total, atol=1e-3)
    # the logit lens ends at the model's own output
    np.testing.assert_allclose(res.logit_lens[:, -1], res.total, atol=1e-3)
    assert res.heads.shape == (2, model.cfg.n_layers, model.cfg.n_heads)
    for run in ("clean", "corrupted"):
        r = res.runs[run]
        assert 0 <= r["answer_prob"] <= 1 and 0 <= r["wrong_prob"] <= 1
        assert len(r["top_k"]) == 10 and r["top_k"][0][1] >= r["top_k"][-1][1]


def _hand_dla(model, tp, run_tokens):
    """Direct logit attribution computed by hand from the raw hooks of one run.

    Each component's output at the last position goes through the final norm's scale as the
    full residual did (centred for LayerNorm, a plain division for RMSNorm), the norm's weight,
    then onto ``W_U[:, answer] - W_U[:, wrong]``. No ActivationCache helper is used.
    """
    cfg = model.cfg
    with torch.no_grad():
        logits, cache = model.run_with_cache(run_tokens)
    params = {n.split(".")[-1]: p.detach().double() for n, p in model.ln_final.named_parameters()}
    w = params.get("weight", torch.ones(cfg.d_model, dtype=torch.float64))
    d = (model.W_U[:, tp.answer_id] - model.W_U[:, tp.wrong_id]).detach().double() * w
    scale = cache["ln_final.hook_scale"][0, -1].double()
    centre = cfg.normalization_type in ("LN", "LNPre")

    def through_norm(x):
        x = x.double()
        if centre:
            x = x - x.mean(-1, keepdim=True)
        return (x / scale) @ d

    comps = {"embed": cache["hook_embed"][0, -1]}
    if "hook_pos_embed" in cache:
        comps["pos_embed"] = cache["hook_pos_embed"][0, -1]
    for layer in range(cfg.n_layers):
        comps[f"{layer}_attn_out"] = cache[f"blocks.{layer}.hook_attn_out"][0, -1]
        if f"blocks.{layer}.hook_mlp_out" in cache:
            comps[f"{layer}_mlp_out"] = cache[f"blocks.{layer}.hook_mlp_out"][0, -1]
    comps = {k: float(through_norm(v)) for k, v in comps.items()}
    # each head writes z @ W_O (its share of attn_out before the output bias)
    heads = np.array([[float(through_norm(cache[f"blocks.{layer}.attn.hook_z"][0, -1, h].double()
                                         @ model.W_O[layer, h].detach().double()))
                       for h in range(cfg.n_heads)] for layer in range(cfg.n_layers)])
    total = float(logits[0, -1, tp.answer_id] - logits[0, -1, tp.wrong_id])
    return comps, heads, total


@pytest.mark.parametrize("run", ["clean", "corrupted"])
def test_matches_a_hand_computation_from_the_cache(model, pair, run):
    """Components and heads equal the hook outputs through the final norm's scale, dotted with
    the answer-minus-wrong unembedding (an independent reading of the cache)."""
    res = patchlab.decompose(model, pair)
    tp = tokenize_pair(model, pair)
    comps, heads, total = _hand_dla(model, tp, tp.clean if run == "clean" else tp.corrupted)
    i = res.run_index(run)
    assert res.total[i] == pytest.approx(total, abs=1e-4)
    got = dict(zip(res.component_labels, res.components[i]))
    assert set(got) == set(comps) | {"bias"}
    for label, value in comps.items():
        assert got[label] == pytest.approx(value, abs=1e-4), label
    np.testing.assert_allclose(res.heads[i], heads, atol=1e-4)


@pytest.mark.parametrize("arch_name", ["gpt2", "llama"])
def test_raw_processing_still_sums_to_total(tiny_dir, pair, arch_name):
    model = patchlab.load_model(str(tiny_dir / arch_name), device="cpu", processing="raw")
    assert patchlab.model_info(model).processing == "raw"
    res = patchlab.decompose(model, pair)
    assert res.meta["processing"] == "raw"
    np.testing.assert_allclose(res.components.sum(axis=1), res.total, atol=1e-3)
    np.testing.assert_allclose(res.logit_lens[:, -1], res.total, atol=1e-3)


def test_json_round_trip(model, pair, tmp_path):
    res = patchlab.decompose(model, pair)
    path = res.save_json(tmp_path / "d.json")
    back = type(res).load_json(path)
    np.testing.assert_allclose(back.heads, res.heads)
    assert back.component_labels == res.component_labels
    assert "component,clean,embed" in res.to_csv()


def test_attention_only_model_decomposes():
    model = patchlab.load_model("toy-attn2", device="cpu")
    pair = patchlab.examples(model)[0].pair
    res = patchlab.decompose(model, pair)
    assert not any("mlp" in label for label in res.component_labels)
    assert not any("mid" in label for label in res.lens_labels)
    np.testing.assert_allclose(res.components.sum(axis=1), res.total, atol=1e-3)
    np.testing.assert_allclose(res.logit_lens[:, -1], res.total, atol=1e-3)
