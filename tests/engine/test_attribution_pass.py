"""The attribution pass: one pass for every target, the cache, cancel, refusals, length groups."""

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import patchlab
from patchlab.core.errors import Cancelled, InputError, TargetUnavailableError
from patchlab.core.targets import TARGETS
from patchlab.engine import attribution, attribution_pass

sys.path.insert(0, str(Path(__file__).parent))
from test_attribution_reference import reference  # noqa: E402

PAIR = ("Alice saw John gave a drink to", "Alice saw Mary gave a drink to", " Mary", " John")
LONGER = ("When Alice saw John, John gave a drink to", "When Alice saw John, Mary gave a drink to", " Mary", " John")


@pytest.fixture
def pair():
    return patchlab.PromptPair(*PAIR)


def _est(model, pairs, target, **kw):
    kw.setdefault("metric", "logit_diff")
    return patchlab.patch(model, pairs, target=target, method="attribution", **kw)


def test_one_pass_serves_every_target_and_direction_or_metric_changes_need_a_new_one(model, pair):
    attribution_pass.clear_cache()
    before = attribution_pass.PASSES
    first = _est(model, pair, "attn_head_out_by_pos")
    assert attribution_pass.PASSES == before + 1
    for target in ("resid_pre", "attn_head_v_all_pos", "attn_head_pattern_by_pos", "attn_out"):
        _est(model, pair, target)
    # logit_diff_recovered is computed from the logit difference: the same gradient
    _est(model, pair, "mlp_out", metric="logit_diff_recovered")
    assert attribution_pass.PASSES == before + 1
    again = _est(model, pair, "attn_head_out_by_pos")
    np.testing.assert_array_equal(again.values, first.values)
    _est(model, pair, "resid_pre", direction="noise")
    _est(model, pair, "resid_pre", metric="answer_prob")
    assert attribution_pass.PASSES == before + 3


def test_an_in_place_weight_edit_is_not_served_from_the_cache(model, pair):
    attribution_pass.clear_cache()
    first = _est(model, pair, "attn_head_out_by_pos")
    w = next(p for n, p in model.named_parameters() if p.dim() == 2 and "embed" not in n and "wte" not in n)
    saved = w.detach().clone()
    try:
        with torch.no_grad():
            w.mul_(1.5)
        edited = _est(model, pair, "attn_head_out_by_pos")
        assert np.abs(edited.values - first.values).max() > 1e-6
        np.testing.assert_allclose(edited.values, reference(model, pair, "attn_head_out_by_pos", qname="logit_diff"),
                                   rtol=1e-5, atol=1e-5)
    finally:
        with torch.no_grad():
            w.copy_(saved)


def test_parameters_stay_out_of_the_graph_and_keep_their_flags(model, pair):
    attribution_pass.clear_cache()
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    seen = []
    # a hook of the caller's records whether the weights required gradients during the pass
    model.add_hook("blocks.0.hook_resid_pre", lambda act, hook: seen.append(
        any(p.requires_grad for p in model.parameters())))
    try:
        _est(model, pair, "resid_pre")
    finally:
        model.reset_hooks()
    assert seen == [False]
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("stop_at", [1, 2, 5, 20])
def test_cancel_lands_inside_the_pass_and_leaves_the_model_clean(model, pair, stop_at, monkeypatch):
    # the bridge's hook pass (the plain-torch one: test_attribution_fast.py)
    monkeypatch.setattr(attribution_pass, "FAST", False)
    attribution_pass.clear_cache()
    calls = []

    def stop():
        calls.append(1)
        return len(calls) >= stop_at

    with pytest.raises(Cancelled):
        _est(model, pair, "attn_head_out_by_pos", stop=stop)
    flags = [p.requires_grad for p in model.parameters()]
    assert all(flags)
    # nothing half-done was cached, and no hook was left behind
    est = _est(model, pair, "attn_head_out_by_pos")
    np.testing.assert_allclose(est.values, reference(model, pair, "attn_head_out_by_pos"), rtol=1e-5, atol=1e-5)


def test_the_stop_flag_is_read_between_batches_in_every_hook_and_after_the_forward(model, pair, monkeypatch):
    monkeypatch.setattr(attribution_pass, "FAST", False)  # the bridge's hook pass
    attribution_pass.clear_cache()
    calls = []
    attribution.prepare(model, pair, target="resid_pre", stop=lambda: calls.append(1) and False)
    n_calls = len(calls)
    n_layers, families = model.cfg.n_layers, len(attribution_pass.FAMILIES)
    # one read before the batch, one per hook point (a layer of each family), one before the backward
    assert n_calls >= 2 + n_layers * (families - 2)
    for stop_at in (n_calls - 1, n_calls):  # the last hook; the read between forward and backward
        attribution_pass.clear_cache()
        calls.clear()
        with pytest.raises(Cancelled):
            attribution.prepare(model, pair, target="resid_pre", stop=lambda k=stop_at: calls.append(1) or len(calls) >= k)
        assert attribution_pass._cache == {}


