"""Effects (total / direct / indirect) and the neuron screen: identities any correct engine obeys,
hand references from the bridge's cache, and the toy language's ground truth."""

import numpy as np
import pytest
import torch

import patchlab
from patchlab.core.errors import InputError, TargetUnavailableError
from patchlab.core.neurons import NeuronResult
from patchlab.core.result import PatchResult
from patchlab.engine.decompose import _direction
from patchlab.engine.effects import effects
from patchlab.engine.neurons import neurons
from patchlab.engine.paths import path_patch
from patchlab.engine.tokens import tokenize_pairs
from patchlab.toy.prevtoken import prev_token_pairs

TOL = 1e-4


@pytest.fixture(scope="module")
def attn2():
    return patchlab.load_model("toy-attn2")


@pytest.fixture(scope="module")
def solu1():
    return patchlab.load_model("toy-solu1")


def test_previous_token_head_acts_through_induction_keys(attn2):
    pairs = prev_token_pairs(8)
    eff = effects(attn2, pairs, components="heads")
    assert eff.axes == ("effect", "component") and eff.labels["effect"] == ["total", "direct", "indirect"]
    c = eff.labels["component"].index("L0H3")
    total, direct, indirect = eff.values[:, c]
    assert total > 0.5  # the previous-token head restores most of the induction answer
    assert abs(direct) < 0.1 * abs(total)
    assert indirect == pytest.approx(total - direct)
    k = path_patch(attn2, pairs, "L0H3", "k").values[1]
    q = path_patch(attn2, pairs, "L0H3", "q").values[1]
    v = path_patch(attn2, pairs, "L0H3", "v").values[1]
    assert k.sum() > 0.5 * total  # the induction heads' keys carry most of it
    assert k[3] == k.max()  # L1H3, the card's induction head
    assert np.abs(q).max() < 0.05 * total and np.abs(v).max() < 0.05 * total


def test_last_layer_direct_equals_total(attn2, solu1):
    """Nothing reads a last-layer head (attention-only) or the last MLP after it: direct == total."""
    pairs = prev_token_pairs(2, seed=1)
    eff = effects(attn2, pairs, components="heads", metric="logit_diff")
    last = [i for i, lab in enumerate(eff.labels["component"]) if lab.startswith("L1")]
    np.testing.assert_allclose(eff.values[0, last], eff.values[1, last], atol=TOL)
    assert np.abs(eff.values[0, last] - eff.meta["runs"]["corrupted"]["logit_diff"]).max() > 0.1
    vo = [e.pair for e in patchlab.examples(solu1) if e.rule == "verbobj"][:2]
    eff = effects(solu1, vo, components="all", metric="logit_diff")
    m = eff.labels["component"].index("MLP0")
    assert eff.values[0, m] == pytest.approx(eff.values[1, m], abs=TOL)


def test_total_equals_activation_patching(strong_models, pair):
    """Total effect of a head = patching its output at all positions (checked against TL in test_parity)."""
    model = strong_models["neox"]
    eff = effects(model, pair, components="heads", metric="logit_diff", direction="noise")
    ref = patchlab.patch(model, pair, target="attn_head_out_all_pos", metric="logit_diff", direction="noise")
    np.testing.assert_allclose(eff.values[0], ref.values.ravel(), atol=TOL)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_frozen_direct_effects_match_dla_of_the_difference(strong_models, pair, arch):
    """Direct effects with the final norm frozen = DLA (TL's apply_ln_to_stack, base cache) of source - base."""
    model = strong_models[arch]
    eff = effects(model, pair, components="all", metric="logit_diff", freeze_ln=True)
    tp = tokenize_pairs(model, [pair])[0]
    with torch.no_grad():
        _, sc = model.run_with_cache(tp.clean)
        _, bc = model.run_with_cache(tp.corrupted)
        d = _direction(model, tp.answer_id, tp.wrong_id).resid
        heads = sc.stack_head_results(layer=-1, pos_slice=-1) - bc.stack_head_results(layer=-1, pos_slice=-1)
        L = model.cfg.n_layers
        mlps = torch.stack([sc[f"blocks.{i}.hook_mlp_out"][:, -1] - bc[f"blocks.{i}.hook_mlp_out"][:, -1] for i in range(L)])
        ref_h = (bc.apply_ln_to_stack(heads, layer=-1, pos_slice=-1)[:, 0].double() @ d).numpy()
        ref_m = (bc.apply_ln_to_stack(mlps, layer=-1, pos_slice=-1)[:, 0].double() @ d).numpy()
    base = eff.meta["runs"]["corrupted"]["logit_diff"]
    labels = eff.labels["component"]
    ours_h = np.array([eff.values[1, labels.index(f"L{i // 4}H{i % 4}")] for i in range(len(ref_h))]) - base
    ours_m = np.array([eff.values[1, labels.index(f"MLP{i}")] for i in range(L)]) - base
    np.testing.assert_allclose(ours_h, ref_h, atol=TOL)
    np.testing.assert_allclose(ours_m, ref_m, atol=TOL)
    assert np.abs(ref_h).max() > 1e-2


def test_effects_record_round_trips(attn2, tmp_path):
    eff = effects(attn2, prev_token_pairs(1), components="heads")
    back = PatchResult.load_json(eff.save_json(tmp_path / "e.json"))
    np.testing.assert_allclose(back.values, eff.values)
    csv = eff.to_csv().splitlines()
    assert csv[0].startswith("effect,effect_label,component,component_label") and len(csv) == 1 + 3 * 8


