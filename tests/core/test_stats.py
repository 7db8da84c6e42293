"""Statistics over pairs on PatchResult, checked against hand computations and identities."""

import csv
import io
import itertools
import json

import numpy as np
import pytest

from patchlab.core.errors import InputError
from patchlab.core.io import dump_json
from patchlab.core.metrics import aggregate
from patchlab.core.result import PatchResult
from patchlab.core.stats import bh_qvalues, bootstrap_draws, sign_flip_pvalues


def make(raw, base, source, metric="logit_diff_recovered", direction="denoise", keep_raw=False):
    """A result as the engine builds it: aggregate() of per-pair raw values plus per-pair baselines."""
    raw = np.asarray(raw, dtype=float)
    base, source = np.asarray(base, dtype=float), np.asarray(source, dtype=float)
    values, per_pair = aggregate(metric, raw, base, source)
    q = "logit_diff" if metric == "logit_diff_recovered" else metric
    src_run, base_run = ("clean", "corrupted") if direction == "denoise" else ("corrupted", "clean")
    runs = {src_run: {"per_pair": {q: source}}, base_run: {"per_pair": {q: base}}}
    shape = values.shape
    labels = {"layer": [f"L{i}" for i in range(shape[0])]}
    axes = ("layer",)
    if len(shape) > 1:
        axes = ("layer", "pos")
        labels["pos"] = [f"t{i}" for i in range(shape[1])]
    return PatchResult(values=values, axes=axes, labels=labels, per_pair=per_pair,
                       meta={"metric": metric, "direction": direction, "runs": runs,
                             "pairs": [{"name": f"p{i}"} for i in range(len(base))]},
                       per_pair_raw=raw if keep_raw else None)


def test_stderr_by_hand():
    res = make([[1.0, 0.0], [3.0, 0.0], [5.0, 3.0]], [0, 0, 0], [1, 1, 1], metric="logit_diff")
    # column 0: mean 3, deviations -2, 0, 2 -> var (4+0+4)/2 = 4 -> sd 2 -> se 2/sqrt(3)
    np.testing.assert_allclose(res.stderr, [2 / np.sqrt(3), np.sqrt(3) / np.sqrt(3)])
    one = make([[1.0, 2.0]], [0], [1], metric="logit_diff")
    assert one.stderr.shape == (2,) and np.isnan(one.stderr).all()


def test_bootstrap_of_the_ratio_of_means_on_two_pairs_reaches_the_exact_support():
    # two pairs: resamples are {0,0} (p=1/4), {0,1} (1/2), {1,1} (1/4); the 2.5% and 97.5%
    # quantiles fall inside the outer atoms, which are the single-pair ratios
    raw, base, source = [[2.0], [1.0]], [0.0, 0.5], [4.0, 1.5]
    res = make(raw, base, source)
    low, high = res.bootstrap_ci(n_resamples=4000)
    r0, r1 = (2 - 0) / (4 - 0), (1 - 0.5) / (1.5 - 0.5)
    mixed = (1.5 - 0.25) / (2.75 - 0.25)  # the ratio of means of the two, as values shows
    assert res.values[0] == pytest.approx(mixed)
    assert low[0] == pytest.approx(min(r0, r1)) and high[0] == pytest.approx(max(r0, r1))
    # the ratio of means is not the mean of per-pair ratios: the interval centre proves which
    draws = bootstrap_draws(np.array(raw), np.array(base), np.array(source), n_resamples=4000)
    assert set(np.round(np.unique(draws), 12)) == set(np.round([r0, r1, mixed], 12))


def test_bootstrap_rebuilds_raw_values_when_the_engine_did_not_keep_them():
    rng = np.random.default_rng(3)
    raw, base, source = rng.normal(1, 1, (7, 2, 3)), rng.normal(0, 0.2, 7), rng.normal(3, 0.3, 7)
    kept, rebuilt = make(raw, base, source, keep_raw=True), make(raw, base, source)
    for a, b in zip(kept.bootstrap_ci(seed=5), rebuilt.bootstrap_ci(seed=5)):
        np.testing.assert_allclose(a, b, rtol=1e-10)
    lo, hi = kept.bootstrap_ci()
    assert (lo <= kept.values).all() and (kept.values <= hi).all()
    assert lo.shape == kept.shape


