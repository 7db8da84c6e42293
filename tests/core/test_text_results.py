"""Core result classes of the text and weight analyses (numpy only)."""

import json

import numpy as np
import pytest

from patchlab.core.ablation_result import clustered_ci
from patchlab.core.errors import SessionFileError
from patchlab.core.text_result import DocScores, TokenScores, span_colour
from patchlab.core.weights_result import WeightMatrix


def test_clustered_ci_with_one_token_per_document_is_the_classic_standard_error():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3))
    mean, lo, hi = clustered_ci(x, x ** 2, np.ones(50))
    se = x.std(axis=0, ddof=1) / np.sqrt(50)
    np.testing.assert_allclose(mean, x.mean(0))
    np.testing.assert_allclose(hi - mean, 1.96 * se)
    np.testing.assert_allclose(mean - lo, 1.96 * se)


def test_clustered_ci_is_wider_when_tokens_of_a_document_move_together():
    rng = np.random.default_rng(1)
    doc_effect = rng.normal(size=20)
    tokens = doc_effect[:, None] + 0.1 * rng.normal(size=(20, 30))  # 30 correlated tokens per doc
    sums, sq, counts = tokens.sum(1)[:, None], (tokens ** 2).sum(1)[:, None], np.full(20, 30.0)
    _, lo, hi = clustered_ci(sums, sq, counts)
    naive = 1.96 * tokens.std(ddof=1) / np.sqrt(tokens.size)
    assert (hi - lo)[0] / 2 > 3 * naive


def test_token_scores_top_context_and_round_trip():
    docs = [DocScores(["<bos>", "a", "b", "c"], np.array([np.nan, 1.0, 3.0, 2.0]), 0),
            DocScores(["<bos>", "d"], np.array([np.nan, 3.0]), 1, line=7)]
    res = TokenScores(docs, {"kind": "compare_models", "value_label": "diff"})
    top = res.top(3, width=1)
    assert [(h.doc, h.pos, h.value) for h in top] == [(0, 2, 3.0), (1, 1, 3.0), (0, 3, 2.0)]
    assert top[0].before == ["a"] and top[0].after == ["c"] and top[1].line == 7
    assert [h.pos for h in res.top(1, largest=False)] == [1]
    back = TokenScores.from_dict(json.loads(res.to_json()))
    assert back.docs[1].line == 7 and np.isnan(back.docs[0].values[0])
    with pytest.raises(SessionFileError):
        TokenScores.from_dict({"format": "patchlab.run", "format_version": 1, "kind": "patch"})


def test_span_colours_are_diverging_and_grey_for_undefined():
    assert span_colour(1.0, 1.0) == "#ff0000" and span_colour(-1.0, 1.0) == "#0000ff"
    assert span_colour(0.0, 1.0) == "#ffffff" and span_colour(float("nan"), 1.0) == "#eeeeee"


def test_weight_matrix_group_spans_and_csv():
    m = WeightMatrix(np.eye(3), ["a", "b", "c"], ["a", "b", "c"], ["x", "x", "y"], ["x", "x", "y"], {})
    assert m.group_spans() == [("x", 0, 2), ("y", 2, 3)]
    assert m.row_top("b", 1) == [("b", 1.0)]
    assert m.to_csv().splitlines()[1] == "0,a,x,0,a,x,1.0"