def test_verbobj_heads_work_through_the_mlp(solu1):
    """toy-solu1: the activity is fetched by one head and mapped to its venue by the MLP."""
    vo = [e.pair for e in patchlab.examples(solu1) if e.rule == "verbobj"]
    eff = effects(solu1, vo, components="all")
    labels = eff.labels["component"]
    h = int(np.argmax(eff.values[0, :4]))
    total, direct, indirect = eff.values[:, h]
    assert total > 0.5 and indirect > 0.9 * total  # acts through the MLP, not directly
    into_mlp = path_patch(solu1, vo, labels[h], "mlp").values[0]
    assert into_mlp > 0.8 * total
    assert eff.values[1, labels.index("MLP0")] > 0.5  # the MLP acts directly


def test_neuron_screen_exact_matches_hook_patching(strong_models, pair):
    """Exact top-k from the plain-torch path = the hook-based mlp_post_neuron sweep (bridge)."""
    model = strong_models["llama"]  # gated MLP: the neuron is act(gate) * up
    res = neurons(model, pair, 1, k=6, metric="logit_diff")
    ref = patchlab.patch(model, pair, target="mlp_post_neuron", metric="logit_diff", engine="generic")
    assert ref.axes == ("layer", "neuron") and ref.labels["neuron"][3] == "N3"
    np.testing.assert_allclose(res.exact[res.top], ref.values[1, res.top], atol=TOL)
    assert np.isnan(np.delete(res.exact, res.top)).all()
    est = patchlab.patch(model, pair, target="mlp_post_neuron", metric="logit_diff", method="attribution")
    np.testing.assert_allclose(res.estimate, est.values[1], atol=TOL)
    # top neurons are the largest estimated changes
    change = np.abs(res.estimate - res.meta["unpatched"])
    assert change[res.top].min() >= np.delete(change, res.top).max()


def test_neuron_by_pos_target_matches_hand_hook(strong_models, pair):
    model = strong_models["gpt2"]
    ref = patchlab.patch(model, pair, target="mlp_post_neuron_by_pos", metric="logit_diff")
    tp = tokenize_pairs(model, [pair])[0]
    with torch.no_grad():
        _, sc = model.run_with_cache(tp.clean)
        src = sc["blocks.2.mlp.hook_post"]

        def hook(act, hook):
            act = act.clone()
            act[0, -1, 5] = src[0, -1, 5]
            return act

        logits = model.run_with_hooks(tp.corrupted, fwd_hooks=[("blocks.2.mlp.hook_post", hook)])
    want = float(logits[0, -1, tp.answer_id] - logits[0, -1, tp.wrong_id])
    assert ref.values[2, tp.n_pos - 1, 5] == pytest.approx(want, abs=TOL)


@pytest.mark.parametrize("arch", ["gpt2", "neox", "llama"])
def test_neuron_dla_sums_to_mlp_dla_minus_bias(strong_models, pair, arch):
    model = strong_models[arch]
    res = neurons(model, pair, 2, k=0)
    dec = patchlab.decompose(model, pair)
    mlp = dec.components[0][dec.component_labels.index("2_mlp_out")]
    tp = tokenize_pairs(model, [pair])[0]
    b_out = getattr(model.blocks[2].mlp, "b_out", None)
    bias = 0.0
    if b_out is not None:
        with torch.no_grad():
            _, cache = model.run_with_cache(tp.clean)
            d = _direction(model, tp.answer_id, tp.wrong_id).resid
            stack = b_out.detach().reshape(1, 1, -1).expand(1, 1, -1).clone()
            bias = float(cache.apply_ln_to_stack(stack, layer=-1, pos_slice=-1)[0, 0].double() @ d)
    assert res.dla.shape == (model.cfg.d_mlp,)
    assert res.dla.sum() + bias == pytest.approx(mlp, abs=TOL)


def test_verbobj_top_neurons_promote_venues(solu1, tmp_path):
    from patchlab.toy.language import VENUE_OF

    vo = [e.pair for e in patchlab.examples(solu1) if e.rule == "verbobj"]
    res = neurons(solu1, vo, 0, k=5)
    venues = set(VENUE_OF.values())
    top3 = res.top[:3]
    assert all(res.exact[n] > 0.05 for n in top3)
    for n in top3:
        promoted = [t.strip() for t, _ in res.tokens[str(n)]["promoted"]]
        assert sum(t in venues for t in promoted) >= 3
    back = NeuronResult.load_json(res.save_json(tmp_path / "n.json"))
    assert back.top == res.top and np.allclose(back.dla, res.dla)
    assert res.to_csv().splitlines()[0].startswith("neuron,neuron_label,estimate_")


def test_bad_input(strong_models, attn2, pair):
    model = strong_models["gpt2"]
    with pytest.raises(InputError, match="outside the model"):
        neurons(model, pair, 9)
    with pytest.raises(InputError, match="k must be"):
        neurons(model, pair, 0, k=-1)
    with pytest.raises(TargetUnavailableError, match="attention-only"):
        neurons(attn2, prev_token_pairs(1), 0)
    with pytest.raises(TargetUnavailableError, match="attention-only"):
        effects(attn2, prev_token_pairs(1), components="mlps")
    with pytest.raises(InputError, match="Unknown components"):
        effects(model, pair, components="layers")
    from patchlab.engine.neurons import output_tokens

    with pytest.raises(InputError, match="out of range"):
        output_tokens(model, 0, [model.cfg.d_mlp])
