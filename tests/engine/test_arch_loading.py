"""Loading (issue 13): devices, device maps, and load failures that keep their real cause."""

import json
import shutil

import numpy as np
import pytest
import torch

import patchlab
from patchlab.cli import main
from patchlab.core.errors import InputError, ModelLoadError
from patchlab.engine import load_errors, loading
from patchlab.engine.fast import weights

PAIR = patchlab.PromptPair("John gave a drink to", "Mary gave a drink to", " Mary", " John")
ARGS = ["--clean", PAIR.clean, "--corrupted", PAIR.corrupted, "--answer", PAIR.answer, "--wrong", PAIR.wrong]


def test_auto_device_picks_cuda_when_present(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert loading.resolve_device("auto") == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert loading.resolve_device("auto") in ("mps", "cpu")


@pytest.mark.parametrize("device_map", [{"": "cpu"}, "per-layer"])
def test_a_device_map_passes_through_and_both_engines_run_the_model(tiny_dir, tiny_models, device_map):
    folder = tiny_dir / "llama"
    if device_map == "per-layer":  # every module named, as accelerate writes a split over devices
        device_map = {"model.embed_tokens": "cpu", "model.layers.0": "cpu", "model.layers.1": "cpu",
                      "model.layers.2": "cpu", "model.norm": "cpu", "model.rotary_emb": "cpu", "lm_head": "cpu"}
    model = patchlab.load_model(str(folder), device_map=device_map)
    info = loading.model_info(model)
    assert info.device_map and json.loads(info.device_map)
    ref = patchlab.patch(tiny_models["llama"], PAIR, target="attn_head_out_by_pos", metric="logit_diff", engine="generic")
    for engine, path in (("generic", "generic-hooks"), ("fast", "fast-torch")):
        res = patchlab.patch(model, PAIR, target="attn_head_out_by_pos", metric="logit_diff", engine=engine)
        assert res.meta["engine_path"] == path
        assert res.meta["model_info"]["device_map"] == info.device_map  # in the run record
        np.testing.assert_allclose(res.values, ref.values, atol=1e-5)


def test_the_fast_path_refuses_a_model_split_over_devices(tiny_dir):
    model = patchlab.load_model(str(tiny_dir / "llama"), device="cpu", processing="raw")
    model.original_model.model.layers[1].to_empty(device="meta")  # one layer elsewhere, as on a second GPU
    with pytest.raises(weights.Unsupported, match=r"split over several devices \(cpu, meta\)"):
        weights.extract(model)


def test_an_architecture_transformer_lens_cannot_wrap_says_so(tiny_dir, tmp_path):
    folder = tmp_path / "ctrl"
    shutil.copytree(tiny_dir / "llama", folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(architectures=["CTRLLMHeadModel"], model_type="ctrl")
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match=r"no bridge for the architecture.*CTRLLMHeadModel.*docs/architectures"):
        patchlab.load_model(str(folder), device="cpu")


def test_a_model_larger_than_free_memory_is_refused_before_loading(tiny_dir, monkeypatch):
    monkeypatch.setattr(load_errors, "free_bytes", lambda device: 1000)
    with pytest.raises(ModelLoadError, match=r"needs about .* GiB.*smaller dtype.*device_map"):
        patchlab.load_model(str(tiny_dir / "gpt2"), device="cpu")


def test_bfloat16_on_a_gpu_without_it_says_to_use_float16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla V100")
    msg = load_errors.dtype_problem(torch.bfloat16, "cuda")
    assert "V100" in msg and "float16" in msg
    assert load_errors.dtype_problem(torch.float16, "cuda") is None
    monkeypatch.setattr(loading, "resolve_device", lambda d: "cuda")
    with pytest.raises(InputError, match="no bfloat16 support"):
        patchlab.load_model("some/model", device="cuda", dtype="bfloat16")


@pytest.mark.parametrize("exc,expected", [
    (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "Out of memory while loading"),
    (ValueError("Loading this model requires you to execute custom code; set trust_remote_code=True"),
     "needs custom model code"),
    (ValueError("Unsupported architecture: FooForCausalLM"), "no bridge for the architecture"),
])
def test_hub_load_failures_keep_their_cause_instead_of_not_in_cache(monkeypatch, exc, expected):
    def boot(*args, **kwargs):
        raise exc

    monkeypatch.setattr(loading, "_boot", boot)
    with pytest.raises(ModelLoadError) as info:
        patchlab.load_model("someone/some-model", device="cpu")
    assert expected in str(info.value)
    assert "cache" not in str(info.value)


def test_a_model_missing_from_the_cache_offline_still_says_so(monkeypatch):
    from huggingface_hub.errors import LocalEntryNotFoundError

    def boot(*args, **kwargs):
        raise OSError("We couldn't connect to the Hub") from LocalEntryNotFoundError("offline")

    monkeypatch.setattr(loading, "_boot", boot)
    with pytest.raises(ModelLoadError, match="not in your Hugging Face cache"):
        patchlab.load_model("someone/some-model", device="cpu")


def test_cli_says_which_engine_ran_and_why_not_the_fast_one(tiny_dir, capsys, monkeypatch):
    folder = str(tiny_dir / "llama")
    assert main(["sweep", "--model", folder, "--device", "cpu", *ARGS, "-t", "resid_pre", "-q"]) == 0
    assert "engine: fast-torch\n" in capsys.readouterr().err
    import patchlab.engine.fast as fast

    monkeypatch.setattr(fast, "unsupported_reason", lambda ctx: "a reason from the fast path")
    assert main(["sweep", "--model", folder, "--device", "cpu", *ARGS, "-t", "resid_pre", "-q"]) == 0
    assert "engine: generic-hooks (the fast path was not used: a reason from the fast path)" in capsys.readouterr().err


def test_cli_max_memory_must_be_device_equals_size(tiny_dir, capsys):
    rc = main(["sweep", "--model", str(tiny_dir / "llama"), *ARGS, "--max-memory", "lots", "-q"])
    assert rc == 2
    assert "DEVICE=SIZE" in capsys.readouterr().err
