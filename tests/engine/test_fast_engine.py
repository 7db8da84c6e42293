"""The fast exact engine: path selection, self-verification, fallbacks, batching, cancel."""

import numpy as np
import pytest
import torch

import patchlab
from patchlab.engine.context import prepare
from patchlab.engine.fast import backend
from patchlab.engine.fast.forward import base_runs

PAIR = ("John gave a drink to", "Mary gave a drink to", " Mary", " John")


@pytest.fixture
def pair():
    return patchlab.PromptPair(*PAIR)


def test_auto_picks_the_fast_path_on_supported_architectures(model, pair):
    res = patchlab.patch(model, pair, target="attn_head_out_all_pos")
    assert res.meta["engine_path"] == "fast-torch"
    assert res.meta["fallback_reason"] == ""


def test_a_forward_that_disagrees_with_the_bridge_falls_back(model, pair, monkeypatch):
    good = backend.weights_for(model)
    broken = backend.extract(model)
    # a wrong weight must never give numbers (a non-constant shift: LayerNorm removes constants)
    broken.layers[-1].b_O = broken.layers[-1].b_O + torch.linspace(-1, 1, broken.layers[-1].b_O.shape[0])
    monkeypatch.setattr(backend, "weights_for", lambda m: broken)
    res = patchlab.patch(model, pair, target="resid_pre", engine="auto", metric="logit_diff")
    assert res.meta["engine_path"] == "generic-hooks"
    assert "differs" in res.meta["fallback_reason"]
    with pytest.raises(patchlab.InputError, match="fast engine does not apply"):
        patchlab.patch(model, pair, target="resid_pre", engine="fast")
    monkeypatch.setattr(backend, "weights_for", lambda m: good)
    assert patchlab.patch(model, pair, target="resid_pre").meta["engine_path"] == "fast-torch"


def test_unknown_architecture_features_give_a_reason(model, pair, monkeypatch):
    monkeypatch.setattr(model.cfg, "use_local_attn", True, raising=False)
    backend._WEIGHTS.pop(model, None)
    try:
        res = patchlab.patch(model, pair, target="attn_out", metric="logit_diff")
    finally:
        monkeypatch.undo()
        backend._WEIGHTS.pop(model, None)
    assert res.meta["engine_path"] == "generic-hooks"
    assert "use_local_attn" in res.meta["fallback_reason"]


def test_unpatched_forward_matches_the_bridge_logits(model, pair):
    w = backend.weights_for(model)
    ctx = prepare(model, pair, target="resid_pre")
    with torch.inference_mode():
        ours = base_runs(w, ctx.pairs[0].clean).last_logits[0]
        theirs = model(ctx.pairs[0].clean)[0, -1]
    np.testing.assert_allclose(torch.log_softmax(ours, -1), torch.log_softmax(theirs, -1), atol=1e-4)


def test_chunks_cover_every_cell_once():
    starts = np.array([0, 5, 5, 3, 7, 7, 7, 1, 0, 6])
    groups = backend.chunks(starts, n_pos=8, bs=3)
    flat = np.concatenate(groups)
    assert sorted(flat.tolist()) == list(range(len(starts)))
    assert all(len(g) <= 3 for g in groups)


def test_cancel_between_chunks_returns_partial_rows(model, pair):
    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        return calls["n"] > 2

    res = patchlab.patch(model, pair, target="attn_head_out_by_pos", batch_size=4, stop=stop)
    assert res.meta["engine_path"] == "fast-torch"
    assert not res.meta["complete"]
    assert np.isnan(res.values[-1]).all()


def test_rows_arrive_in_layer_order_with_raw_quantities(model, pair):
    from patchlab.engine.sweep import iter_patch

    layers = []
    gen = iter_patch(model, pair, target="mlp_out" if not model.cfg.attn_only else "attn_out", engine="fast")
    for event in gen:
        layers.append(event.layer)
        assert set(event.raw) == set(patchlab.core.metrics.RAW)
    assert layers == list(range(model.cfg.n_layers))


@pytest.mark.parametrize("target", ["attn_head_out_all_pos", "attn_head_q_all_pos", "attn_head_v_all_pos",
                                    "attn_head_pattern_all_pos"])
def test_one_wave_over_all_layers_equals_layer_by_layer(model, pair, target, monkeypatch):
    # batch_size 1 forces one layer at a time; WAVE_MIN_YIELDS 1 lets every layer join one wave
    one = patchlab.patch(model, pair, target=target, metric="logit_diff", batch_size=1)
    monkeypatch.setattr(backend, "WAVE_MIN_YIELDS", 1)
    wave = patchlab.patch(model, pair, target=target, metric="logit_diff")
    assert wave.meta["engine_path"] == one.meta["engine_path"] == "fast-torch"
    np.testing.assert_allclose(wave.values, one.values, atol=1e-5)


def test_cells_in_the_shared_prefix_take_the_base_value_without_a_forward_pass(model, monkeypatch):
    pair = patchlab.PromptPair("Alice sees John, John gave a drink to", "Alice sees John, Mary gave a drink to",
                               " Mary", " John")
    calls = []
    real = backend.run_cells
    monkeypatch.setattr(backend, "run_cells", lambda *a: calls.append(a[5]) or real(*a))
    res = patchlab.patch(model, pair, target="resid_pre", metric="logit_diff")
    ctx = prepare(model, pair, target="resid_pre")
    shared = backend.shared_prefix(ctx.pairs[0].clean, ctx.pairs[0].corrupted)
    assert 0 < shared < ctx.pairs[0].n_pos
    assert calls and all(int(c[:, 0].min()) >= shared for c in calls)
    np.testing.assert_allclose(res.values[:, :shared], res.meta["runs"]["corrupted"]["logit_diff"], atol=1e-12)
    monkeypatch.setattr(backend, "SKIP_SHARED_PREFIX", False)
    full = patchlab.patch(model, pair, target="resid_pre", metric="logit_diff")
    np.testing.assert_allclose(res.values, full.values, atol=1e-5)


def test_a_wave_that_runs_out_of_memory_falls_back_to_layer_by_layer(model, pair, monkeypatch):
    ref = patchlab.patch(model, pair, target="attn_head_v_all_pos", metric="logit_diff")

    def oom(*args, **kwargs):
        raise RuntimeError("CPU out of memory (simulated)")

    monkeypatch.setattr(backend, "run_wave", oom)
    res = patchlab.patch(model, pair, target="attn_head_v_all_pos", metric="logit_diff")
    assert res.meta["engine_path"] == "fast-torch" and res.meta["complete"]
    np.testing.assert_allclose(res.values, ref.values, atol=1e-5)
