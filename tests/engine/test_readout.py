import numpy as np
import pytest

import patchlab
from patchlab.engine import readout


def test_run_readout_agrees_with_sweep_baselines(model, pair):
    r = readout.run_readout(model, pair)
    res = patchlab.patch(model, pair, target="attn_out", metric="logit_diff")
    for run in ("clean", "corrupted"):
        assert r[run]["logit_diff"] == pytest.approx(res.meta["runs"][run]["logit_diff"], abs=1e-5)
        assert r[run]["answer_prob"] == pytest.approx(res.meta["runs"][run]["answer_prob"], abs=1e-6)


@pytest.mark.parametrize("target,index", [("resid_pre", (1, 6)), ("attn_head_out_by_pos", (2, -1, 1)),
                                           ("attn_head_pattern_all_pos", (1, 2))])
def test_patched_readout_matches_the_sweep_cell(model, pair, target, index):
    res = patchlab.patch(model, pair, target=target, metric="logit_diff")
    index = tuple(i % n for i, n in zip(index, res.shape))
    one = readout.patched_readout(model, pair, target=target, index=index)
    assert one["logit_diff"] == pytest.approx(res.values[index], abs=1e-4)
    assert one["answer_prob"] == pytest.approx(res.meta["cell_raw"]["answer_prob"][index], abs=1e-5)


def test_attention_patterns_are_causal_distributions(model, pair):
    pat = readout.attention_patterns(model, pair, layer=1, head=0)
    for run in ("clean", "corrupted"):
        a = pat[run]
        np.testing.assert_allclose(a.sum(-1), 1.0, atol=1e-5)
        assert np.allclose(np.triu(a, 1), 0)


def test_suggest_answers(model):
    s = readout.suggest_answers(model, "John gave a drink to", k=5)
    assert len(s) == 5 and all(isinstance(t, str) for t, _ in s)
    assert readout.suggest_answers(model, "   ") == []


def test_patched_readout_rejects_a_cell_outside_the_grid(model, pair):
    with pytest.raises(patchlab.InputError, match="outside"):
        readout.patched_readout(model, pair, target="resid_pre", index=(99, 0))
    with pytest.raises(patchlab.InputError, match="indices"):
        readout.patched_readout(model, pair, target="resid_pre", index=(0,))
