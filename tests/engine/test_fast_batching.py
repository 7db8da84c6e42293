"""The fast path with many pairs, half precision, weight edits, cancel and honest metadata."""

import dataclasses
import sys

import numpy as np
import pytest
import torch

import patchlab
from patchlab.engine.context import prepare
from patchlab.engine.fast import backend, forward
from patchlab.engine.fast.weights import _get
from patchlab.engine.sweep import iter_patch, run_to_end

PAIRS = [
    ("Alice sees John, John gave a drink to", "Alice sees John, Mary gave a drink to", " Mary", " John"),
    ("Bob sees Mary, Mary gave a book to", "Bob sees Mary, John gave a book to", " John", " Mary"),
    ("Tom sees Anna, Anna gave a drink to", "Tom sees Anna, Alice gave a drink to", " Tom", " Anna"),
    ("When John went to the store, John", "When Mary went to the store, John", " Mary", " John"),
]


@pytest.fixture
def many():
    return [patchlab.PromptPair(*p) for p in PAIRS]


def _same_length(model, pairs):
    n = {p: model.to_tokens(p.clean).shape[-1] for p in pairs}
    return [p for p in pairs if n[p] == n[pairs[0]]]


@pytest.mark.parametrize("target", ["resid_pre", "attn_head_out_all_pos", "attn_head_k_by_pos"])
def test_pairs_batched_together_equal_the_hook_path_pair_by_pair(model, many, target, monkeypatch):
    # targets with a position axis need pairs of one length; the others mix lengths (two groups)
    pairs = many if target.endswith("all_pos") else _same_length(model, many)
    assert len(pairs) >= 2
    ref = patchlab.patch(model, pairs, target=target, metric="logit_diff", engine="generic")
    one_group = patchlab.patch(model, pairs, target=target, metric="logit_diff")
    ctx = prepare(model, pairs, target=target, metric="logit_diff")
    assert backend.unsupported_reason(ctx) is None
    assert any(len(g) > 1 for g in backend._STATE[id(ctx)]["groups"])  # several pairs per forward pass
    # groups of one pair: base runs recomputed per wave and freed, not kept for the whole sweep
    monkeypatch.setattr(backend, "MAX_GROUP", 1)
    ctx1 = prepare(model, pairs, target=target, metric="logit_diff")
    assert backend.unsupported_reason(ctx1) is None
    assert "kept" not in backend._STATE[id(ctx1)]
    singles = patchlab.patch(model, pairs, target=target, metric="logit_diff")
    for res in (one_group, singles):
        assert res.meta["engine_path"] == "fast-torch" and res.meta["complete"]
        np.testing.assert_allclose(res.per_pair, ref.per_pair, atol=1e-4)


def test_a_pair_with_identical_prompts_fills_every_row_of_a_wave(model, many):
    # a context whose second pair patches the clean run into itself (built by hand: the pair
    # helpers refuse identical prompts) must give the clean value in every cell of every layer
    ctx = prepare(model, many[:2], target="attn_head_out_all_pos", metric="logit_diff")
    same = dataclasses.replace(ctx.pairs[1], corrupted=ctx.pairs[1].clean, corrupted_str=ctx.pairs[1].clean_str)
    corrupted_raw = {q: v.copy() for q, v in ctx.corrupted_raw.items()}
    for q in corrupted_raw:
        corrupted_raw[q][1] = ctx.clean_raw[q][1]
    ctx = dataclasses.replace(ctx, pairs=[ctx.pairs[0], same], corrupted_raw=corrupted_raw)
    res = run_to_end(iter_patch(model, many[:2], target="attn_head_out_all_pos", metric="logit_diff", context=ctx))
    assert res.meta["engine_path"] == "fast-torch"
    assert not np.isnan(res.per_pair).any() and res.meta["complete"]
    np.testing.assert_allclose(res.per_pair[1], ctx.clean_raw["logit_diff"][1], atol=1e-4)


def test_a_nan_cell_makes_the_result_incomplete(model, many, monkeypatch):
    real = backend.run_wave

    def nan_wave(*args):
        out = real(*args)
        out[0] = float("nan")
        return out

    monkeypatch.setattr(backend, "run_wave", nan_wave)
    res = patchlab.patch(model, many[0], target="attn_head_out_all_pos", metric="logit_diff")
    assert np.isnan(res.values).sum() >= 1
    assert not res.meta["complete"]


def test_a_context_for_other_pairs_or_direction_is_refused(model, many):
    ctx = prepare(model, many[:2], target="resid_pre")
    with pytest.raises(patchlab.InputError, match="other prompt pairs"):
        run_to_end(iter_patch(model, many[1:3], target="resid_pre", context=ctx))
    with pytest.raises(patchlab.InputError, match="direction"):
        run_to_end(iter_patch(model, many[:2], target="resid_pre", direction="noise", context=ctx))
    ok = run_to_end(iter_patch(model, many[:2], target="resid_pre", context=ctx))
    assert ok.meta["complete"]


def test_a_missing_fast_module_is_an_error_when_asked_and_a_reason_otherwise(model, many, monkeypatch):
    import patchlab.engine

    monkeypatch.setitem(sys.modules, "patchlab.engine.fast", None)  # makes the import fail
    monkeypatch.delattr(patchlab.engine, "fast")
    with pytest.raises(patchlab.InputError, match="cannot be imported"):
        patchlab.patch(model, many[0], target="attn_out", engine="fast")
    res = patchlab.patch(model, many[0], target="attn_out")
    assert res.meta["engine_path"] == "generic-hooks"
    assert "could not be imported" in res.meta["fallback_reason"]


