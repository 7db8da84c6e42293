"""Many pairs on the fast path: memory bounded by the group in flight, means equal TransformerLens's.

The bound is measured from outside the engine: the bridge's ``run_with_cache`` calls, and the
bytes of every live tensor (found by the garbage collector, the model's own parameters and
buffers excluded) sampled inside the sweep.
"""

import gc
import itertools
import warnings

import numpy as np
import pytest
import torch
from tl_reference import tl_reference

import patchlab
from patchlab.engine import context
from patchlab.engine.fast import backend
from patchlab.engine.tokens import tokenize_pairs

NAMES = ["John", "Mary", "Tom", "Anna", "Alice", "Bob"]


def _pairs(model, n):
    """``n`` distinct IOI-like pairs of one token length with single-token answers."""
    out, length = [], None
    for (a, b), obj in itertools.product(itertools.permutations(NAMES, 2), ["drink", "book"]):
        if any(model.to_tokens(f" {x}", prepend_bos=False).shape[-1] != 1 for x in (a, b)):
            continue
        clean = f"When {a} and {b} went to the store, {a} gave a {obj} to"
        corrupted = f"When {a} and {b} went to the store, {b} gave a {obj} to"
        n_tok = model.to_tokens(clean).shape[-1]
        if n_tok != model.to_tokens(corrupted).shape[-1] or (length is not None and n_tok != length):
            continue
        length = n_tok
        out.append(patchlab.PromptPair(clean, corrupted, f" {b}", f" {a}"))
        if len(out) == n:
            return out
    raise AssertionError(f"only {len(out)} pairs")


def _live_tensor_bytes(model) -> int:
    """Bytes of every live tensor storage except the model's parameters and buffers."""
    gc.collect()
    warnings.simplefilter("ignore", FutureWarning)  # isinstance on torch's deprecated module attributes
    own = {t.untyped_storage().data_ptr() for t in itertools.chain(model.parameters(), model.buffers())}
    seen, total = set(), 0
    for obj in gc.get_objects():
        try:
            if not isinstance(obj, torch.Tensor) or obj.is_meta:
                continue
            st = obj.untyped_storage()
        except Exception:  # noqa: BLE001 - tensor subclasses without storage
            continue
        ptr = st.data_ptr()
        if ptr in own or ptr in seen:
            continue
        seen.add(ptr)
        total += st.nbytes()
    return total


def _measure(model, pairs, target, monkeypatch):
    """(bridge run_with_cache calls, peak live tensor bytes inside the sweep, result)."""
    calls = {"cache": 0, "cells": 0}
    peak = [0]
    real_cache, real_cells = model.run_with_cache, backend.run_cells

    def counting_cache(*args, **kwargs):
        calls["cache"] += 1
        return real_cache(*args, **kwargs)

    def sampling_cells(*args, **kwargs):
        out = real_cells(*args, **kwargs)  # the group's runs and this chunk's tensors are alive here
        calls["cells"] += 1
        if calls["cells"] % 6 == 1:
            peak[0] = max(peak[0], _live_tensor_bytes(model))
        return out

    monkeypatch.setattr(model, "run_with_cache", counting_cache)
    monkeypatch.setattr(backend, "run_cells", sampling_cells)
    try:
        res = patchlab.patch(model, pairs, target=target, metric="logit_diff", engine="fast")
    finally:
        monkeypatch.setattr(backend, "run_cells", real_cells)
        monkeypatch.delattr(model, "run_with_cache")
    assert res.meta["engine_path"] == "fast-torch" and res.meta["complete"]
    return calls["cache"], peak[0], res


def test_fast_sweep_memory_does_not_grow_with_the_number_of_pairs(tiny_models, monkeypatch):
    model = tiny_models["gpt2"]
    pairs = _pairs(model, 16)
    target = "resid_pre"
    monkeypatch.setattr(backend, "MAX_GROUP", 2)  # both sizes run several groups of two pairs
    # the bridge keeps its last forward's attention patterns: same baseline batch for both sizes
    monkeypatch.setattr(context, "BASELINE_BATCH", 4)
    patchlab.patch(model, pairs[0], target=target, metric="logit_diff")  # warm-up (the probe runs once)
    few_calls, few_peak, _ = _measure(model, pairs[:4], target, monkeypatch)
    many_calls, many_peak, res = _measure(model, pairs, target, monkeypatch)
    # the bridge runs with a cache a fixed number of times, not twice per pair
    assert many_calls == few_calls <= 2
    # per extra pair, far less than one pair's target activations ([layer, pos, d_model]) stays
    # alive: only its two prompts' tokens (4 % of that here); the old engine kept all of them
    tp = tokenize_pairs(model, pairs[:1])[0]
    one_pair = model.cfg.n_layers * tp.n_pos * model.cfg.d_model * 4
    growth = (many_peak - few_peak) / (len(pairs) - 4)
    assert growth <= 2 * tp.n_pos * 8 + 64 < 0.1 * one_pair, (growth, one_pair, few_peak, many_peak)
    assert res.per_pair.shape[0] == len(pairs)


@pytest.mark.parametrize(("target", "direction"), [
    ("resid_pre", "denoise"), ("mlp_out", "noise"), ("attn_head_out_all_pos", "denoise"),
])
def test_many_pairs_in_several_groups_equal_transformer_lens_mean(model, target, direction, monkeypatch):
    pairs = _pairs(model, 6)
    ref = tl_reference(model, pairs, target, direction)  # TL's loop on all pairs: the mean per cell
    for group in (4, 2):  # two, then three groups (runs recomputed per wave, later groups checked in the sweep)
        monkeypatch.setattr(backend, "MAX_GROUP", group)
        res = patchlab.patch(model, pairs, target=target, metric="logit_diff", direction=direction, engine="fast")
        assert res.meta["engine_path"] == "fast-torch" and res.meta["complete"]
        np.testing.assert_allclose(res.values, ref, atol=1e-4)


def test_a_later_group_that_fails_the_self_check_falls_back_before_any_row(tiny_models, monkeypatch):
    # only the first group is checked before the sweep; a later group's baselines are checked on
    # its first runs. A wrong bridge baseline for pair 4 (third group of two) must still send
    # the whole sweep to the hook path with the reason, or refuse it with engine="fast".
    from patchlab.engine.context import prepare
    from patchlab.engine.sweep import iter_patch, run_to_end

    model = tiny_models["gpt2"]
    pairs = _pairs(model, 6)
    monkeypatch.setattr(backend, "MAX_GROUP", 2)
    ctx = prepare(model, pairs, target="resid_pre", metric="logit_diff")
    ctx.corrupted_raw["logit_diff"][4] += 1.0
    res = run_to_end(iter_patch(model, pairs, target="resid_pre", metric="logit_diff", context=ctx))
    assert res.meta["engine_path"] == "generic-hooks" and res.meta["complete"]
    assert "pair 5" in res.meta["fallback_reason"] and "differs" in res.meta["fallback_reason"]
    with pytest.raises(patchlab.InputError, match="pair 5"):
        run_to_end(iter_patch(model, pairs, target="resid_pre", metric="logit_diff", context=ctx, engine="fast"))
