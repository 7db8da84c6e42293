"""Path patching: parity with TransformerLens's get_act_patch_direct_path, hand references
from the bridge's own modules, and refusals."""

import numpy as np
import pytest
import torch
import transformer_lens.patching as tlp

import patchlab
from patchlab.core.errors import InputError, TargetUnavailableError
from patchlab.engine.paths import path_patch
from patchlab.engine.tokens import tokenize_pairs

TOL = 1e-4


def _runs(model, pair, direction):
    tp = tokenize_pairs(model, [pair])[0]
    base, src = (tp.corrupted, tp.clean) if direction == "denoise" else (tp.clean, tp.corrupted)
    with torch.no_grad():
        _, sc = model.run_with_cache(src)
        _, bc = model.run_with_cache(base)
    return tp, base, sc, bc


def _ld(tp):
    return lambda logits: logits[0, -1, tp.answer_id] - logits[0, -1, tp.wrong_id]


# TransformerLens refuses k/v on grouped-query attention (Llama): hand reference below
CASES = [(a, "q", d) for a in ("gpt2", "neox", "llama") for d in ("denoise", "noise")]
CASES += [(a, c, "denoise") for a in ("gpt2", "neox") for c in ("k", "v")]


@pytest.mark.parametrize(("arch", "component", "direction"), CASES)
def test_parity_with_transformerlens(strong_models, arch, pair, direction, component):
    model = strong_models[arch]
    tp, base, sc, bc = _runs(model, pair, direction)
    with torch.no_grad():
        ref = tlp.get_act_patch_direct_path(model, base, sc, bc, _ld(tp), 0, 1, component, verbose=False)
    ref = ref.double().numpy()
    res = path_patch(model, pair, "L0H1", component, metric="logit_diff", direction=direction)
    assert res.axes == ("layer", "head") and res.shape == ref.shape
    assert np.isnan(res.values[0]).all() and "NaN" in res.labels["layer"][0]
    np.testing.assert_allclose(res.values[1:], ref[1:], atol=TOL)
    # the path changes something: the test is not comparing two unpatched runs
    assert np.abs(res.values[1:] - res.meta["runs"]["corrupted" if direction == "denoise" else "clean"]["logit_diff"]).max() > 3e-3


def test_all_heads_matches_transformerlens_all_sources(strong_models, pair):
    model = strong_models["gpt2"]
    tp, base, sc, bc = _runs(model, pair, "denoise")
    with torch.no_grad():
        ref = tlp.get_act_patch_direct_path_all_sources(model, base, sc, bc, _ld(tp), "q", verbose=False)
    ref = ref.double().numpy()
    L, H = ref.shape[:2]
    res = path_patch(model, pair, "heads", "q", metric="logit_diff")
    assert res.axes == ("sender", "layer", "head") and res.shape == (L * H, L, H)
    assert res.labels["sender"][5] == "L1H1"
    ours = res.values.reshape(L, H, L, H)
    later = np.zeros_like(ours, dtype=bool)
    for sl in range(L):
        later[sl, :, sl + 1 :] = True
    assert np.isnan(ours[~later]).all()
    np.testing.assert_allclose(ours[later], ref[later], atol=TOL)
    assert np.ptp(ours[later]) > 1e-2


def _write(model, sc, bc, layer, head):
    name = f"blocks.{layer}.attn.hook_z"
    W_O = model.W_O[layer, head]
    return sc[name][:, :, head] @ W_O - bc[name][:, :, head] @ W_O


@pytest.mark.parametrize("component", ["k", "v"])
def test_gqa_kv_receiver_matches_hand_reference(strong_models, pair, component):
    """Llama (2 KV heads for 4 query heads): the KV head's own k/v from LN1(resid_pre + write)."""
    model = strong_models["llama"]
    tp, base, sc, bc = _runs(model, pair, "denoise")
    delta = _write(model, sc, bc, 0, 2)
    res = path_patch(model, pair, "L0H2", component, metric="logit_diff")
    assert res.labels["head"] == ["KV0", "KV1"] and res.shape == (3, 2)
    W = model.W_K if component == "k" else model.W_V
    for layer in (1, 2):
        for g in range(2):
            with torch.no_grad():
                x = model.blocks[layer].ln1(bc[f"blocks.{layer}.hook_resid_pre"] + delta)
                new = x @ W[layer, g]

                def hook(act, hook, new=new, g=g):
                    act = act.clone()
                    act[:, :, g] = new
                    return act

                logits = model.run_with_hooks(base, fwd_hooks=[(f"blocks.{layer}.attn.hook_{component}", hook)])
            assert abs(float(_ld(tp)(logits)) - res.values[layer, g]) < TOL


