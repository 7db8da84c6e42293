"""Why a model did not load, in words that say what to do (issue 13: keep the real cause).

Used by :mod:`patchlab.engine.loading`: checks before booting (a dtype the device lacks, a
model larger than free memory) and a classifier for exceptions raised while booting.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from patchlab.engine.memory import free_bytes, is_oom

# bytes per weight of each dtype, to size a checkpoint after casting
_ITEM = {torch.float32: 4, torch.float16: 2, torch.bfloat16: 2, torch.float64: 8}
# a model needs a little more than its weights to load and run (buffers, a forward pass)
HEADROOM = 1.1


def dtype_problem(dtype: torch.dtype | None, device: str) -> str | None:
    """A message if ``device`` cannot run ``dtype`` (bfloat16 on a pre-Ampere GPU), else None."""
    if dtype == torch.bfloat16 and device.startswith("cuda"):
        try:
            ok = torch.cuda.is_bf16_supported()
        except Exception:  # an odd driver: let the load itself tell
            return None
        if not ok:
            name = torch.cuda.get_device_name(torch.device(device))
            return (f"This GPU ({name}) has no bfloat16 support. Load the model in float16 "
                    "(--dtype float16) or float32, or on the CPU.")
    return None


def checkpoint_bytes(folder: Path, dtype: torch.dtype | None) -> int | None:
    """Size of the weights in ``folder`` once cast to ``dtype`` (None when unknown)."""
    files = list(folder.glob("*.safetensors")) or list(folder.glob("*.bin"))
    if not files:
        return None
    size = sum(f.stat().st_size for f in files)
    if dtype is None:
        return size
    saved = None
    try:
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        saved = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}.get(
            str(cfg.get("torch_dtype") or cfg.get("dtype") or ""))
    except (OSError, ValueError):
        pass
    if saved is None or saved not in _ITEM or dtype not in _ITEM:
        return size
    return int(size * _ITEM[dtype] / _ITEM[saved])


def too_big(folder: Path, dtype: torch.dtype | None, device: str, device_map: Any = None) -> str | None:
    """A message if the model in ``folder`` cannot fit in ``device``'s free memory, else None."""
    if device_map is not None:
        return None  # the user spreads it over devices; accelerate's dispatcher decides
    need = checkpoint_bytes(folder, dtype)
    if need is None:
        return None
    free = free_bytes(device)
    if need * HEADROOM <= free:
        return None
    where = "GPU" if device.startswith("cuda") else "RAM" if device == "cpu" else device
    return (f"The model in {folder} needs about {need / 2**30:.1f} GiB, but only "
            f"{free / 2**30:.1f} GiB of {where} is free. Use a smaller dtype (--dtype bfloat16 / "
            "float16), another device, or split it over devices with device_map='auto' "
            "(load_model(..., device_map='auto', max_memory=...)).")


def describe(name: str, exc: BaseException) -> str | None:
    """The real cause of a boot failure in plain words, or None if it is not a known kind."""
    text = f"{type(exc).__name__}: {exc}"
    low = text.lower()
    if is_oom(exc):
        return (f"Out of memory while loading {name!r}. Use a smaller dtype (bfloat16 / float16), "
                "the CPU, a smaller model, or device_map='auto' to split it over devices.")
    if ("unsupported architecture" in low or "not supported by transformerbridge" in low
            or "could not determine supported architecture" in low):
        return (f"TransformerLens {_tl_version()} has no bridge for the architecture of {name!r}"
                f"{_arch_of(name)}. "
                "Pick a model whose architecture TransformerLens supports (Llama, Mistral, Qwen, "
                "Gemma, GPT-2, Pythia, Phi, OLMo ...; see docs/architectures.md).")
    if "trust_remote_code" in low or "custom code" in low:
        return (f"{name!r} needs custom model code from its repository. Load it with "
                "trust_remote_code=True (--trust-remote-code) only if you trust that code.")
    if "does not recognize this architecture" in low or "model type" in low and "not recognized" in low:
        return (f"The installed transformers does not know the architecture of {name!r}: "
                f"{str(exc).splitlines()[0][:200]}. Upgrade transformers, or pick another model.")
    return None


def is_not_cached(exc: BaseException) -> bool:
    """True when an offline boot failed only because the files are not in the HF cache."""
    names = {type(e).__name__ for e in _chain(exc)}
    if names & {"LocalEntryNotFoundError", "OfflineModeIsEnabled"}:
        return True
    low = " ".join(str(e) for e in _chain(exc)).lower()
    return any(m in low for m in ("offline mode", "cannot find the requested files", "local_files_only",
                                  "couldn't connect", "not the path to a directory", "does not appear to have"))


def _arch_of(name: str) -> str:
    """`` (Foo)`` from a local folder's config.json, else empty."""
    try:
        cfg = json.loads((Path(name).expanduser() / "config.json").read_text(encoding="utf-8"))
        return f" ({', '.join(cfg.get('architectures') or [cfg.get('model_type', '?')])})"
    except (OSError, ValueError, TypeError):
        return ""


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and e not in out and len(out) < 10:
        out.append(e)
        e = e.__cause__ or e.__context__
    return out


def _tl_version() -> str:
    try:
        import transformer_lens

        return str(getattr(transformer_lens, "__version__", "4.x"))
    except ImportError:  # pragma: no cover
        return "4.x"
