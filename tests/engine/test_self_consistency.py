"""Identities that any correct patching engine satisfies (independent of TransformerLens)."""

import numpy as np
import pytest

import patchlab

TOL = 1e-4


@pytest.mark.parametrize("engine", ["fast", "generic"])
def test_resid_mid_at_layer_l_equals_resid_pre_at_layer_l_plus_1(model, pair, engine):
    """The MLP is position-wise: patching resid_mid[L] at a position fixes resid_post[L] there."""
    if model.cfg.parallel_attn_mlp:
        pytest.skip("no resid_mid in parallel attention")
    mid = patchlab.patch(model, pair, target="resid_mid", metric="logit_diff", engine=engine)
    pre = patchlab.patch(model, pair, target="resid_pre", metric="logit_diff", engine=engine)
    np.testing.assert_allclose(mid.values[:-1, -1], pre.values[1:, -1], atol=TOL, rtol=0)
    np.testing.assert_allclose(mid.values[:-1], pre.values[1:], atol=TOL, rtol=0)


@pytest.mark.parametrize("direction", ["denoise", "noise"])
def test_last_resid_post_at_last_position_reproduces_the_source_run(model, pair, direction):
    res = patchlab.patch(model, pair, target="resid_post", metric="logit_diff", direction=direction)
    source = "clean" if direction == "denoise" else "corrupted"
    assert res.values[-1, -1] == pytest.approx(res.meta["runs"][source]["logit_diff"], abs=TOL)
    # and patching the first position of resid_pre at layer 0 (the BOS or first token, equal in
    # both prompts) changes nothing
    pre = patchlab.patch(model, pair, target="resid_pre", metric="logit_diff", direction=direction)
    base = "corrupted" if direction == "denoise" else "clean"
    assert pre.values[0, 0] == pytest.approx(pre.meta["runs"][base]["logit_diff"], abs=TOL)


def test_head_outputs_at_all_positions_sum_up_like_attn_out(model, pair):
    """Patching every head's output of a layer at one position equals patching attn_out there."""
    import torch

    from patchlab.engine.tokens import tokenize_pair

    tp = tokenize_pair(model, pair)
    layer, pos = model.cfg.n_layers - 1, tp.n_pos - 1
    with torch.no_grad():
        _, cache = model.run_with_cache(tp.clean)
        z_name = f"blocks.{layer}.attn.hook_z"

        def patch_all_heads(z, hook):
            z[:, pos] = cache[z_name][:, pos]
            return z

        logits = model.run_with_hooks(tp.corrupted, fwd_hooks=[(z_name, patch_all_heads)])
    ld = float(logits[0, -1, tp.answer_id] - logits[0, -1, tp.wrong_id])
    attn = patchlab.patch(model, pair, target="attn_out", metric="logit_diff")
    assert attn.values[layer, pos] == pytest.approx(ld, abs=TOL)