def test_out_of_memory_reading_weights_is_not_a_missing_accessor(model, many, monkeypatch):
    class Owner:
        @property
        def W_Q(self):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with pytest.raises(torch.OutOfMemoryError):
        _get(Owner(), "W_Q")

    def oom(model):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(backend, "extract", oom)
    backend._WEIGHTS.pop(model, None)
    try:
        with pytest.raises(torch.OutOfMemoryError):
            patchlab.patch(model, many[0], target="attn_out")
    finally:
        monkeypatch.undo()
        backend._WEIGHTS.pop(model, None)


def test_a_chunk_out_of_memory_halves_the_batch_on_the_same_engine(model, many, monkeypatch):
    ref = patchlab.patch(model, many[0], target="resid_pre", metric="logit_diff")
    real, sizes = backend.run_cells, []

    def small_only(w, li, base, prow, src, cells, *rest):
        sizes.append(len(cells))
        if len(cells) > 2:
            raise RuntimeError("CPU out of memory (simulated)")
        return real(w, li, base, prow, src, cells, *rest)

    monkeypatch.setattr(backend, "run_cells", small_only)
    res = patchlab.patch(model, many[0], target="resid_pre", metric="logit_diff", batch_size=8)
    assert res.meta["engine_path"] == "fast-torch" and res.meta["complete"]
    assert max(sizes) > 2 and min(sizes) <= 2
    np.testing.assert_allclose(res.values, ref.values, atol=1e-6)


def test_weights_are_views_of_the_bridge_parameters(model):
    w = backend.weights_for(model)
    storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    for layer in w.layers:
        for t in (layer.W_q2, layer.W_k2, layer.W_v2, layer.W_O_flat, layer.W_in, layer.W_out):
            if t is not None:
                assert t.untyped_storage().data_ptr() in storages
    assert w.W_U.untyped_storage().data_ptr() in storages
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    assert w.copied_bytes < 0.02 * total  # only bias zeros of bias-free layers


def test_an_in_place_weight_edit_changes_the_fast_result_like_the_hook_path(tiny_dir, many, arch):
    model = patchlab.load_model(str(tiny_dir / arch), device="cpu")
    before = patchlab.patch(model, many[0], target="attn_head_out_all_pos", metric="logit_diff")
    # the MLP output weight of layer 1 (GPT-2 c_proj, NeoX dense_4h_to_h, Llama down_proj), in place
    names = ("mlp._original_component.c_proj", "dense_4h_to_h", "down_proj")
    param = next(p for n, p in model.named_parameters()
                 if ("layers.1." in n or ".h.1." in n) and any(k in n for k in names) and n.endswith("weight"))
    with torch.no_grad():
        param.mul_(3.0)
    after = patchlab.patch(model, many[0], target="attn_head_out_all_pos", metric="logit_diff")
    generic = patchlab.patch(model, many[0], target="attn_head_out_all_pos", metric="logit_diff", engine="generic")
    assert after.meta["engine_path"] == "fast-torch", after.meta["fallback_reason"]
    assert np.abs(after.values - before.values).max() > 1e-3
    np.testing.assert_allclose(after.values, generic.values, atol=1e-4)


HALF_TOL = {"float16": 2e-3, "bfloat16": 1.5e-2}  # logit differences here are ~0.05-0.3


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_runs_on_the_fast_path_close_to_float32(tiny_dir, model, arch, many, dtype):
    half = patchlab.load_model(str(tiny_dir / arch), device="cpu", dtype=dtype)
    for target in ("resid_pre", "attn_head_v_all_pos"):
        ref = patchlab.patch(model, many[:2], target=target, metric="logit_diff")
        res = patchlab.patch(half, many[:2], target=target, metric="logit_diff", engine="fast")
        assert res.meta["engine_path"] == "fast-torch" and res.meta["fallback_reason"] == ""
        np.testing.assert_allclose(res.values, ref.values, atol=HALF_TOL[dtype])


def test_model_to_another_dtype_is_honoured(tiny_dir, many):
    model = patchlab.load_model(str(tiny_dir / "llama"), device="cpu")
    ref = patchlab.patch(model, many[0], target="attn_out", metric="logit_diff")
    model.to(torch.bfloat16)
    res = patchlab.patch(model, many[0], target="attn_out", metric="logit_diff", engine="fast")
    assert backend.weights_for(model).dtype == torch.bfloat16
    assert res.meta["engine_path"] == "fast-torch"
    np.testing.assert_allclose(res.values, ref.values, atol=HALF_TOL["bfloat16"])


def test_stop_set_mid_wave_returns_before_the_wave_finishes(model, many, monkeypatch):
    monkeypatch.setattr(backend, "WAVE_MIN_YIELDS", 1)  # one wave over every layer
    calls = {"blocks": 0, "armed": False}
    real = forward.block

    def counting(*args, **kwargs):
        out = real(*args, **kwargs)  # checks the stop flag first, then runs the block
        calls["blocks"] += 1
        calls["armed"] = True
        return out

    monkeypatch.setattr(forward, "block", counting)
    res = patchlab.patch(model, many[0], target="attn_head_out_all_pos", stop=lambda: calls["armed"])
    # the wave would run n_layers - 1 more blocks; the stop lands at the first block boundary
    assert calls["blocks"] == 1 < model.cfg.n_layers - 1
    assert res.meta["cancelled"] and not res.meta["complete"]
    assert np.isnan(res.values).all()
