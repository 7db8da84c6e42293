"""Parity with TransformerLens's own get_act_patch_* functions (the correctness oracle)."""

import numpy as np
import pytest
import torch
import transformer_lens.patching as tlp

import patchlab
from patchlab.core.targets import TARGETS
from patchlab.engine.tokens import tokenize_pairs

TOL = 1e-4


def reference(model, pairs, target, direction, metric):
    """TransformerLens's per-cell loop on the batch of pairs, under no_grad."""
    tps = tokenize_pairs(model, pairs)
    clean = torch.cat([tp.clean for tp in tps])
    corrupted = torch.cat([tp.corrupted for tp in tps])
    ans = torch.tensor([tp.answer_id for tp in tps])
    wrong = torch.tensor([tp.wrong_id for tp in tps])
    rows = torch.arange(len(tps))
    base_tokens, src_tokens = (corrupted, clean) if direction == "denoise" else (clean, corrupted)

    def ld(logits):
        return (logits[rows, -1, ans] - logits[rows, -1, wrong]).mean()

    with torch.no_grad():
        src_logits, src_cache = model.run_with_cache(src_tokens)
        base_logits = model(base_tokens)
        base_ld, src_ld = ld(base_logits), ld(src_logits)

        def metric_fn(logits):
            if metric == "logit_diff":
                return ld(logits)
            if metric == "logit_diff_recovered":
                return (ld(logits) - base_ld) / (src_ld - base_ld)
            lp = torch.log_softmax(logits[rows, -1].double(), -1)[rows, ans]
            return (lp if metric == "answer_logprob" else lp.exp()).mean()

        fn = getattr(tlp, f"get_act_patch_{target}")
        return fn(model, base_tokens, src_cache, metric_fn).double().numpy()


TL_TARGETS = [t for t in TARGETS if t != "resid_post"]


@pytest.mark.parametrize("direction", ["denoise", "noise"])
@pytest.mark.parametrize("target", TL_TARGETS)
def test_every_target_matches_transformer_lens(model, pair, target, direction):
    if target == "resid_mid" and model.cfg.parallel_attn_mlp:
        with pytest.raises(patchlab.TargetUnavailableError, match="parallel"):
            patchlab.patch(model, pair, target=target, direction=direction)
        return
    ours = patchlab.patch(model, pair, target=target, direction=direction, metric="logit_diff")
    ref = reference(model, [pair], target, direction, "logit_diff")
    assert ours.values.shape == ref.shape
    assert ours.meta["complete"]
    np.testing.assert_allclose(ours.values, ref, atol=TOL, rtol=0)


@pytest.mark.parametrize("metric", ["logit_diff_recovered", "answer_prob", "answer_logprob"])
def test_metrics_and_pair_averaging_match_reference(model, pairs, metric):
    ours = patchlab.patch(model, pairs, target="attn_head_out_by_pos", metric=metric)
    ref = reference(model, pairs, "attn_head_out_by_pos", "denoise", metric)
    np.testing.assert_allclose(ours.values, ref, atol=TOL, rtol=0)
    assert ours.per_pair.shape == (2, *ours.values.shape)


def test_small_batches_give_the_same_values(model, pair):
    a = patchlab.patch(model, pair, target="attn_head_out_by_pos", metric="logit_diff", batch_size=3)
    b = patchlab.patch(model, pair, target="attn_head_out_by_pos", metric="logit_diff", batch_size=64)
    np.testing.assert_allclose(a.values, b.values, atol=TOL, rtol=0)


def test_resid_mid_at_last_position_equals_resid_pre_of_next_layer(model, pair):
    if model.cfg.parallel_attn_mlp:
        pytest.skip("no resid_mid in parallel attention")
    mid = patchlab.patch(model, pair, target="resid_mid", metric="logit_diff")
    pre = patchlab.patch(model, pair, target="resid_pre", metric="logit_diff")
    post = patchlab.patch(model, pair, target="resid_post", metric="logit_diff")
    # the last position's residual after block L is the one before block L+1
    np.testing.assert_allclose(post.values[:-1], pre.values[1:], atol=TOL, rtol=0)
    # mid-layer patching at the final position: only that position's MLP reads it
    assert np.isfinite(mid.values).all()


def test_patching_every_position_of_last_resid_post_reproduces_source(model, pair):
    res = patchlab.patch(model, pair, target="resid_post", metric="logit_diff_recovered")
    # the last layer's resid_post at the last position fully determines the output
    assert res.values[-1, -1] == pytest.approx(1.0, abs=1e-4)
    ld = patchlab.patch(model, pair, target="resid_post", metric="logit_diff")
    assert ld.values[-1, -1] == pytest.approx(ld.meta["runs"]["clean"]["logit_diff"], abs=1e-4)


def test_noise_direction_patches_corrupted_into_clean(model, pair):
    res = patchlab.patch(model, pair, target="resid_pre", direction="noise", metric="logit_diff")
    # patching the whole corrupted residual at layer 0, last position, into the clean run
    # changes only what the last position sees; first position's patch changes nothing
    assert res.values[0, 0] == pytest.approx(res.meta["runs"]["clean"]["logit_diff"], abs=1e-4)
