"""Parity with TransformerLens's own get_act_patch_* functions (the correctness oracle).

Every target and direction runs on both exact engines; TransformerLens's slow per-cell loop
is computed once per case and shared between them.
"""

import numpy as np
import pytest
import torch
import transformer_lens.patching as tlp

import patchlab
from patchlab.core.targets import TARGETS
from patchlab.engine.tokens import tokenize_pairs

TOL = 1e-4
ENGINES = {"fast": "fast-torch", "generic": "generic-hooks"}
# short prompts keep TransformerLens's one-pass-per-cell reference affordable
SHORT_PAIRS = [
    ("John gave a drink to", "Mary gave a drink to", " Mary", " John"),
    ("Mary gave a book to", "John gave a book to", " John", " Mary"),
]
_REFERENCES: dict = {}


@pytest.fixture
def pair():
    return patchlab.PromptPair(*SHORT_PAIRS[0])


@pytest.fixture
def pairs():
    return [patchlab.PromptPair(*p) for p in SHORT_PAIRS]


@pytest.fixture(params=list(ENGINES))
def engine(request):
    return request.param


def reference(model, pairs, target, direction, metric):
    """TransformerLens's per-cell loop on the batch of pairs, under no_grad (memoised)."""
    key = (id(model), tuple(p.clean for p in pairs), target, direction, metric)
    if key not in _REFERENCES:
        _REFERENCES[key] = _reference(model, pairs, target, direction, metric)
    return _REFERENCES[key]


def _reference(model, pairs, target, direction, metric):
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


# TransformerLens has no neuron patching function (tests/engine/test_neurons.py has hand references)
TL_TARGETS = [t for t in TARGETS if t != "resid_post" and not t.startswith("mlp_post_neuron")]


@pytest.mark.parametrize("direction", ["denoise", "noise"])
@pytest.mark.parametrize("target", TL_TARGETS)
def test_every_target_matches_transformer_lens(model, pair, target, direction, engine):
    if target == "resid_mid" and model.cfg.parallel_attn_mlp:
        with pytest.raises(patchlab.TargetUnavailableError, match="parallel"):
            patchlab.patch(model, pair, target=target, direction=direction, engine=engine)
        return
    ours = patchlab.patch(model, pair, target=target, direction=direction, metric="logit_diff", engine=engine)
    assert ours.meta["engine_path"] == ENGINES[engine], ours.meta["fallback_reason"]
    ref = reference(model, [pair], target, direction, "logit_diff")
    assert ours.values.shape == ref.shape
    assert ours.meta["complete"]
    np.testing.assert_allclose(ours.values, ref, atol=TOL, rtol=0)


@pytest.mark.parametrize("metric", ["logit_diff_recovered", "answer_prob", "answer_logprob"])
def test_metrics_and_pair_averaging_match_reference(model, pairs, metric, engine):
    ours = patchlab.patch(model, pairs, target="attn_head_out_by_pos", metric=metric, engine=engine)
    assert ours.meta["engine_path"] == ENGINES[engine]
    ref = reference(model, pairs, "attn_head_out_by_pos", "denoise", metric)
    np.testing.assert_allclose(ours.values, ref, atol=TOL, rtol=0)
    assert ours.per_pair.shape == (2, *ours.values.shape)


@pytest.mark.parametrize("target", ["attn_head_out_by_pos", "resid_pre", "attn_head_k_by_pos"])
def test_small_batches_give_the_same_values(model, pair, engine, target):
    a = patchlab.patch(model, pair, target=target, metric="logit_diff", batch_size=3, engine=engine)
    b = patchlab.patch(model, pair, target=target, metric="logit_diff", batch_size=64, engine=engine)
    np.testing.assert_allclose(a.values, b.values, atol=TOL, rtol=0)


