import csv
import io
import json

import numpy as np
import pytest

from patchlab.core.errors import InputError, PairError, PatchlabError, SessionFileError
from patchlab.core.io import atomic_write_text
from patchlab.core.metrics import aggregate, normalise
from patchlab.core.pairs import PromptPair
from patchlab.core.result import PatchResult
from patchlab.core.targets import TARGETS, get_target


def make_result(n_pairs=2):
    rng = np.random.default_rng(0)
    values = rng.normal(size=(2, 3, 4))
    values[1, 2, 3] = np.nan  # not computed yet
    return PatchResult(
        values=values,
        axes=("layer", "pos", "head"),
        labels={"layer": ["L0", "L1"], "pos": ["<bos>", " John", " gave"], "head": ["H0", "H1", "H2", "H3"]},
        per_pair=rng.normal(size=(n_pairs, 2, 3, 4)),
        meta={"target": "attn_head_out_by_pos", "metric": "logit_diff", "direction": "denoise"},
    )


def test_csv_is_tidy_one_row_per_cell():
    res = make_result()
    rows = list(csv.DictReader(io.StringIO(res.to_csv())))
    assert len(rows) == 24
    # 2 pairs: statistics columns follow; p and q need per-pair baselines this result lacks
    assert rows[0].keys() == {"layer", "layer_label", "pos", "pos_label", "head", "head_label", "logit_diff",
                              "stderr", "ci_low", "ci_high"}
    r = rows[1 * 12 + 2 * 4 + 1]
    assert (r["layer"], r["pos_label"], r["head_label"]) == ("1", " gave", "L1H1")
    assert float(r["logit_diff"]) == res.values[1, 2, 1]
    assert rows[-1]["logit_diff"] == ""  # NaN -> empty


def test_json_record_round_trip(tmp_path):
    res = make_result()
    path = res.save_json(tmp_path / "run.json")
    data = json.loads(path.read_text())
    assert data["format"] == "patchlab.run" and data["values"][1][2][3] is None
    back = PatchResult.load_json(path)
    np.testing.assert_array_equal(back.values, res.values)
    np.testing.assert_array_equal(back.per_pair, res.per_pair)
    assert back.labels == res.labels and back.axes == res.axes and back.meta == res.meta


@pytest.mark.parametrize("payload,match", [
    ("{not json", "not valid JSON"),
    ('{"format": "other"}', "not a patchlab run record"),
    ('{"format": "patchlab.run", "format_version": 99, "kind": "patch"}', "newer|Update patchlab"),
    ('{"format": "patchlab.run", "format_version": 1, "kind": "patch", "shape": [2]}', "malformed"),
])
def test_bad_records_give_clear_errors(tmp_path, payload, match):
    path = tmp_path / "bad.json"
    path.write_text(payload)
    with pytest.raises((SessionFileError, PatchlabError), match=match):
        PatchResult.load_json(path)


def test_top_cells_ignore_nan():
    res = make_result()
    cells = res.top_cells(3)
    assert len(cells) == 3 and cells[0][1] == np.nanmax(res.values)


def test_recovered_metric_is_ratio_of_means():
    raw = np.array([[1.0, 3.0], [2.0, 5.0]])  # two pairs, two cells
    base, src = np.array([0.0, 1.0]), np.array([2.0, 5.0])
    values, per_pair = aggregate("logit_diff_recovered", raw, base, src)
    np.testing.assert_allclose(values, (raw.mean(0) - 0.5) / (3.5 - 0.5))
    np.testing.assert_allclose(per_pair[1], (raw[1] - 1.0) / 4.0)
    v2, _ = aggregate("answer_prob", raw, base, src)
    np.testing.assert_allclose(v2, raw.mean(0))
    assert np.isnan(normalise(1.0, 2.0, 2.0))


def test_prompt_pair_checks():
    PromptPair("a b", "c d", " x", " y").check()
    with pytest.raises(PairError, match="clean prompt is empty"):
        PromptPair("  ", "c", "x", "y").check()
    with pytest.raises(PairError, match="corrupted prompt is empty"):
        PromptPair("a", "", "x", "y").check()
    with pytest.raises(PairError, match="both"):
        PromptPair("a", "b", " x", " x").check()
    with pytest.raises(PairError, match="needs the fields"):
        PromptPair.from_dict({"clean": "a"})


def test_targets_follow_transformer_lens_axis_order():
    assert get_target("attn_head_out_by_pos").axes == ("layer", "pos", "head")
    assert get_target("attn_head_pattern_by_pos").axes == ("layer", "head", "pos")
    assert len(TARGETS) == 17
    with pytest.raises(InputError, match="Unknown target"):
        get_target("resid")


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "out.csv"
    atomic_write_text(path, "old")
    import os

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(PatchlabError, match="No space left"):
        atomic_write_text(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]  # no temp file left behind
    with pytest.raises(PatchlabError, match="does not exist"):
        atomic_write_text(tmp_path / "missing" / "x.csv", "x")


def test_atomic_write_follows_the_umask(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "fig.csv", "x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
