"""Property tests for pair files (CSV, TSV, JSONL, JSON) and pasted rows.

Any bytes on disk load as checked pairs or raise PairError with a message; pairs that pass
``check()`` survive save -> load in every format, whatever characters they hold.
"""

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from patchlab.core.errors import PairError  # noqa: E402
from patchlab.core.pairs import PromptPair  # noqa: E402
from patchlab.core.pairset import load_pairs, parse_pairs_text, save_pairs  # noqa: E402

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
SUFFIXES = [".csv", ".tsv", ".jsonl", ".json", ".txt", ".dat"]

# the characters that break hand-rolled CSV/JSON code, plus anything printable
tricky = st.sampled_from(list(',"\'\t;\\{}[]# ') + ["\u00e9", "\u4e2d", "\U0001f600", "\ufeff"])
chars = st.characters(blacklist_categories=("Cs", "Cc")) | tricky
field = st.text(chars, max_size=12)
prompt = st.text(chars, min_size=1, max_size=20).filter(lambda t: t.strip())


def _is_valid(pair):
    try:
        pair.check()
        return True
    except PairError:
        return False


pairs_st = st.lists(st.builds(PromptPair, clean=prompt, corrupted=prompt, answer=field.filter(bool),
                              wrong=field.filter(bool), name=field, group=field).filter(_is_valid),
                    min_size=1, max_size=4)

# structured garbage: header-ish first lines, JSON-ish rows and raw bytes
header = st.sampled_from(["clean,corrupted,answer,wrong\n", "clean\tcorrupted\tanswer\twrong\n",
                          "Clean, Corrupted ,ANSWER,wrong,name\n", "clean,corrupted\n", ""])
row = st.lists(field, max_size=7).map(lambda cells: ",".join(cells) + "\n")
json_row = st.sampled_from(['{"clean": "a b", "corrupted": "c b", "answer": " x", "wrong": " y"}\n',
                            '{"clean": 1}\n', "[1, 2]\n", '{"clean": "a", "corrupted": "a", "answer": "x", "wrong": "y"}\n',
                            "{\n", "null\n", '{"clean": "a", "corrupted": "b", "answer": "", "wrong": "y"}\n'])
file_text = st.tuples(header, st.lists(row | json_row, max_size=5)).map(lambda t: (t[0] + "".join(t[1])).encode())
file_bytes = file_text | st.binary(max_size=200) | st.text(chars, max_size=200).map(lambda t: t.encode("utf-8"))


@FUZZ
@given(file_bytes, st.sampled_from(SUFFIXES))
def test_any_pair_file_loads_checked_pairs_or_says_what_is_wrong(tmp_path, payload, suffix):
    path = tmp_path / f"pairs{suffix}"
    path.write_bytes(payload)
    try:
        pairs = load_pairs(path)
    except PairError as exc:
        assert str(exc) and "Traceback" not in str(exc)
        return
    assert len(pairs) >= 1
    for p in pairs:
        assert isinstance(p, PromptPair)
        p.check()  # every loaded pair is valid


@FUZZ
@given(pairs_st, st.sampled_from([".csv", ".tsv", ".jsonl", ".json"]))
def test_valid_pairs_survive_save_and_load(tmp_path, pairs, suffix):
    path = save_pairs(pairs, tmp_path / f"out{suffix}")
    assert list(load_pairs(path)) == pairs


@FUZZ
@given(st.text(chars | st.sampled_from(["\n", "\r", "\t", ","]), max_size=200))
def test_any_pasted_text_gives_pairs_or_a_pair_error(text):
    try:
        pairs = parse_pairs_text(text)
    except PairError as exc:
        assert str(exc)
        return
    assert pairs and all(_is_valid(p) for p in pairs)


@FUZZ
@given(pairs_st)
def test_pasted_tab_separated_rows_round_trip(pairs):
    """A spreadsheet copy (tab-separated, header row) pastes back to the same pairs."""
    assume(all("\t" not in getattr(p, f) and "\n" not in getattr(p, f) and '"' not in getattr(p, f)
               for p in pairs for f in ("clean", "corrupted", "answer", "wrong", "name", "group")))
    text = "clean\tcorrupted\tanswer\twrong\tname\tgroup\n" + "".join(
        "\t".join((p.clean, p.corrupted, p.answer, p.wrong, p.name, p.group)) + "\n" for p in pairs)
    assert parse_pairs_text(text) == pairs