def test_bootstrap_of_a_mean_metric_is_seeded_and_narrows_with_confidence():
    rng = np.random.default_rng(0)
    res = make(rng.normal(size=(20, 3)), np.zeros(20), np.ones(20), metric="answer_prob")
    a, b = res.bootstrap_ci(seed=1), res.bootstrap_ci(seed=1)
    np.testing.assert_array_equal(a[0], b[0])
    lo50, hi50 = res.bootstrap_ci(confidence=0.5)
    lo95, hi95 = res.bootstrap_ci(confidence=0.95)
    assert (lo95 <= lo50).all() and (hi50 <= hi95).all()
    with pytest.raises(InputError):
        res.bootstrap_ci(confidence=95)


def test_exact_sign_flip_pvalue_by_hand():
    # effects 1, 2, 3: observed mean 2; sign patterns give sums +-6, +-4, +-2, +-0 (twice each
    # of 2 and 4): only the two patterns with |sum| = 6 reach |mean| >= 2 -> p = 2/8
    assert sign_flip_pvalues(np.array([1.0, 2.0, 3.0]))[()] == 0.25
    # effects 1, -1: every pattern has |mean| 0 or 1 >= 0 -> p = 1
    assert sign_flip_pvalues(np.array([1.0, -1.0]))[()] == 1.0


def test_pvalues_test_the_change_from_the_base_run_in_raw_units():
    base, source = np.array([1.0, 2.0, 0.0]), np.array([5.0, 3.0, 4.0])
    raw = base[:, None] + np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    res = make(raw, base, source)
    p = res.pvalues()
    assert p[0] == 0.25  # effects 1, 2, 3 as above
    assert p[1] == 1.0   # no change at all
    noise = make(raw, base, source, direction="noise")  # base is the clean run there
    assert noise.pvalues()[0] == 0.25


def test_monte_carlo_pvalues_agree_with_exact_enumeration():
    rng = np.random.default_rng(4)
    effects = rng.normal(0.3, 1.0, size=(14, 5))
    exact = sign_flip_pvalues(effects, exact_max_n=14)  # all 16384 patterns
    mc = sign_flip_pvalues(effects, n_permutations=20000, seed=2)
    np.testing.assert_allclose(mc, exact, atol=0.015)  # 3 sd of a 20000-draw estimate
    assert (mc > 0).all()  # (hits + 1) / (n + 1): never exactly zero


def test_bh_qvalues_by_definition_and_nan_cells():
    p = np.array([[0.01, 0.04], [0.03, np.nan], [0.2, 0.5]])
    q = bh_qvalues(p)
    finite = p[np.isfinite(p)]
    m = finite.size
    for (i, j), pv in np.ndenumerate(p):
        if np.isnan(pv):
            assert np.isnan(q[i, j])
            continue
        # q_i = min over p_j >= p_i of p_j * m / rank_j
        want = min(min(1.0, pj * m / (np.sum(finite <= pj))) for pj in finite if pj >= pv)
        assert q[i, j] == pytest.approx(want)
    # by hand: sorted p .01 .03 .04 .2 .5 (m = 5) -> .05 .075 .0667 .25 .5 -> running min from the top
    np.testing.assert_allclose(q[np.isfinite(q)], [0.05, 0.2 / 3, 0.2 / 3, 0.25, 0.5])


def test_significant_mask_follows_the_qvalues():
    rng = np.random.default_rng(1)
    n = 10
    effect = np.zeros((n, 4))
    effect[:, 0] = rng.normal(3, 0.1, n)  # clearly non-zero
    effect[:, 1] = rng.normal(0, 1, n)
    res = make(effect, np.zeros(n), np.full(n, 5.0), metric="logit_diff")
    sig = res.significant(0.05)
    assert sig.dtype == bool and sig[0] and not sig[2]  # column 2: all zero, p = 1
    np.testing.assert_array_equal(sig, res.qvalues() <= 0.05)