def test_mlp_receiver_matches_hand_reference(strong_models, pair):
    """GPT-2: the MLP of a later layer reads resid_mid + write; nothing else changes."""
    model = strong_models["gpt2"]
    tp, base, sc, bc = _runs(model, pair, "denoise")
    delta = _write(model, sc, bc, 1, 3)
    res = path_patch(model, pair, "L1H3", "mlp", metric="logit_diff")
    assert res.axes == ("layer",) and np.isnan(res.values[0]) and np.isfinite(res.values[1:]).all()
    for layer in (1, 2):  # the head's own layer's MLP reads it too (sequential block)
        with torch.no_grad():
            blk = model.blocks[layer]
            new = blk.mlp(blk.ln2(bc[f"blocks.{layer}.hook_resid_mid"] + delta))
            logits = model.run_with_hooks(base, fwd_hooks=[(f"blocks.{layer}.hook_mlp_out", lambda a, hook, new=new: new)])
        assert abs(float(_ld(tp)(logits)) - res.values[layer]) < TOL


def test_logits_receiver_matches_hand_reference(strong_models, pair):
    model = strong_models["gpt2"]
    tp, base, sc, bc = _runs(model, pair, "noise")
    delta = _write(model, sc, bc, 0, 0)
    res = path_patch(model, pair, "L0H0", "logits", metric="logit_diff", direction="noise")
    assert res.axes == ("receiver",) and res.labels["receiver"] == ["logits"]
    L = model.cfg.n_layers
    with torch.no_grad():
        logits = model.run_with_hooks(
            base, fwd_hooks=[(f"blocks.{L - 1}.hook_resid_post", lambda a, hook: a + delta)])
    assert abs(float(_ld(tp)(logits)) - res.values[0]) < TOL


def test_mlp_sender_into_q_matches_hand_reference(strong_models, pair):
    model = strong_models["gpt2"]
    tp, base, sc, bc = _runs(model, pair, "denoise")
    name = "blocks.0.hook_mlp_out"
    delta = sc[name] - bc[name]
    res = path_patch(model, pair, "MLP0", "q", metric="logit_diff")
    with torch.no_grad():
        x = model.blocks[2].ln1(bc["blocks.2.hook_resid_pre"] + delta)
        new = x @ model.W_Q[2, 1] + model.b_Q[2, 1]

        def hook(act, hook):
            act = act.clone()
            act[:, :, 1] = new
            return act

        logits = model.run_with_hooks(base, fwd_hooks=[("blocks.2.attn.hook_q", hook)])
    assert abs(float(_ld(tp)(logits)) - res.values[2, 1]) < TOL


def test_kv_labels_in_csv(strong_models, pair):
    res = path_patch(strong_models["llama"], pair, "heads", "k", metric="logit_diff")
    rows = res.to_csv().splitlines()
    assert rows[0].startswith("sender,sender_label,layer,layer_label,head,head_label")
    # sender L0H1 (index 1), layer 2, KV head 1: labelled by its own layer, not the sender's index
    assert any(r.startswith("1,L0H1,2,L2,1,L2KV1,") for r in rows)


def test_refusals(strong_models, pair):
    gpt2, neox = strong_models["gpt2"], strong_models["neox"]
    with pytest.raises(InputError, match="at or before"):
        path_patch(gpt2, pair, "L2H0", "q")
    with pytest.raises(InputError, match="outside the model"):
        path_patch(gpt2, pair, "L7H0", "q")
    with pytest.raises(InputError, match="Unknown sender"):
        path_patch(gpt2, pair, "head 3", "q")
    with pytest.raises(InputError, match="Unknown receiver"):
        path_patch(gpt2, pair, "L0H0", "z")
    with pytest.raises(TargetUnavailableError, match="in parallel"):
        path_patch(neox, pair, "L0H0", "mlp")


def test_attention_only_refuses_mlps():
    model = patchlab.load_model("toy-attn2")
    pair = patchlab.examples(model)[0].pair
    with pytest.raises(TargetUnavailableError, match="attention-only"):
        path_patch(model, pair, "MLP0", "logits")
    with pytest.raises(TargetUnavailableError, match="attention-only"):
        path_patch(model, pair, "L0H0", "mlp")
