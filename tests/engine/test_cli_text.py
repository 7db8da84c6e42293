"""`patchlab weights` and `patchlab text ...`: outputs, and one clear message (exit 2) on bad input."""

import json

from patchlab.cli import main


def test_cli_weights_composition_and_direct(tmp_path, capsys):
    assert main(["weights", "composition", "--mode", "k", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "L0H3 -> L1" in out and "99th percentile" in out
    data = json.loads((tmp_path / "weights.json").read_text())
    assert data["kind"] == "composition" and data["shape"] == [2, 4, 2, 4]
    assert main(["weights", "ov", "--layer", "1", "--head", "3"]) == 0
    assert "[names] 'alice'" in capsys.readouterr().out


def test_cli_text_commands(tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text("alice sees bax bez kax bax bez\nswim dax the pool\n")
    assert main(["text", "losses", "--file", str(corpus), "-q", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "losses.html").is_file() and (tmp_path / "losses.csv").is_file()
    assert main(["text", "ablate", "--toy", "8", "--method", "zero", "-q", "--out", str(tmp_path)]) == 0
    assert "L1H" in capsys.readouterr().out and (tmp_path / "ablation_top_component.html").is_file()
    assert main(["text", "token-ablation", "--text", "alice sees bax bez kax bax", "--target", "logprob: bez"]) == 0
    assert "'bax'" in capsys.readouterr().out
    assert main(["text", "top-examples", "--head", "L1H3", "--toy", "5", "-k", "3", "-q"]) == 0
    assert "top 3 positions of L1H3" in capsys.readouterr().out


def test_cli_text_bad_input_exits_2(tmp_path, capsys, tiny_dir):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok\n\xff\n")
    assert main(["text", "losses", "--file", str(bad), "-q"]) == 2
    assert "line 2" in capsys.readouterr().err
    assert main(["text", "token-ablation", "--text", "alice sees", "--position", "7", "--target", "logit: sees"]) == 2
    assert "outside the text" in capsys.readouterr().err
    assert main(["text", "compare", "--model-b", str(tiny_dir / "gpt2"), "--text", "the cat", "-q"]) == 2
    assert "different tokenizers" in capsys.readouterr().err
    assert main(["weights", "direct", "--model", str(tiny_dir / "gpt2"), "--processing", "raw"]) == 2
    assert "compat" in capsys.readouterr().err
