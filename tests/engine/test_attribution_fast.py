"""The plain-torch attribution pass against the bridge's hook pass, references, fallbacks, cancel."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import patchlab
from patchlab.core.errors import Cancelled
from patchlab.engine import attribution_fast, attribution_pass
from patchlab.engine.tokens import tokenize_pairs

sys.path.insert(0, str(Path(__file__).parent))
from test_attribution_reference import reference  # noqa: E402

PAIR = ("Alice saw John gave a drink to", "Alice saw Mary gave a drink to", " Mary", " John")
SECOND = ("Bob saw Mary gave a book to", "Bob saw John gave a book to", " John", " Mary")


@pytest.fixture
def pairs():
    return [patchlab.PromptPair(*PAIR), patchlab.PromptPair(*SECOND)]


@pytest.fixture(autouse=True)
def _fresh():
    attribution_pass.clear_cache()
    attribution_fast.clear_checks()
    yield
    attribution_pass.FAST = True
    attribution_pass.clear_cache()
    attribution_fast.clear_checks()


def _pass(model, pairs, direction="denoise", qname="logit_diff", fast=True):
    attribution_pass.FAST = fast
    try:
        attribution_pass.clear_cache()
        tps = tokenize_pairs(model, pairs)
        return attribution_pass.estimates(model, tps, direction, qname, lambda: False)
    finally:
        attribution_pass.FAST = True


@pytest.mark.parametrize("direction,qname", [("denoise", "logit_diff"), ("noise", "answer_prob")])
def test_every_family_equals_the_bridge_hook_pass(model, pairs, direction, qname):
    """The previous implementation (one forward + backward through the bridge's hooks) is the
    reference: both passes estimate the same products for every family of every pair."""
    fast = _pass(model, pairs, direction, qname)
    bridge = _pass(model, pairs, direction, qname, fast=False)
    for f, b in zip(fast, bridge):
        assert f.engine == attribution_fast.NAME and not f.fallback, f.fallback
        assert b.engine == attribution_pass.BRIDGE
        assert f.unavailable == b.unavailable
        assert set(f.contrib) == set(b.contrib) and len(f.contrib) >= 10
        for q in ("logit_diff", "answer_prob", "answer_logprob", "wrong_prob"):
            assert f.source_raw[q] == pytest.approx(b.source_raw[q], rel=1e-5, abs=1e-6)
            assert f.base_raw[q] == pytest.approx(b.base_raw[q], rel=1e-5, abs=1e-6)
        for act, c in b.contrib.items():
            assert f.contrib[act].shape == c.shape, act
            scale = max(float(np.abs(c).max()), 1e-3)
            np.testing.assert_allclose(f.contrib[act], c, rtol=0, atol=2e-5 * scale, err_msg=act)


def test_parameters_never_enter_the_graph(model, pairs, monkeypatch):
    real = torch.autograd.grad
    leaves = []

    def spy(outputs, inputs, *args, **kwargs):
        # every leaf the backward would reach: it must be the embeddings' copy, never a weight
        todo, seen = [outputs.grad_fn], set()
        while todo:
            fn = todo.pop()
            if fn is None or fn in seen:
                continue
            seen.add(fn)
            if hasattr(fn, "variable"):
                leaves.append(fn.variable)
            todo += [nxt for nxt, _ in fn.next_functions]
        return real(outputs, inputs, *args, **kwargs)

    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    attribution_fast.check(model, attribution_pass.model_key(model), tokenize_pairs(model, pairs)[0], "denoise",
                           "logit_diff", lambda: False, attribution_pass.bridge_capture, attribution_pass.FAMILIES)
    monkeypatch.setattr(torch.autograd, "grad", spy)
    est = _pass(model, pairs)
    assert est[0].engine == attribution_fast.NAME
    params = {id(p) for p in model.parameters()}
    assert leaves and not any(id(v) in params for v in leaves)
    assert all(v.shape[0] == len(pairs) for v in leaves), "only the base runs' embeddings"
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("stop_at", [2, 5, 8])
def test_cancel_lands_between_blocks_and_before_the_backward(model, pairs, stop_at):
    _pass(model, pairs[:1])  # the self-check is done: the rest is the plain-torch pass alone
    attribution_pass.clear_cache()
    calls = []

    def stop():
        calls.append(1)
        return len(calls) >= stop_at

    tps = tokenize_pairs(model, pairs)
    n_layers = model.cfg.n_layers
    # one read before the batch, one per block of each forward, one before the backward
    assert 2 + 2 * n_layers >= 8
    with pytest.raises(Cancelled):
        attribution_pass.estimates(model, tps, "denoise", "logit_diff", stop)
    assert attribution_pass._cache == {}
    assert all(p.requires_grad for p in model.parameters())
    if stop_at == 8:  # the last read: nothing half-done was kept
        est = patchlab.patch(model, pairs, target="attn_head_out_by_pos", metric="logit_diff", method="attribution")
        np.testing.assert_allclose(est.per_pair[0], reference(model, pairs[0], "attn_head_out_by_pos"),
                                   rtol=1e-5, atol=1e-5)


def test_a_forward_that_differs_from_the_bridge_falls_back_and_says_why(model, pairs, monkeypatch):
    real = attribution_fast.attn_out
    monkeypatch.setattr(attribution_fast, "attn_out", lambda w, layer, z: real(w, layer, z) * 1.01)
    est = patchlab.patch(model, pairs[0], target="attn_head_out_by_pos", metric="logit_diff", method="attribution")
    assert est.meta["estimate"]["pass"] == attribution_pass.BRIDGE
    assert "differ" in est.meta["estimate"]["fallback_reason"]
    np.testing.assert_allclose(est.values, reference(model, pairs[0], "attn_head_out_by_pos"), rtol=1e-5, atol=1e-5)


def test_hooks_left_on_the_model_run_in_the_bridge_pass(model, pairs):
    def double(act, hook):  # noqa: ARG001
        return act * 2.0

    plain = patchlab.patch(model, pairs[0], target="resid_pre", metric="logit_diff", method="attribution")
    model.add_hook("blocks.0.hook_mlp_out", double)
    try:  # the pass cache holds the estimate without the hook: it must not be served
        hooked = patchlab.patch(model, pairs[0], target="resid_pre", metric="logit_diff", method="attribution")
        ref = reference(model, pairs[0], "resid_pre")
    finally:
        model.reset_hooks()
    assert hooked.meta["estimate"]["pass"] == attribution_pass.BRIDGE
    assert "hooks" in hooked.meta["estimate"]["fallback_reason"]
    np.testing.assert_allclose(hooked.values, ref, rtol=1e-5, atol=1e-5)
    assert np.abs(hooked.values - plain.values).max() > 1e-6
    # nor is the hooked estimate served once the hook is gone
    again = patchlab.patch(model, pairs[0], target="resid_pre", metric="logit_diff", method="attribution")
    assert again.meta["estimate"]["pass"] == attribution_fast.NAME
    np.testing.assert_array_equal(again.values, plain.values)


def test_an_architecture_the_fast_path_lacks_uses_the_bridge_pass(model, pairs, monkeypatch):
    def unsupported(model):
        raise attribution_fast.Unsupported("a test's made-up feature")

    monkeypatch.setattr(attribution_fast, "weights_for", unsupported)
    est = patchlab.patch(model, pairs[0], target="mlp_out", metric="logit_diff", method="attribution")
    assert est.meta["estimate"]["pass"] == attribution_pass.BRIDGE
    assert "made-up feature" in est.meta["estimate"]["fallback_reason"]
    np.testing.assert_allclose(est.values, reference(model, pairs[0], "mlp_out"), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["toy-attn2", "toy-solu1"])
def test_embedded_models_say_which_pass_ran(name):
    from patchlab.core.examples import load_examples
    from patchlab.engine.embedded import load_embedded

    model = load_embedded(name)
    ex = load_examples(name)[0]
    est = patchlab.patch(model, ex.pair, target="attn_head_out_by_pos", metric="logit_diff", method="attribution")
    info = est.meta["estimate"]
    assert info["pass"] in (attribution_fast.NAME, attribution_pass.BRIDGE)
    assert (info["pass"] == attribution_pass.BRIDGE) == bool(info.get("fallback_reason"))
    np.testing.assert_allclose(est.values, reference(model, ex.pair, "attn_head_out_by_pos"), rtol=1e-5, atol=1e-5)


def test_estimates_rank_like_exact_patching_on_the_embedded_model():
    """As benchmarks/attribution_agreement.py (median correlation 0.98-1.00 there), on a few examples."""
    from patchlab.core.examples import load_examples
    from patchlab.engine.embedded import load_embedded

    model = load_embedded("toy-attn2")
    corr = []
    for ex in load_examples("toy-attn2")[:4]:
        for target in ("resid_pre", "attn_head_out_by_pos"):
            kw = dict(target=target, metric="logit_diff", direction="denoise")
            exact = patchlab.patch(model, ex.pair, **kw)
            est = patchlab.patch(model, ex.pair, method="attribution", **kw)
            base = est.meta["runs"]["corrupted"]["logit_diff"]
            a, b = exact.values.ravel() - base, est.values.ravel() - base
            moving = (np.abs(a) > 1e-6) | (np.abs(b) > 1e-6)
            corr.append(np.corrcoef(a[moving], b[moving])[0, 1])
    assert np.median(corr) > 0.95 and min(corr) > 0.85, corr
