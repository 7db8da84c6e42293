"""Modern architectures (issue 13): load, match TransformerLens, or refuse with a reason.

The default suite runs one position target per architecture on both exact engines, the GQA
key/value path, and the probe that refuses edits TransformerLens discards. The exhaustive
matrix (every target x architecture x engine, ~4 min on 2 shared cores) is ``slow`` and runs with PATCHLAB_ARCH_MATRIX=1
(``benchmarks/arch_table.py`` writes the same matrix to docs/architectures.md).
"""

import os

import numpy as np
import pytest
import tiny_models
from tl_reference import tl_reference

import patchlab
from patchlab.core.targets import TARGETS

TOL = 1e-4
PAIR = patchlab.PromptPair("John gave a drink to", "Mary gave a drink to", " Mary", " John")
# families the fast path must cover (issue 13); the others run on the hook path with a reason
FAST = {"llama3", "mistral", "qwen2", "qwen3", "phi3", "gemma2", "gemma3"}
_MODELS: dict = {}


@pytest.fixture(scope="module")
def modern(tmp_path_factory):
    folder = tmp_path_factory.mktemp("modern")

    def get(arch):
        if arch not in _MODELS:
            _MODELS[arch] = patchlab.load_model(str(tiny_models.build_modern(arch, folder)), device="cpu")
        return _MODELS[arch]

    yield get
    _MODELS.clear()


@pytest.mark.parametrize("arch", tiny_models.MODERN_ARCHS)
def test_resid_pre_matches_transformer_lens_on_both_engines(modern, arch):
    model = modern(arch)
    ref = tl_reference(model, [PAIR], "resid_pre")
    assert np.ptp(ref) > 1e-3  # the reference is not flat: a wrong engine would differ
    for engine in ("generic", "auto"):
        res = patchlab.patch(model, PAIR, target="resid_pre", metric="logit_diff", engine=engine)
        np.testing.assert_allclose(res.values, ref, atol=TOL, rtol=0)
        if engine == "auto":
            if arch in FAST:
                assert res.meta["engine_path"] == "fast-torch", res.meta["fallback_reason"]
            else:  # the hook path, and the record says why
                assert res.meta["engine_path"] == "generic-hooks"
                assert "does not implement" in res.meta["fallback_reason"]


@pytest.mark.parametrize("direction", ["denoise", "noise"])
@pytest.mark.parametrize("arch", ["gemma2", "gemma3"])
def test_gemma_runs_on_the_fast_path_and_matches_transformer_lens(modern, arch, direction):
    # post-norms, (1 + w) RMSNorm, sqrt(d) embedding scale, soft-caps, query_pre_attn_scalar,
    # alternating sliding/global layers (Gemma 3: per-layer rotary bases and q/k norms)
    model = modern(arch)
    # attn_out / mlp_out hooks sit after the post-norms, head outputs before them
    extra = ("attn_out", "mlp_out") if direction == "denoise" else ()
    for target in ("resid_pre", "attn_head_out_all_pos", "attn_head_out_by_pos", *extra):
        res = patchlab.patch(model, PAIR, target=target, metric="logit_diff", engine="auto", direction=direction)
        assert res.meta["engine_path"] == "fast-torch", res.meta["fallback_reason"]
        assert not res.meta["fallback_reason"]
        ref = tl_reference(model, [PAIR], target, direction=direction)
        assert np.ptp(ref) > 1e-3
        np.testing.assert_allclose(res.values, ref, atol=TOL, rtol=0)


