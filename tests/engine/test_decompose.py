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


def test_matches_activation_cache_functions(model, pair):
    """In compatibility mode the values are TL's decompose_resid/stack_head_results/apply_ln_to_stack."""
    res = patchlab.decompose(model, pair)
    tp = tokenize_pair(model, pair)
    d = (model.W_U[:, tp.answer_id] - model.W_U[:, tp.wrong_id]).detach().double()
    with torch.no_grad():
        _, cache = model.run_with_cache(tp.corrupted)
        comps = cache.apply_ln_to_stack(cache.decompose_resid(layer=-1, pos_slice=-1), layer=-1, pos_slice=-1)
        heads = cache.apply_ln_to_stack(cache.stack_head_results(layer=-1, pos_slice=-1), layer=-1, pos_slice=-1)
    ref_comps = (comps[:, 0].double() @ d).numpy()
    ref_heads = (heads[:, 0].double() @ d).numpy().reshape(model.cfg.n_layers, -1)
    np.testing.assert_allclose(res.components[1, :-1], ref_comps, atol=1e-4)
    np.testing.assert_allclose(res.heads[1], ref_heads, atol=1e-4)


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
