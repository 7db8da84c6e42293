"""The command line: sweeps write CSV + JSON, bad input exits 2 with one message."""

import json
import subprocess
import sys

import numpy as np
import pytest

import patchlab
from patchlab.cli import main
from patchlab.core.result import PatchResult

ARGS = ["--clean", "John gave a drink to", "--corrupted", "Mary gave a drink to", "--answer", " Mary", "--wrong", " John"]


def test_sweep_writes_csv_and_json_equal_to_the_api(tiny_dir, tmp_path, capsys):
    folder = str(tiny_dir / "gpt2")
    rc = main(["sweep", "--model", folder, "--device", "cpu", *ARGS, "-t", "attn_head_out_all_pos", "--out", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr()
    assert "top cells" in out.out and "cells" in out.err  # progress bar on stderr
    res = PatchResult.load_json(tmp_path / "result.json")
    model = patchlab.load_model(folder, device="cpu")
    api = patchlab.patch(model, patchlab.PromptPair("John gave a drink to", "Mary gave a drink to", " Mary", " John"),
                         target="attn_head_out_all_pos")
    np.testing.assert_allclose(res.values, api.values, atol=1e-6)
    assert (tmp_path / "result.csv").read_text() == res.to_csv()


def test_sweep_reads_a_pairs_file(tiny_dir, tmp_path, capsys):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("\n".join(json.dumps(d) for d in [
        {"clean": "John gave a drink to", "corrupted": "Mary gave a drink to", "answer": " Mary", "wrong": " John"},
        {"clean": "Mary gave a book to", "corrupted": "John gave a book to", "answer": " John", "wrong": " Mary"},
    ]))
    rc = main(["sweep", "--model", str(tiny_dir / "llama"), "--pairs", str(pairs), "-t", "attn_out", "-q",
               "--metric", "logit_diff", "--out", str(tmp_path / "o")])
    assert rc == 0
    assert PatchResult.load_json(tmp_path / "o" / "result.json").per_pair.shape[0] == 2


@pytest.mark.parametrize("argv,match", [
    (["sweep", "--model", "/no/such/folder"], "does not exist"),
    (["sweep", "--clean", "x"], "Give all four"),
    (["sweep", "--model", "TINY", "--clean", "John gave a drink to", "--corrupted", "Mary Mary gave a drink to",
      "--answer", " Mary", "--wrong", " John"], "same length"),
    (["sweep", "--model", "TINY", "--pairs", "/no/pairs.jsonl"], "does not exist"),
    (["sweep", "--model", "TINY", *ARGS, "--batch-size", "0"], "at least 1"),
    (["sweep", "--model", "NEOX", *ARGS, "-t", "resid_mid"], "parallel"),
])
def test_bad_input_exits_2_with_one_message(tiny_dir, capsys, argv, match):
    argv = [str(tiny_dir / "gpt2") if a == "TINY" else str(tiny_dir / "neox") if a == "NEOX" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert match in err


def test_unknown_target_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["sweep", "--target", "nope"])
    assert info.value.code == 2


def test_help_everywhere():
    for cmd in ([], ["sweep"], ["decompose"], ["models"], ["screenshot"]):
        proc = subprocess.run([sys.executable, "-m", "patchlab", *cmd, "--help"], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0 and "usage: patchlab" in proc.stdout


def test_decompose_command(tiny_dir, tmp_path, capsys):
    rc = main(["decompose", "--model", str(tiny_dir / "gpt2"), *ARGS, "--out", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "total" in out and "top heads" in out
    assert (tmp_path / "decompose.csv").exists() and (tmp_path / "decompose.json").exists()


def test_window_without_a_display_says_what_to_do(monkeypatch, capsys):
    monkeypatch.setattr(sys, "platform", "linux")
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(var, raising=False)
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "No display found" in err and "xvfb-run" in err and "Traceback" not in err
