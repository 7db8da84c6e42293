"""Pair-set files and pasted rows: round trips, and a clear message for each kind of bad input."""

import json

import pytest

import patchlab
from patchlab.core.errors import PairError
from patchlab.core.pairs import PromptPair
from patchlab.core.pairset import (
    group_by_length,
    iter_pairs,
    load_pairs,
    mixed_length_message,
    parse_pairs_text,
    save_pairs,
)

PAIRS = [
    PromptPair("When John and Mary went", "When John and Anna went", " Mary", " John", name="ioi-1"),
    PromptPair('a, "quoted" b\tc', "a, other b\tc", " x", " y", group="odd"),
    PromptPair("Über café", "Über thé", " ja", " nein"),
]


@pytest.mark.parametrize("suffix", ["csv", "tsv", "jsonl", "json"])
def test_round_trip_every_format(tmp_path, suffix):
    path = save_pairs(PAIRS, tmp_path / f"pairs.{suffix}")
    assert load_pairs(path) == PAIRS  # leading spaces, quotes, tabs, commas and UTF-8 survive


def test_csv_written_by_hand_with_optional_columns_in_any_order(tmp_path):
    (tmp_path / "p.csv").write_text("Group,wrong,answer,corrupted,clean\ng1, y, x,a c,a b\n", encoding="utf-8")
    assert load_pairs(tmp_path / "p.csv") == [PromptPair("a b", "a c", " x", " y", group="g1")]


def test_jsonl_accepts_the_examples_layout_and_blank_lines(tmp_path):
    rows = [{"pair": {"clean": "a b", "corrupted": "a c", "answer": " x", "wrong": " y"}}, {},
            {"clean": "d b", "corrupted": "d c", "answer": " x", "wrong": " y", "name": "two"}]
    text = "\n".join(json.dumps(r) for r in rows if r) + "\n\n"
    (tmp_path / "p.jsonl").write_text(text)
    got = load_pairs(tmp_path / "p.jsonl")
    assert [p.name for p in got] == ["", "two"]
    assert got.lines == [1, 2]


def test_old_dicts_without_name_or_group_still_load_and_save_without_them():
    old = {"clean": "a b", "corrupted": "a c", "answer": " x", "wrong": " y"}
    pair = PromptPair.from_dict(old)
    assert (pair.name, pair.group) == ("", "")
    assert pair.to_dict() == old
    assert PromptPair.from_dict(PAIRS[0].to_dict()) == PAIRS[0]


def test_identical_prompts_are_a_pair_error():
    with pytest.raises(PairError, match="identical"):
        PromptPair("a b", "a b", " x", " y").check()


def test_missing_column_names_it(tmp_path):
    (tmp_path / "p.csv").write_text("clean,corrupted,wrong\na b,a c, y\n")
    with pytest.raises(PairError, match=r"no column 'answer'.*found 'clean', 'corrupted', 'wrong'"):
        load_pairs(tmp_path / "p.csv")


def test_bad_encoding_names_line_and_byte(tmp_path):
    body = b"clean,corrupted,answer,wrong\na b,a c, x, y\n"
    (tmp_path / "p.csv").write_bytes(body + b"caf\xe9 b,caf\xe9 c, x, y\n")  # Latin-1, not UTF-8
    with pytest.raises(PairError, match=rf"line 3: not UTF-8 text \(byte {len(body) + 3} of the file, value 0xe9\)"):
        load_pairs(tmp_path / "p.csv")


def test_malformed_json_names_the_line(tmp_path):
    good = json.dumps({"clean": "a b", "corrupted": "a c", "answer": " x", "wrong": " y"})
    (tmp_path / "p.jsonl").write_text(good + "\n" + good[:-5] + "\n")
    with pytest.raises(PairError, match="line 2: not valid JSON"):
        load_pairs(tmp_path / "p.jsonl")


def test_jsonl_missing_field_names_line_and_field(tmp_path):
    (tmp_path / "p.jsonl").write_text(json.dumps({"clean": "a b", "corrupted": "a c", "answer": " x"}) + "\n")
    with pytest.raises(PairError, match="line 1: no 'wrong' field"):
        load_pairs(tmp_path / "p.jsonl")


