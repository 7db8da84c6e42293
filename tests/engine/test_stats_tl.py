"""PatchResult statistics against TransformerLens 4.3's PatchingResult on the same per-pair values.

Where the algorithms coincide (standard error, exact sign-flip enumeration) the numbers must be
equal; where both draw at random (bootstrap, Monte Carlo permutations; numpy vs torch
generators) they must agree in distribution.
"""

import numpy as np
import pandas as pd
import pytest
import torch
import transformer_lens.patching as tlp
from transformer_lens.patching import PatchingResult

import patchlab
from patchlab.core.metrics import aggregate
from patchlab.core.result import PatchResult
from patchlab.core.stats import pair_raw
from patchlab.engine.tokens import tokenize_pairs

SEVEN_TOKEN_PAIRS = [  # 7 tokens each with the tiny BPE tokenizer
    ("John gave a drink to", "Mary gave a drink to", " Mary", " John"),
    ("Mary gave a book to", "John gave a book to", " John", " Mary"),
    ("Alice gave a drink to", "Bob gave a drink to", " Alice", " Bob"),
    ("Anna gave a book to", "John gave a book to", " Anna", " John"),
]


def tl_result(raw, base=None):
    """A TransformerLens PatchingResult with per-example values: cells first, batch last."""
    values = torch.tensor(np.moveaxis(raw, 0, -1), dtype=torch.float64)
    return PatchingResult(values=values, axis_names=["layer", "pos"], index_df=pd.DataFrame(),
                          metric_names=["metric"], reduced=False,
                          baseline=None if base is None else torch.tensor(base, dtype=torch.float64))


def our_result(raw, base, source, metric):
    values, per_pair = aggregate(metric, raw, base, source)
    q = "logit_diff" if metric == "logit_diff_recovered" else metric
    runs = {"clean": {"per_pair": {q: source}}, "corrupted": {"per_pair": {q: base}}}
    return PatchResult(values=values, axes=("layer", "pos"), labels={}, per_pair=per_pair,
                       meta={"metric": metric, "direction": "denoise", "runs": runs})


@pytest.mark.parametrize("n", [2, 5, 12])
def test_stderr_and_exact_pvalues_equal_transformerlens(n):
    rng = np.random.default_rng(n)
    raw, base = rng.normal(0.5, 1, (n, 3, 4)), rng.normal(0, 0.5, n)
    raw[:, 0, 0] = base  # a cell the patch leaves unchanged: p = 1
    res = our_result(raw, base, base + 2.0, "logit_diff")
    ref = tl_result(raw, base)
    np.testing.assert_allclose(res.stderr, ref.stderr().numpy(), rtol=1e-12)
    np.testing.assert_array_equal(res.pvalues(), ref.permutation_pvalue().numpy())
    assert res.pvalues()[0, 0] == 1.0


def test_monte_carlo_pvalues_agree_with_transformerlens_in_distribution():
    rng = np.random.default_rng(7)
    n = 20
    raw, base = rng.normal(0.0, 1, (n, 2, 3)), np.zeros(n)
    raw += np.linspace(-0.6, 0.6, 6).reshape(2, 3)  # p from ~0.01 to ~1
    res = our_result(raw, base, base + 1, "logit_diff")
    ours = res.pvalues(n_permutations=20000, seed=1)
    theirs = tl_result(raw, base).permutation_pvalue(n_permutations=20000, seed=1).numpy()
    np.testing.assert_allclose(ours, theirs, atol=0.015)  # two estimates of one p: sd <= 0.0035 each


def test_bootstrap_ci_of_a_mean_agrees_with_transformerlens_in_distribution():
    rng = np.random.default_rng(8)
    n = 30
    raw = rng.gamma(2.0, 1.0, (n, 2, 2))  # skewed: percentile and normal intervals differ
    res = our_result(raw, np.zeros(n), np.ones(n), "answer_prob")
    lo, hi = res.bootstrap_ci(n_resamples=20000)
    tlo, thi = tl_result(raw).bootstrap_ci(n_resamples=20000)
    se = res.stderr
    np.testing.assert_allclose(lo, tlo.numpy(), atol=0.05 * se.max() * 4)
    np.testing.assert_allclose(hi, thi.numpy(), atol=0.05 * se.max() * 4)
    # both are close to mean -/+ 1.96 se; asymmetric for a skewed sample
    assert ((res.values - lo) < (hi - res.values)).mean() >= 0.75


@pytest.fixture(scope="module")
def gpt2(tiny_dir):
    return patchlab.load_model(str(tiny_dir / "gpt2"), device="cpu")


def test_a_real_sweep_matches_transformerlens_per_example_patching(gpt2):
    pairs = [patchlab.PromptPair(*p) for p in SEVEN_TOKEN_PAIRS]
    res = patchlab.patch(gpt2, pairs, target="resid_pre", metric="logit_diff_recovered")
    tps = tokenize_pairs(gpt2, pairs)
    clean = torch.cat([tp.clean for tp in tps])
    corrupted = torch.cat([tp.corrupted for tp in tps])
    rows = torch.arange(len(tps))
    ans = torch.tensor([tp.answer_id for tp in tps])
    wrong = torch.tensor([tp.wrong_id for tp in tps])

    def ld(logits):  # per example: reduce="none" keeps the batch axis
        return logits[rows, -1, ans] - logits[rows, -1, wrong]

    with torch.no_grad():
        clean_logits, clean_cache = gpt2.run_with_cache(clean)
        ref = tlp.get_act_patch_resid_pre(gpt2, corrupted, clean_cache, ld, reduce="none", baseline=True)
        clean_ld = ld(clean_logits)
    ref_raw = np.moveaxis(ref.values.double().numpy(), -1, 0)  # (pairs, layer, pos)
    np.testing.assert_allclose(pair_raw(res), ref_raw, atol=1e-4)
    np.testing.assert_allclose(res.per_pair, np.moveaxis(ref.normalized(clean_ld).double().numpy(), -1, 0), atol=1e-4)
    # 4 pairs: exact enumeration on both sides; only cells with a clear effect, since the tie
    # rule is relative to the observed mean and the two engines differ by ~1e-6
    ours, theirs = res.pvalues(), ref.permutation_pvalue().numpy()
    clear = np.abs(np.moveaxis(ref.effect().double().numpy(), -1, 0).mean(0)) > 1e-3
    assert clear.sum() >= 5
    np.testing.assert_array_equal(ours[clear], theirs[clear])
    norm = np.moveaxis(ref.normalized(clean_ld).double().numpy(), -1, 0)
    np.testing.assert_allclose(res.stderr, norm.std(0, ddof=1) / 2, atol=1e-4)
