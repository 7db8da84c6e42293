"""Exported scripts reproduce the run: patchlab's API and plain TransformerLens, run in a subprocess."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import patchlab
from patchlab.cli import main
from patchlab.core.errors import InputError
from patchlab.core.result import PatchResult
from patchlab.core.script import python_script, write_script

ROOT = Path(__file__).resolve().parents[2]
GPT2_PAIRS = [
    ("John gave a drink to", "Mary gave a drink to", " Mary", " John"),
    ("Mary gave a book to", "John gave a book to", " John", " Mary"),
    ("Alice gave a drink to", "Bob gave a drink to", " Alice", " Bob"),
]


def _run_all(scripts: list[Path], tmp_path: Path) -> list[np.ndarray]:
    """Run each script as __main__ in ONE fresh interpreter (imports torch once) and read its JSON."""
    outs = [tmp_path / f"{s.stem}.json" for s in scripts]
    code = ("import runpy, sys\n"
            f"for script, out in {[(str(s), str(o)) for s, o in zip(scripts, outs)]!r}:\n"
            "    sys.argv = [script, out]\n"
            "    runpy.run_path(script, run_name='__main__')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [np.array(json.loads(o.read_text())["values"], dtype=float) for o in outs]


def test_both_scripts_reproduce_runs_on_the_toy_model_and_a_gpt2_folder(tiny_dir, tmp_path):
    toy = patchlab.load_model("toy-attn2", device="cpu")
    toy_pairs = patchlab.generate_pairs(toy, "induction", n=4, seed=0)  # of several token lengths
    assert len({len(toy.to_tokens(p.clean)[0]) for p in toy_pairs}) > 1
    toy_res = patchlab.patch(toy, toy_pairs, target="attn_head_out_all_pos")
    gpt2 = patchlab.load_model(str(tiny_dir / "gpt2"), device="cpu")
    gpt2_res = patchlab.patch(gpt2, [patchlab.PromptPair(*p) for p in GPT2_PAIRS], target="resid_pre",
                              direction="noise", metric="logit_diff_recovered")
    gpt2_prob = patchlab.patch(gpt2, [patchlab.PromptPair(*p) for p in GPT2_PAIRS[:2]], target="mlp_out",
                               metric="answer_prob")
    scripts = [
        write_script(toy_res, tmp_path / "toy_api.py"),
        write_script(toy_res, tmp_path / "toy_tl.py", style="transformerlens", pairs_file="toy_pairs.csv"),
        write_script(gpt2_res, tmp_path / "gpt2_api.py", pairs_file="gpt2_pairs.jsonl"),
        write_script(gpt2_res, tmp_path / "gpt2_tl.py", style="transformerlens"),
        write_script(gpt2_prob, tmp_path / "gpt2_prob_tl.py", style="transformerlens", pairs_file="p.jsonl"),
    ]
    assert "import patchlab" not in scripts[1].read_text()  # plain TransformerLens
    assert "get_act_patch_resid_pre" in scripts[3].read_text()
    got = _run_all(scripts, tmp_path)
    for values, res in zip(got, [toy_res, toy_res, gpt2_res, gpt2_res, gpt2_prob]):
        assert values.shape == res.values.shape
        np.testing.assert_allclose(values, res.values, atol=1e-4)
    assert np.nanmax(np.abs(toy_res.values)) > 0.1  # the comparison is not between zeros


def test_script_errors_say_why(tiny_dir):
    res = PatchResult(values=np.zeros((1, 1)), axes=("layer", "pos"), labels={}, per_pair=np.zeros((1, 1, 1)),
                      meta={"target": "resid_pre", "metric": "logit_diff", "direction": "denoise",
                            "model_info": {"name": "x", "source": "external"}, "pairs": []})
    with pytest.raises(InputError, match="not loaded by patchlab"):
        python_script(res)
    with pytest.raises(InputError, match="style"):
        python_script(res, style="jax")
    res.meta["model_info"]["source"] = "local"
    with pytest.raises(InputError, match="prompt pairs"):
        python_script(res)
    res.meta.update(method="attribution", pairs=[{"clean": "a", "corrupted": "b", "answer": "c", "wrong": "d"}])
    with pytest.raises(InputError, match="attribution"):
        python_script(res, style="transformerlens")


def test_cli_writes_both_scripts(tiny_dir, tmp_path, capsys):
    rc = main(["sweep", "--model", str(tiny_dir / "gpt2"), "--clean", GPT2_PAIRS[0][0], "--corrupted", GPT2_PAIRS[0][1],
               "--answer", " Mary", "--wrong", " John", "-t", "attn_out", "-q",
               "--script", str(tmp_path / "a.py"), "--tl-script", str(tmp_path / "b.py")])
    assert rc == 0, capsys.readouterr().err
    assert "patchlab.patch(" in (tmp_path / "a.py").read_text()
    assert "get_act_patch_attn_out" in (tmp_path / "b.py").read_text()
    compile((tmp_path / "b.py").read_text(), "b.py", "exec")