def test_resid_post_agrees_between_engines_and_with_resid_pre(model, pair):
    fast = patchlab.patch(model, pair, target="resid_post", metric="logit_diff", engine="fast")
    generic = patchlab.patch(model, pair, target="resid_post", metric="logit_diff", engine="generic")
    np.testing.assert_allclose(fast.values, generic.values, atol=TOL, rtol=0)
    pre = patchlab.patch(model, pair, target="resid_pre", metric="logit_diff")
    # the last position's residual after block L is the one before block L+1
    np.testing.assert_allclose(fast.values[:-1], pre.values[1:], atol=TOL, rtol=0)


def test_resid_mid_of_the_last_layer_at_the_last_position_reproduces_the_source(model, pair, engine):
    if model.cfg.parallel_attn_mlp:
        pytest.skip("no resid_mid in parallel attention")
    mid = patchlab.patch(model, pair, target="resid_mid", metric="logit_diff", engine=engine)
    # after the last attention only position-wise maps (MLP, final norm, unembedding) remain
    assert mid.values[-1, -1] == pytest.approx(mid.meta["runs"]["clean"]["logit_diff"], abs=TOL)
    # and earlier positions of the last layer's resid_mid cannot reach the last position
    np.testing.assert_allclose(mid.values[-1, :-1], mid.meta["runs"]["corrupted"]["logit_diff"], atol=TOL)


def test_patching_every_position_of_last_resid_post_reproduces_source(model, pair):
    res = patchlab.patch(model, pair, target="resid_post", metric="logit_diff_recovered")
    # the last layer's resid_post at the last position fully determines the output
    assert res.values[-1, -1] == pytest.approx(1.0, abs=1e-4)
    ld = patchlab.patch(model, pair, target="resid_post", metric="logit_diff")
    assert ld.values[-1, -1] == pytest.approx(ld.meta["runs"]["clean"]["logit_diff"], abs=1e-4)


def test_noise_direction_patches_corrupted_into_clean(model, engine, monkeypatch):
    from patchlab.engine.fast import backend

    # the fast path would copy shared-prefix cells from the base run: compute them instead
    monkeypatch.setattr(backend, "SKIP_SHARED_PREFIX", False)
    # a shared first word: position 0 is the same token even without a BOS token (NeoX)
    pair = patchlab.PromptPair("Alice saw John gave a drink to", "Alice saw Mary gave a drink to", " Mary", " John")
    res = patchlab.patch(model, pair, target="resid_pre", direction="noise", metric="logit_diff", engine=engine)
    assert res.meta["engine_path"] == ENGINES[engine]
    # the first position is the same token in both prompts: patching it changes nothing
    assert res.values[0, 0] == pytest.approx(res.meta["runs"]["clean"]["logit_diff"], abs=1e-4)


@pytest.fixture(scope="module")
def embedded_models():
    from patchlab.engine.embedded import load_embedded

    return {name: load_embedded(name) for name in ("toy-solu1", "toy-attn2")}


@pytest.mark.parametrize("name,target", [
    ("toy-solu1", "mlp_out"), ("toy-solu1", "resid_pre"), ("toy-solu1", "attn_head_out_all_pos"),
    ("toy-solu1", "attn_head_v_by_pos"), ("toy-attn2", "resid_pre"), ("toy-attn2", "attn_head_q_all_pos"),
    ("toy-attn2", "attn_head_k_by_pos"),
])
def test_embedded_models_take_the_fast_path_and_match_transformer_lens(embedded_models, name, target):
    from patchlab.core.examples import load_examples

    model = embedded_models[name]
    ex = load_examples(name)[0]
    ours = patchlab.patch(model, ex.pair, target=target, metric="logit_diff")
    # SoLU-LN (x * softmax(x), then a LayerNorm inside the MLP) is implemented by the fast path
    assert ours.meta["engine_path"] == "fast-torch", ours.meta["fallback_reason"]
    ref = reference(model, [ex.pair], target, "denoise", "logit_diff")
    np.testing.assert_allclose(ours.values, ref, atol=TOL, rtol=0)
