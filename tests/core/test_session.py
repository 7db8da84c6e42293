import json

import numpy as np
import pytest

from patchlab.core.errors import SessionFileError
from patchlab.core.pairs import PromptPair
from patchlab.core.result import PatchResult
from patchlab.core.session import SESSION_FORMAT_VERSION, Session, load_session


def _result():
    values = np.array([[0.1, np.nan], [0.5, 1.0]])
    return PatchResult(values=values, axes=("layer", "pos"),
                       labels={"layer": ["L0", "L1"], "pos": ["a", "b"]},
                       per_pair=values[None], meta={"target": "resid_pre", "metric": "logit_diff"})


def test_round_trip(tmp_path):
    s = Session(model={"name": "toy-attn2", "device": "cpu"},
                pairs=[PromptPair("a b", "a c", " x", " y"), PromptPair("d", "e", " x", " y")],
                current_pair=1, settings={"target": "resid_pre"}, patch_result=_result())
    path = s.save(tmp_path / "s.patchlab")
    back = load_session(path)
    assert back.model == s.model and back.pairs == s.pairs and back.current_pair == 1
    assert back.settings == {"target": "resid_pre"}
    np.testing.assert_array_equal(back.patch_result.values, s.patch_result.values)
    assert back.patch_result.to_csv() == s.patch_result.to_csv()
    assert back.decompose_result is None and back.estimate_result is None
    s.estimate_result = _result()
    back = load_session(s.save(tmp_path / "e.patchlab"))
    np.testing.assert_array_equal(back.estimate_result.values, s.estimate_result.values)


@pytest.mark.parametrize("text, needle", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "not a patchlab session"),
    (json.dumps({"format": "patchlab.session", "format_version": SESSION_FORMAT_VERSION + 1,
                 "patchlab_version": "9.0"}), "Update patchlab"),
    (json.dumps({"format": "patchlab.session", "format_version": 1, "pairs": [{"clean": 1}]}),
     "malformed"),
    (json.dumps({"format": "patchlab.session", "format_version": 1, "pairs": [],
                 "results": {"patch": {"format": "patchlab.run", "format_version": 1,
                                       "kind": "patch", "shape": "x"}}}), "malformed"),
    ("", "not valid JSON"),
])
def test_bad_files_give_clear_errors(tmp_path, text, needle):
    path = tmp_path / "bad.patchlab"
    path.write_text(text)
    with pytest.raises(SessionFileError, match=needle):
        load_session(path)


def test_missing_file(tmp_path):
    with pytest.raises(SessionFileError, match="does not exist"):
        load_session(tmp_path / "nope.patchlab")
