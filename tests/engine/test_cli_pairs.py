"""The CLI's --pairs: CSV and JSONL files; each bad pairs file exits 2 with one clear message."""

import json

import pytest

from patchlab.cli import main
from patchlab.core.result import PatchResult

HEADER = "clean,corrupted,answer,wrong\n"
ROWS = ["John gave a drink to,Mary gave a drink to, Mary, John\n",
        "Mary gave a book to,John gave a book to, John, Mary\n"]


def test_sweep_reads_a_csv_pairs_file_with_statistics(tiny_dir, tmp_path, capsys):
    (tmp_path / "p.csv").write_text(HEADER + "".join(ROWS))
    rc = main(["sweep", "--model", str(tiny_dir / "gpt2"), "--pairs", str(tmp_path / "p.csv"), "-t", "attn_out",
               "-q", "--out", str(tmp_path / "o")])
    assert rc == 0, capsys.readouterr().err
    res = PatchResult.load_json(tmp_path / "o" / "result.json")
    assert res.n_pairs == 2
    assert (tmp_path / "o" / "result.csv").read_text().splitlines()[0].endswith("stderr,ci_low,ci_high,p,q")
    assert (tmp_path / "o" / "result_pairs.csv").read_text() == res.to_csv(per_pair=True)


@pytest.mark.parametrize("name,content,match", [
    ("missing.csv", "clean,corrupted,wrong\na,b,c\n", "no column 'answer'"),
    ("latin1.csv", (HEADER + "caf\xe9 gave,caf\xe9 took, Mary, John\n").encode("latin-1"), "line 2: not UTF-8"),
    ("broken.jsonl", json.dumps({"clean": "a"})[:-1] + "\n", "line 1: not valid JSON"),
    ("empty.csv", "", "is empty"),
    ("multi.csv", HEADER + ROWS[0] + "Mary gave a book to,John gave a book to,Mary, John\n",
     r"line 3 (pair 2): The answer 'Mary' is"),
    ("same.csv", HEADER + "Mary gave a book to,Mary gave a book to, John, Mary\n", "identical"),
    ("mixed.csv", HEADER + ROWS[0] + "Tom gave a drink to,Tom gave a book to, Mary, John\n", "same number of tokens"),
])
def test_bad_pairs_files_exit_2_with_one_message(tiny_dir, tmp_path, capsys, name, content, match):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    rc = main(["sweep", "--model", str(tiny_dir / "gpt2"), "--pairs", str(path), "-t", "resid_pre", "-q"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "Traceback" not in err and match in err
    assert err.count("patchlab: error:") == 1