@pytest.mark.parametrize("arch", ["gemma2", "gemma3"])
def test_gemma_sliding_layers_mask_far_keys_on_the_fast_path(modern, arch):
    # keys beyond the window only reach the output through the global layer: the per-layer
    # window must match TransformerLens key by key
    model = modern(arch)
    pair = patchlab.PromptPair("a b c d e f g h i j", "b c d e f g h i j a", " a", " b")
    res = patchlab.patch(model, pair, target="attn_head_k_by_pos", metric="logit_diff", engine="auto")
    assert res.meta["engine_path"] == "fast-torch", res.meta["fallback_reason"]
    assert res.values.shape[1] > tiny_models.WINDOW + 2
    np.testing.assert_allclose(res.values, tl_reference(model, [pair], "attn_head_k_by_pos"), atol=TOL, rtol=0)


@pytest.mark.parametrize("arch", ["mistral", "qwen2"])
def test_gqa_values_match_transformer_lens_and_are_labelled_by_kv_head(modern, arch):
    model = modern(arch)
    res = patchlab.patch(model, PAIR, target="attn_head_v_all_pos", metric="logit_diff", engine="fast")
    ref = tl_reference(model, [PAIR], "attn_head_v_all_pos")
    assert res.values.shape == ref.shape == (2, 2)  # 2 key/value heads, not 4 query heads
    np.testing.assert_allclose(res.values, ref, atol=TOL, rtol=0)
    assert res.labels["head"] == ["KV0 (H0-H1)", "KV1 (H2-H3)"]
    assert res.meta["kv_groups"] == {"KV0": [0, 1], "KV1": [2, 3]}
    assert "KV1 (H2-H3)" in res.to_csv()


def test_sliding_window_is_honoured_by_the_fast_path(modern):
    """Mistral's window (4) is shorter than the prompt: keys outside it must not be read."""
    model = modern("mistral")
    pair = patchlab.PromptPair("Alice sees John, John gave a drink to", "Alice sees John, Mary gave a drink to",
                               " Mary", " John")
    fast = patchlab.patch(model, pair, target="attn_head_k_by_pos", metric="logit_diff", engine="fast")
    generic = patchlab.patch(model, pair, target="attn_head_k_by_pos", metric="logit_diff", engine="generic")
    assert fast.values.shape[1] > tiny_models.WINDOW + 2
    np.testing.assert_allclose(fast.values, generic.values, atol=TOL, rtol=0)
    # a key more than a window before the last position cannot reach it in the last layer
    far = fast.values[-1, : fast.values.shape[1] - tiny_models.WINDOW]
    np.testing.assert_allclose(far, fast.meta["runs"]["corrupted"]["logit_diff"], atol=1e-6)


def test_pattern_edits_that_transformer_lens_discards_are_refused(modern):
    model = modern("gptj")
    with pytest.raises(patchlab.TargetUnavailableError, match=r"GPTJForCausalLM.*hook_pattern.*does not change"):
        patchlab.patch(model, PAIR, target="attn_head_pattern_all_pos")


def test_pattern_edits_that_reach_the_output_run_and_match_transformer_lens(modern):
    model = modern("llama3")
    res = patchlab.patch(model, PAIR, target="attn_head_pattern_all_pos", metric="logit_diff", engine="generic")
    ref = tl_reference(model, [PAIR], "attn_head_pattern_all_pos")
    np.testing.assert_allclose(res.values, ref, atol=TOL, rtol=0)


MATRIX = pytest.mark.skipif(not os.environ.get("PATCHLAB_ARCH_MATRIX"), reason="exhaustive: PATCHLAB_ARCH_MATRIX=1")


@pytest.mark.slow
@MATRIX
@pytest.mark.parametrize("target", [t for t in TARGETS if t != "resid_post"])
@pytest.mark.parametrize("arch", tiny_models.MODERN_ARCHS)
def test_every_target_matches_or_is_refused(modern, arch, target):
    model = modern(arch)
    for engine in ("generic", "auto"):
        try:
            res = patchlab.patch(model, PAIR, target=target, metric="logit_diff", engine=engine)
        except patchlab.TargetUnavailableError as exc:
            assert "not available" in str(exc)
            return
        np.testing.assert_allclose(res.values, tl_reference(model, [PAIR], target), atol=TOL, rtol=0)
