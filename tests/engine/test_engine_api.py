"""load_model, pair validation, streaming, cancellation and the result metadata."""

import threading
import time

import numpy as np
import pytest

import patchlab
from patchlab.core.errors import ModelLoadError, PairError
from patchlab.engine.sweep import iter_patch


def test_load_model_records_processing_and_device(tiny_dir):
    m = patchlab.load_model(str(tiny_dir / "gpt2"), device="cpu")
    info = patchlab.model_info(m)
    assert info.processing == "compat" and info.device == "cpu" and info.source == "local"
    assert type(m).__name__ == "TransformerBridge"


def test_missing_folder_and_non_model_folder(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        patchlab.load_model(str(tmp_path / "nope"), device="cpu")
    with pytest.raises(ModelLoadError, match="config.json"):
        patchlab.load_model(str(tmp_path), device="cpu")


def test_hub_id_offline_says_so_quickly(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-hf-home")
    t0 = time.perf_counter()
    with pytest.raises(ModelLoadError, match="no network connection.*local folder"):
        patchlab.load_model("some-org/some-model-that-is-not-cached", device="cpu")
    assert time.perf_counter() - t0 < 60  # no minutes of retries (generous: shared machines)


def test_bad_device_and_processing(tiny_dir):
    with pytest.raises(patchlab.InputError, match="not available"):
        patchlab.load_model(str(tiny_dir / "gpt2"), device="cuda:7" if not __import__("torch").cuda.is_available() else "mps")
    with pytest.raises(patchlab.InputError, match="processing"):
        patchlab.load_model(str(tiny_dir / "gpt2"), device="cpu", processing="folded")


def test_pair_validation_messages(model):
    P = patchlab.PromptPair
    with pytest.raises(PairError, match=r"same length.*first differ at position.*\nclean: .*\ncorrupted: "):
        patchlab.patch(model, P("John gave a drink to", "Alice Mary gave a drink to", " Mary", " John"), target="resid_pre")
    with pytest.raises(PairError, match=r"answer 'Mary' is .* tokens.*Try ' Mary'"):
        patchlab.patch(model, P("John gave a drink to", "Mary gave a drink to", "Mary", " John"), target="resid_pre")
    with pytest.raises(PairError, match="wrong answer ' Johnny Walker' is"):
        patchlab.patch(model, P("John gave a drink to", "Mary gave a drink to", " Mary", " Johnny Walker"), target="resid_pre")
    with pytest.raises(PairError, match="empty"):
        patchlab.patch(model, P("", "Mary gave", " Mary", " John"), target="resid_pre")
    long = " John" * 80
    with pytest.raises(PairError, match="longer than the model's context"):
        patchlab.patch(model, P(long, " Mary" + long[5:], " Mary", " John"), target="resid_pre")
    with pytest.raises(PairError, match="Pair 2:"):
        patchlab.patch(model, [P("John gave a drink to", "Mary gave a drink to", " Mary", " John"),
                               P("x", "y", " Mary", " Mary")], target="resid_pre")


def test_generator_streams_one_event_per_layer(model, pair):
    gen = iter_patch(model, pair, target="attn_head_out_by_pos", metric="logit_diff")
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            result = stop.value
            break
    assert [e.layer for e in events] == list(range(model.cfg.n_layers))
    assert events[-1].done == events[-1].total == result.values.size
    # each event carries its own array: later events never mutate earlier ones
    assert np.isnan(events[0].values[1:]).all() and np.isfinite(events[0].values[0]).all()
    np.testing.assert_array_equal(events[-1].values, result.values)


def test_stop_flag_returns_the_finished_rows(model, pair):
    stop = threading.Event()
    gen = iter_patch(model, pair, target="resid_pre", stop=stop)
    first = next(gen)
    stop.set()
    with pytest.raises(StopIteration) as info:
        next(gen)
    res = info.value.value
    assert first.layer == 0
    assert res.meta["cancelled"] and not res.meta["complete"]
    assert np.isfinite(res.values[0]).all() and np.isnan(res.values[1:]).all()


def test_stop_inside_a_forward_pass_is_honoured(model, pair):
    """The generic path checks the flag between chunks and in its hook; the 4th check is the
    second chunk's hook, so the stop lands inside a forward pass of the first layer."""
    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        return calls["n"] > 3

    res = patchlab.patch(model, pair, target="resid_pre", stop=stop, batch_size=2, engine="generic")
    assert calls["n"] == 4
    assert res.meta["cancelled"] and np.isnan(res.values).all()


def test_result_metadata(model, pair):
    res = patchlab.patch(model, pair, target="attn_head_out_all_pos")
    m = res.meta
    for key in ("model", "processing", "target", "direction", "metric", "method", "pairs", "tokens",
                "baselines", "runs", "elapsed_s", "patchlab_version", "engine_path"):
        assert key in m, key
    assert m["baselines"] == {"clean": 1.0, "corrupted": 0.0}
    assert res.labels["head"][0] == "H0" and res.labels["layer"][-1] == f"L{model.cfg.n_layers - 1}"
    assert res.axes == ("layer", "head")
    noise = patchlab.patch(model, pair, target="attn_head_out_all_pos", direction="noise", metric="logit_diff")
    assert noise.meta["baselines"]["clean"] == pytest.approx(m["runs"]["clean"]["logit_diff"])


def test_pos_targets_need_equal_lengths_across_pairs(model):
    P = patchlab.PromptPair
    a = P("John gave a drink to", "Mary gave a drink to", " Mary", " John")
    b = P("Alice sees John, John gave a drink to", "Alice sees John, Mary gave a drink to", " Mary", " John")
    with pytest.raises(patchlab.InputError, match="same\\s+number of tokens"):
        patchlab.patch(model, [a, b], target="resid_pre")
    res = patchlab.patch(model, [a, b], target="attn_head_out_all_pos")  # no position axis: fine
    assert res.per_pair.shape[0] == 2


def test_a_prepared_context_serves_attribution_then_exact(model, pair):
    from patchlab.engine.context import prepare
    from patchlab.engine.sweep import run_to_end

    ctx = prepare(model, pair, target="attn_head_out_all_pos", method="exact", cache_base=True)
    est = run_to_end(iter_patch(model, pair, target="attn_head_out_all_pos", method="attribution", context=ctx))
    exact = run_to_end(iter_patch(model, pair, target="attn_head_out_all_pos", context=ctx))
    assert est.meta["method"] == "attribution" and exact.meta["method"] == "exact"
    np.testing.assert_allclose(exact.values, patchlab.patch(model, pair, target="attn_head_out_all_pos").values, atol=1e-5)
    np.testing.assert_allclose(est.values, patchlab.patch(model, pair, target="attn_head_out_all_pos",
                                                          method="attribution").values, atol=1e-5)
    with pytest.raises(patchlab.InputError, match="was made for target"):
        run_to_end(iter_patch(model, pair, target="resid_pre", context=ctx))
