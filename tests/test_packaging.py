"""The wheel carries resources/ and the default model loads from an installed copy."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    pytest.importorskip("hatchling")
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    (whl,) = out.glob("patchlab-*.whl")
    return whl


def test_wheel_contains_resources_and_entry_point(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    # every shipped model folder and example file, byte for byte, under patchlab/_resources
    shipped = [p for p in (ROOT / "resources").rglob("*") if p.is_file()]
    assert any(p.name == "model.safetensors" for p in shipped)
    with zipfile.ZipFile(wheel) as zf:
        for path in shipped:
            name = "patchlab/_resources/" + path.relative_to(ROOT / "resources").as_posix()
            assert name in names, name
            assert zf.read(name) == path.read_bytes(), name
    for model in ("toy-attn2", "toy-solu1"):
        for f in ("config.json", "model.safetensors", "tokenizer.json", "card.json"):
            assert f"patchlab/_resources/models/{model}/{f}" in names
    assert "patchlab/_resources/examples/toy-attn2.jsonl" in names
    entry = [n for n in names if n.endswith("entry_points.txt")]
    assert entry and "patchlab = patchlab.cli:main" in zipfile.ZipFile(wheel).read(entry[0]).decode()


def test_default_model_loads_from_the_installed_wheel(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    env = dict(os.environ, PYTHONPATH=str(site), HF_HUB_OFFLINE="1")
    env.pop("PATCHLAB_RESOURCES", None)
    code = (
        "import patchlab, patchlab.core.resources as r\n"
        f"assert str(r.resources_dir()).startswith({str(site)!r}), r.resources_dir()\n"
        "m = patchlab.load_model(device='cpu')\n"
        "ex = patchlab.examples(m)[0]\n"
        "res = patchlab.patch(m, ex.pair, target='resid_pre')\n"
        "print('ok', patchlab.model_info(m).name, res.values.shape)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-2000:]