def test_pairs_of_different_lengths_are_grouped_by_length(model, pair):
    other = patchlab.PromptPair(*LONGER)
    assert model.to_tokens(other.clean).shape[-1] != model.to_tokens(pair.clean).shape[-1]
    attribution_pass.clear_cache()
    before = attribution_pass.PASSES
    both = _est(model, [pair, other], "attn_head_out_all_pos")
    assert attribution_pass.PASSES == before + 2  # one pass per length
    refs = [reference(model, p, "attn_head_out_all_pos") for p in (pair, other)]
    np.testing.assert_allclose(both.values, np.mean(refs, axis=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(both.per_pair, np.stack(refs), rtol=1e-5, atol=1e-5)
    with pytest.raises(InputError, match="same number of tokens"):
        _est(model, [pair, other], "attn_head_out_by_pos")


def test_pairs_of_one_length_share_a_batch_and_match_each_pair_alone(model, pair):
    second = patchlab.PromptPair("Bob saw Mary gave a book to", "Bob saw John gave a book to", " John", " Mary")
    assert model.to_tokens(second.clean).shape[-1] == model.to_tokens(pair.clean).shape[-1]
    attribution_pass.clear_cache()
    before = attribution_pass.PASSES
    both = _est(model, [pair, second], "attn_head_q_by_pos", direction="noise")
    assert attribution_pass.PASSES == before + 1
    refs = np.stack([reference(model, p, "attn_head_q_by_pos", direction="noise") for p in (pair, second)])
    np.testing.assert_allclose(both.per_pair, refs, rtol=1e-5, atol=1e-5)


def test_only_the_metric_quantity_is_estimated(model, pair):
    est = _est(model, pair, "resid_pre", metric="answer_prob")
    assert est.meta["estimate"]["quantity"] == "answer_prob"
    assert np.isfinite(est.meta["cell_raw"]["answer_prob"]).all()
    assert np.isnan(est.meta["cell_raw"]["wrong_prob"]).all()


def test_a_target_without_a_hook_is_refused_before_any_pass(tiny_models, pair):
    attribution_pass.clear_cache()
    before = attribution_pass.PASSES
    with pytest.raises(TargetUnavailableError, match="resid_mid"):
        _est(tiny_models["neox"], pair, "resid_mid")  # parallel attention + MLP
    assert attribution_pass.PASSES == before


@pytest.fixture(scope="module")
def opt_model(tmp_path_factory):
    """A tiny OPT: TransformerLens hands its attention to the HF module and fires hook_pattern after."""
    from tiny_models import build_tokenizer
    from transformers import OPTConfig, OPTForCausalLM

    tok = build_tokenizer()
    torch.manual_seed(0)
    hf = OPTForCausalLM(OPTConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  ffn_dim=64, max_position_embeddings=64, word_embed_proj_dim=32,
                                  bos_token_id=0, eos_token_id=0, pad_token_id=1))
    out = tmp_path_factory.mktemp("opt") / "opt"
    hf.save_pretrained(out)
    tok.save_pretrained(out)
    return patchlab.load_model(str(out), device="cpu")


def test_a_target_the_gradient_does_not_reach_is_refused_never_zeros(opt_model, pair):
    # TL's own backward hooks see no gradient there either (the reference returns None)
    assert reference(opt_model, pair, "attn_head_pattern_all_pos") is None
    for target in ("attn_head_pattern_all_pos", "attn_head_pattern_by_pos"):
        with pytest.raises(TargetUnavailableError, match="gradient") as info:
            _est(opt_model, pair, target)
        assert "hook_pattern" in str(info.value) and target in str(info.value)
    # the same pass estimates the families the gradient does reach
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = _est(opt_model, pair, "attn_head_out_by_pos")
    np.testing.assert_allclose(est.values, reference(opt_model, pair, "attn_head_out_by_pos"), rtol=1e-5, atol=1e-5)


def test_every_family_is_in_the_cached_pass(model, pair):
    attribution_pass.clear_cache()
    _est(model, pair, "resid_pre")
    est = next(iter(attribution_pass._cache.values()))
    available = set(est.contrib) | set(est.unavailable)
    assert available == set(attribution_pass.FAMILIES)
    assert {TARGETS[t].act for t in TARGETS} <= available
