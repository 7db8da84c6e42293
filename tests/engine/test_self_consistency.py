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


@pytest.fixture
def no_prefix_skip(monkeypatch):
    """Compute every cell: the fast engine otherwise copies shared-prefix cells from the base run."""
    from patchlab.engine.fast import backend

    monkeypatch.setattr(backend, "SKIP_SHARED_PREFIX", False)


@pytest.mark.parametrize("engine", ["fast", "generic"])
@pytest.mark.parametrize("direction", ["denoise", "noise"])
def test_last_resid_post_at_last_position_reproduces_the_source_run(model, pair, direction, engine,
                                                                    no_prefix_skip):
    res = patchlab.patch(model, pair, target="resid_post", metric="logit_diff", direction=direction,
                         engine=engine)
    source = "clean" if direction == "denoise" else "corrupted"
    assert res.values[-1, -1] == pytest.approx(res.meta["runs"][source]["logit_diff"], abs=TOL)
    # and patching the first position of resid_pre at layer 0 (the BOS or first token, equal in
    # both prompts) changes nothing: with the prefix skip off this cell is computed, not copied
    pre = patchlab.patch(model, pair, target="resid_pre", metric="logit_diff", direction=direction,
                         engine=engine)
    base = "corrupted" if direction == "denoise" else "clean"
    assert pre.values[0, 0] == pytest.approx(pre.meta["runs"][base]["logit_diff"], abs=TOL)
    assert pre.values[0, 0] == pytest.approx(pre.no_effect, abs=TOL)
    # the other run's value is far away, so a swapped base run would fail the check above
    assert abs(pre.meta["runs"][source]["logit_diff"] - pre.meta["runs"][base]["logit_diff"]) > 10 * TOL


@pytest.mark.parametrize("direction", ["denoise", "noise"])
@pytest.mark.parametrize("target", ["resid_pre", "attn_head_out_by_pos", "mlp_out"])
def test_shared_prefix_skip_equals_computing_the_cells(model, pair, direction, target, monkeypatch):
    """The skipped cells (copied from the base run) equal the cells computed with the skip off."""
    from patchlab.engine.fast import backend

    skipped = patchlab.patch(model, pair, target=target, metric="logit_diff", direction=direction,
                             engine="fast")
    monkeypatch.setattr(backend, "SKIP_SHARED_PREFIX", False)
    computed = patchlab.patch(model, pair, target=target, metric="logit_diff", direction=direction,
                              engine="fast")
    np.testing.assert_allclose(skipped.values, computed.values, atol=TOL, rtol=0)


def test_ranking_by_change_matches_ranking_by_recovered_fraction(model, pair):
    """For one pair, logit_diff_recovered is an affine map of logit_diff with no-effect value 0,
    so ranking logit_diff cells by |change| gives the order of |logit_diff_recovered|."""
    ld = patchlab.patch(model, pair, target="attn_head_out_all_pos", metric="logit_diff")
    rec = patchlab.patch(model, pair, target="attn_head_out_all_pos", metric="logit_diff_recovered")
    k = ld.values.size
    by_change = [c for c, _ in ld.top_cells(k, absolute=True, by="change")]
    by_rec = [c for c, _ in rec.top_cells(k, absolute=True)]
    gap = ld.meta["runs"]["clean"]["logit_diff"] - ld.meta["runs"]["corrupted"]["logit_diff"]
    np.testing.assert_allclose(ld.change() / gap, rec.values, atol=TOL, rtol=0)
    # ties within the tolerance may swap; compare the ranked magnitudes instead of labels
    mags = np.array([abs(rec.values[c]) for c in by_change])
    np.testing.assert_allclose(mags, np.array([abs(rec.values[c]) for c in by_rec]), atol=TOL)


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
