"""Property tests: sessions, run records and prompt pairs never crash on bad input.

Whatever a hand-edited or truncated file holds, reading it either gives a valid object or
raises the user-facing error class (SessionFileError / PairError) with a message: never
KeyError, AttributeError, IndexError... Valid objects survive a save/load round trip.
"""

import json

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from patchlab.core.decomposition import DecomposeResult  # noqa: E402
from patchlab.core.errors import PairError, SessionFileError  # noqa: E402
from patchlab.core.pairs import PromptPair  # noqa: E402
from patchlab.core.result import PatchResult  # noqa: E402
from patchlab.core.session import Session, load_session  # noqa: E402

# reproducible in CI (a failure prints its example); modest counts keep the file to seconds
FUZZ = settings(max_examples=120, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

json_scalars = st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False) | st.text(max_size=8)
json_values = st.recursive(json_scalars, lambda kids: st.lists(kids, max_size=4)
                           | st.dictionaries(st.text(max_size=6), kids, max_size=4), max_leaves=12)
texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)


def patch_record() -> dict:
    values = np.arange(6, dtype=float).reshape(2, 3)
    values[1, 2] = np.nan
    res = PatchResult(values=values, axes=("layer", "pos"), labels={"layer": ["0", "1"], "pos": ["a", "b", "c"]},
                      per_pair=values[None], meta={"metric": "logit_diff", "direction": "denoise",
                                                   "runs": {"corrupted": {"logit_diff": -1.0}}})
    return json.loads(res.to_json())


def decompose_record() -> dict:
    res = DecomposeResult(component_labels=["embed", "0_attn_out", "bias"], components=np.ones((2, 3)),
                          heads=np.zeros((2, 1, 2)), lens_labels=["0_pre", "final_post"], logit_lens=np.ones((2, 2)),
                          total=np.array([3.0, 3.0]), runs={"clean": {"logit_diff": 3.0}, "corrupted": {}}, meta={})
    return json.loads(res.to_json())


def _paths(obj, prefix=()):
    """Every (path) to a value inside nested dicts/lists."""
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


@st.composite
def mutated(draw, base):
    """``base`` with a few values replaced by random JSON or deleted."""
    data = json.loads(json.dumps(base))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(data) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(json_values)
    return data


def _check_patch(res: PatchResult) -> None:
    assert isinstance(res.values, np.ndarray) and res.per_pair.shape[1:] == res.values.shape
    assert len(res.axes) == res.values.ndim
    res.to_csv()  # whatever loads can be exported
    res.top_cells(3)


@FUZZ
@given(mutated(patch_record()))
def test_a_damaged_patch_record_loads_or_says_what_is_wrong(data):
    try:
        res = PatchResult.from_dict(data)
    except SessionFileError as exc:
        assert str(exc)
        return
    _check_patch(res)


@FUZZ
@given(mutated(decompose_record()))
def test_a_damaged_decomposition_record_loads_or_says_what_is_wrong(data):
    try:
        res = DecomposeResult.from_dict(data)
    except SessionFileError as exc:
        assert str(exc)
        return
    res.to_csv()


@FUZZ
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_bytes_as_a_run_record_or_session_give_a_clear_error(tmp_path, payload):
    path = tmp_path / "x.json"
    path.write_bytes(payload)
    for loader in (PatchResult.load_json, DecomposeResult.load_json, load_session):
        try:
            loader(path)
        except SessionFileError as exc:
            assert str(exc)
        except Exception as exc:  # noqa: BLE001 - report which loader leaked what
            from patchlab.core.errors import PatchlabError

            assert isinstance(exc, PatchlabError), (loader, repr(exc))


pairs_st = st.builds(PromptPair, clean=texts, corrupted=texts, answer=texts, wrong=texts)


def _session_dict() -> dict:
    s = Session(model={"name": "toy-attn2"}, pairs=[PromptPair("a b", "c b", " x", " y")], current_pair=0,
                settings={"target": "resid_pre"})
    s.patch_result = PatchResult.from_dict(patch_record())
    s.decompose_result = DecomposeResult.from_dict(decompose_record())
    return json.loads(s.to_json())


@FUZZ
@given(mutated(_session_dict()))
def test_a_damaged_session_opens_or_says_what_is_wrong(data):
    try:
        s = Session.from_dict(data)
    except SessionFileError as exc:
        assert str(exc)
        return
    assert all(isinstance(p, PromptPair) for p in s.pairs)
    assert 0 <= s.current_pair <= max(0, len(s.pairs) - 1)
    if s.patch_result is not None:
        _check_patch(s.patch_result)
    json.loads(s.to_json())  # and it can be saved again


@FUZZ
@given(st.lists(pairs_st, max_size=4), st.dictionaries(st.text(max_size=8), json_scalars, max_size=4),
       st.integers(-3, 6))
def test_sessions_round_trip(tmp_path, pairs, settings_, current):
    s = Session(model={"name": "toy-attn2", "device": "cpu"}, pairs=pairs, current_pair=current,
                settings=settings_)
    back = load_session(s.save(tmp_path / "s.patchlab"))
    assert back.pairs == pairs and back.settings == settings_ and back.model == s.model
    assert back.current_pair == (max(0, min(current, len(pairs) - 1)) if pairs else 0)


@FUZZ
@given(st.dictionaries(st.sampled_from(["clean", "corrupted", "answer", "wrong", "name", "group", "x"]),
                       json_values, max_size=7) | json_values)
def test_pair_from_any_json_is_a_pair_or_a_pair_error(data):
    try:
        pair = PromptPair.from_dict(data)
        pair.check()
    except PairError as exc:
        assert str(exc)
        return
    assert all(isinstance(getattr(pair, f), str) and getattr(pair, f) for f in ("clean", "answer", "wrong"))
    assert pair.clean.strip() and pair.corrupted.strip() and pair.answer != pair.wrong


@FUZZ
@given(pairs_st)
def test_pair_check_accepts_exactly_the_well_formed_pairs(pair):
    """check() is the documented rule: non-blank prompts, non-empty distinct answers."""
    ok = bool(pair.clean.strip() and pair.corrupted.strip() and pair.answer and pair.wrong
              and pair.answer != pair.wrong and pair.clean != pair.corrupted)
    try:
        pair.check()
        assert ok, pair
    except PairError as exc:
        assert not ok and str(exc)

