"""Each metric's no-effect value, and ranking cells by their change from it."""

import numpy as np
import pytest

from patchlab.core.errors import InputError
from patchlab.core.metrics import METRICS, no_effect_value
from patchlab.core.result import PatchResult

RUNS = {
    "clean": {"logit_diff": 3.0, "answer_prob": 0.6, "answer_logprob": np.log(0.6), "wrong_prob": 0.1},
    "corrupted": {"logit_diff": -2.0, "answer_prob": 0.05, "answer_logprob": np.log(0.05), "wrong_prob": 0.7},
}


@pytest.mark.parametrize("direction,base", [("denoise", "corrupted"), ("noise", "clean")])
@pytest.mark.parametrize("metric", list(METRICS))
def test_no_effect_is_zero_for_recovered_and_the_unpatched_run_otherwise(metric, direction, base):
    got = no_effect_value(metric, direction, RUNS)
    if metric == "logit_diff_recovered":
        assert got == 0.0
    else:
        assert got == RUNS[base][metric]  # the patched run is the base run: its own value


def test_no_effect_without_the_runs_is_nan_and_bad_names_raise():
    assert np.isnan(no_effect_value("logit_diff", "denoise", None))
    assert no_effect_value("logit_diff_recovered", "noise", None) == 0.0
    with pytest.raises(InputError, match="metric"):
        no_effect_value("nope", "denoise", RUNS)
    with pytest.raises(InputError, match="direction"):
        no_effect_value("logit_diff", "sideways", RUNS)


def _result(values, metric, direction="denoise"):
    values = np.asarray(values, dtype=float)
    return PatchResult(values=values, axes=("layer", "pos"),
                       labels={"layer": ["0", "1"], "pos": ["a", "b", "c"]},
                       per_pair=values[None], meta={"metric": metric, "direction": direction,
                                                    "runs": RUNS})


def test_ranking_by_change_differs_from_ranking_by_value_for_raw_metrics():
    # denoising: the corrupted run's logit diff is -2; -2 everywhere means "no effect"
    res = _result([[-2.0, -2.0, 2.5], [-3.5, -2.0, np.nan]], "logit_diff")
    assert res.no_effect == -2.0
    np.testing.assert_allclose(res.change(), [[0, 0, 4.5], [-1.5, 0, np.nan]])
    # by |value| the no-effect cells (|-2| > 1.5) outrank a real effect; by |change| they come last
    by_value = [c for c, _ in res.top_cells(3, absolute=True)]
    assert by_value == [(1, 0), (0, 2), (0, 0)]
    by_change = res.top_cells(2, absolute=True, by="change")
    assert [c for c, _ in by_change] == [(0, 2), (1, 0)]
    assert [v for _, v in by_change] == [2.5, -3.5]  # values are reported as they are
    # signed: the largest increase first, NaN never ranked
    assert [c for c, _ in res.top_cells(10, by="change")][:1] == [(0, 2)]
    assert len(res.top_cells(10, by="change")) == 5


def test_recovered_metric_ranks_the_same_by_value_and_by_change():
    res = _result([[0.1, -0.9, 0.5], [0.0, 1.0, 0.2]], "logit_diff_recovered", "noise")
    assert res.no_effect == 0.0
    assert res.top_cells(6, absolute=True) == res.top_cells(6, absolute=True, by="change")


def test_top_cells_with_absolute_skip_nan_and_return_k():
    res = _result([[np.nan, 1.0, -4.0], [2.0, np.nan, 0.5]], "logit_diff_recovered")
    assert [c for c, _ in res.top_cells(3, absolute=True)] == [(0, 2), (1, 0), (0, 1)]
    with pytest.raises(InputError, match="change"):
        res.top_cells(3, by="size")
