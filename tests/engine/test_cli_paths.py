"""`patchlab paths` and `patchlab neurons`: output files, --help, exit 2 on bad input."""

import json

import pytest

from patchlab.cli import main


def test_paths_writes_csv_and_json(tmp_path, capsys):
    assert main(["paths", "-m", "toy-attn2", "--example", "induction-1", "-s", "L0H3", "-r", "k",
                 "--metric", "logit_diff", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "L0H3" in out and "NaN" in out
    rec = json.loads((tmp_path / "paths.json").read_text())
    assert rec["axes"] == ["layer", "head"] and rec["meta"]["receiver"] == "k"
    assert (tmp_path / "paths.csv").read_text().startswith("layer,layer_label,head,head_label,logit_diff")


def test_effects_and_neurons(tmp_path, capsys):
    assert main(["paths", "-m", "toy-solu1", "--example", "verbobj-1", "--effects", "all", "-o", str(tmp_path)]) == 0
    assert "MLP0" in capsys.readouterr().out
    assert json.loads((tmp_path / "effects.json").read_text())["labels"]["effect"] == ["total", "direct", "indirect"]
    assert main(["neurons", "-m", "toy-solu1", "--example", "verbobj-1", "--k", "5", "-o", str(tmp_path)]) == 0
    assert "L0N" in capsys.readouterr().out
    rec = json.loads((tmp_path / "neurons.json").read_text())
    assert rec["kind"] == "neurons" and len(rec["top"]) == 5


@pytest.mark.parametrize("argv, message", [
    (["paths", "-m", "toy-attn2", "-s", "L1H0", "-r", "q"], "at or before the sender"),
    (["paths", "-m", "toy-attn2", "-s", "MLP0"], "attention-only"),
    (["paths", "-m", "toy-attn2", "-s", "L0H9"], "outside the model"),
    (["neurons", "-m", "toy-attn2"], "attention-only"),
    (["neurons", "-m", "toy-solu1", "--layer", "3"], "outside the model"),
])
def test_bad_input_exits_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_help(capsys):
    for cmd in ("paths", "neurons"):
        with pytest.raises(SystemExit) as exc:
            main([cmd, "--help"])
        assert exc.value.code == 0
    assert "--layer" in capsys.readouterr().out