def test_results_without_baselines_fall_back_or_say_why():
    res = make([[0.5], [0.7]], [0, 0], [1, 1])
    res.meta.pop("runs")
    assert np.isfinite(res.pvalues()).all()  # per-pair recovered values: the base run is 0
    raw = make([[0.5], [0.7]], [0, 0], [1, 1], metric="logit_diff")
    raw.meta.pop("runs")
    with pytest.raises(InputError, match="baselines"):
        raw.pvalues()
    assert "p" not in raw.to_csv().splitlines()[0].split(",")  # left out, not guessed


def test_csv_has_statistics_columns_from_two_pairs_and_a_long_per_pair_form():
    rng = np.random.default_rng(2)
    res = make(rng.normal(1, 1, (3, 2, 2)), rng.normal(0, 0.1, 3), rng.normal(2, 0.1, 3))
    rows = list(csv.DictReader(io.StringIO(res.to_csv())))
    assert list(rows[0])[-5:] == ["stderr", "ci_low", "ci_high", "p", "q"]
    lo, hi = res.bootstrap_ci()
    r = rows[1 * 2 + 0]  # layer 1, pos 0
    assert float(r["ci_low"]) == lo[1, 0] and float(r["p"]) == res.pvalues()[1, 0]
    assert float(r["stderr"]) == pytest.approx(np.std(res.per_pair[:, 1, 0], ddof=1) / np.sqrt(3))
    long = list(csv.DictReader(io.StringIO(res.to_csv(per_pair=True))))
    assert len(long) == 3 * 4
    hit = [x for x in long if x["pair"] == "2" and x["layer"] == "1" and x["pos"] == "1"][0]
    assert hit["pair_name"] == "p2" and float(hit["logit_diff_recovered"]) == res.per_pair[2, 1, 1]
    single = make([[1.0]], [0.0], [2.0])
    assert list(csv.DictReader(io.StringIO(single.to_csv())))[0].keys() == {"layer", "layer_label", "logit_diff_recovered"}


def test_json_keeps_raw_values_and_old_records_still_load(tmp_path):
    rng = np.random.default_rng(5)
    res = make(rng.normal(size=(3, 2)), np.zeros(3), np.ones(3) * 2, keep_raw=True)
    back = PatchResult.load_json(res.save_json(tmp_path / "r.json"))
    np.testing.assert_allclose(back.per_pair_raw, res.per_pair_raw)
    np.testing.assert_allclose(back.pvalues(), res.pvalues())
    old = res.to_dict()
    old.pop("per_pair_raw")
    old_res = PatchResult.from_dict(json.loads(dump_json(old)))
    assert old_res.per_pair_raw is None
    for a, b in zip(old_res.bootstrap_ci(), res.bootstrap_ci()):
        np.testing.assert_allclose(a, b, rtol=1e-10)


def test_exact_enumeration_visits_every_sign_pattern_once():
    # identity: with one effect per pair equal to 2**i, every pattern gives a distinct mean
    effects = np.array([2.0 ** i for i in range(5)])
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=5)))
    assert len(set(signs @ effects)) == 32
    assert sign_flip_pvalues(effects)[()] == 2 / 32


def test_float_noise_where_a_patch_changes_nothing_is_not_significant():
    # 12 pairs whose patched run equals the base run up to 1e-7 of float32 noise, all one sign:
    # a bare sign-flip test would give p = 2/4096; the result treats them as no change
    n = 12
    base, source = np.linspace(-1, 1, n), np.linspace(-1, 1, n) + 3.0
    raw = np.stack([base + 1e-7, base + 1.0 + 0.1 * np.arange(n)], axis=1)  # cell 0 noise, cell 1 real
    res = make(raw, base, source, metric="logit_diff")
    assert sign_flip_pvalues(raw[:, 0] - base)[()] == pytest.approx(2 / 4096)
    p = res.pvalues()
    assert p[0] == 1.0 and p[1] == pytest.approx(2 / 4096)
    assert res.significant().tolist() == [False, True]