def test_a_bad_pair_names_its_line(tmp_path):
    (tmp_path / "p.csv").write_text("clean,corrupted,answer,wrong\na b,a c, x, y\na b,a b, x, y\n")
    with pytest.raises(PairError, match="line 3: The clean and corrupted prompts are identical"):
        load_pairs(tmp_path / "p.csv")


def test_short_row_names_the_line(tmp_path):
    (tmp_path / "p.csv").write_text("clean,corrupted,answer,wrong\na b;a c; x; y\n")
    with pytest.raises(PairError, match="line 2: 1 field"):
        load_pairs(tmp_path / "p.csv")


@pytest.mark.parametrize("content", ["", "\n\n", "\ufeff"])
def test_empty_file(tmp_path, content):
    (tmp_path / "p.csv").write_text(content, encoding="utf-8")
    with pytest.raises(PairError, match="is empty"):
        load_pairs(tmp_path / "p.csv")


def test_header_only_and_missing_file(tmp_path):
    (tmp_path / "p.csv").write_text("clean,corrupted,answer,wrong\n")
    with pytest.raises(PairError, match="holds no pairs"):
        load_pairs(tmp_path / "p.csv")
    with pytest.raises(PairError, match="does not exist"):
        load_pairs(tmp_path / "nope.csv")


def test_bom_and_sniffed_format_without_suffix(tmp_path):
    (tmp_path / "p").write_bytes(b"\xef\xbb\xbfclean\tcorrupted\tanswer\twrong\na b\ta c\t x\t y\n")
    assert load_pairs(tmp_path / "p") == [PromptPair("a b", "a c", " x", " y")]


def test_ten_thousand_pairs_stream_and_keep_their_lines(tmp_path):
    pairs = [PromptPair(f"a{i} b", f"a{i} c", " x", " y", name=str(i)) for i in range(10_000)]
    save_pairs(pairs, tmp_path / "big.csv")
    got = load_pairs(tmp_path / "big.csv")
    assert got == pairs and got.lines[-1] == 10_001
    assert got.where(9_999) == "big.csv, line 10001 (pair 10000)"
    it = iter_pairs(tmp_path / "big.csv")
    assert next(it) == pairs[0]  # a generator: nothing else read yet
    it.close()


def test_public_names():
    assert patchlab.load_pairs is load_pairs and patchlab.save_pairs is save_pairs


def test_paste_tab_separated_without_header():
    text = "a b\ta c\t x\t y\r\nd b\td c\t z\t w\tname2\n\n"
    assert parse_pairs_text(text) == [PromptPair("a b", "a c", " x", " y"),
                                      PromptPair("d b", "d c", " z", " w", name="name2")]


def test_paste_csv_with_header_in_another_order():
    assert parse_pairs_text("wrong,answer,clean,corrupted\n y, x,a b,a c\n") == [PromptPair("a b", "a c", " x", " y")]


def test_paste_errors_say_what_to_change():
    with pytest.raises(PairError, match="Nothing to paste"):
        parse_pairs_text("  \n")
    with pytest.raises(PairError, match="1 field"):
        parse_pairs_text("just one cell\n")
    with pytest.raises(PairError, match="line 2: The answer is empty"):
        parse_pairs_text("a b\ta c\t x\t y\na b\ta c\t\t y\n")


def test_save_refuses_an_unknown_suffix(tmp_path):
    with pytest.raises(PairError, match=r"\.csv, \.tsv or \.jsonl"):
        save_pairs(PAIRS, tmp_path / "p.xlsx")


def test_group_by_length_and_the_mixed_length_message():
    pairs = [PromptPair(f"a{i} b", f"a{i} c", " x", " y") for i in range(5)]
    lengths = [7, 5, 7, 7, 9]
    groups = group_by_length(pairs, lengths)
    assert list(groups) == [5, 7, 9]
    assert groups[7] == [pairs[0], pairs[2], pairs[3]]
    msg = mixed_length_message("resid_pre", lengths)
    assert "5 tokens: pair 2" in msg and "7 tokens: pairs 1, 3, 4" in msg and "9 tokens: pair 5" in msg
    assert "group_by_length" in msg and "largest group has 3 pairs of 7 tokens" in msg
