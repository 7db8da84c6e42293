"""Load models as TransformerLens ``TransformerBridge`` objects, offline-first."""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from patchlab.core.errors import InputError, ModelLoadError
from patchlab.engine import load_errors

PROCESSING_MODES = {
    "compat": "TransformerLens compatibility mode (folded LayerNorm, centred weights)",
    "raw": "raw Hugging Face weights",
}

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float64": torch.float64,
}


@dataclass(frozen=True)
class ModelInfo:
    """What was loaded and how (recorded in every result)."""

    name: str
    source: str  # "embedded" | "local" | "hub" | "external"
    processing: str  # "compat" | "raw"
    device: str
    dtype: str
    architecture: str = ""
    device_map: str = ""  # JSON of the layer -> device map when split with device_map

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def available_devices() -> list[str]:
    """Devices present on this machine, ``cpu`` always last."""
    devices = []
    if torch.cuda.is_available():
        devices.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices + ["cpu"]


def resolve_device(device: str | torch.device | None) -> str:
    """``auto`` -> the best present device; an absent device gives a clear error."""
    if device is None or str(device) == "auto":
        return available_devices()[0]
    device = str(device)
    kind = device.split(":")[0]
    if kind not in ("cpu", "cuda", "mps"):
        raise InputError(f"Unknown device {device!r}: use auto, cpu, cuda or mps.")
    if kind not in available_devices():
        raise InputError(
            f"Device {device!r} is not available on this machine (available: "
            f"{', '.join(available_devices())}). Use --device auto or cpu."
        )
    return device


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise InputError(f"Unknown dtype {dtype!r}: use one of {', '.join(_DTYPES)}.") from None


def model_info(model: Any) -> ModelInfo:
    """The :class:`ModelInfo` of a model, also for bridges loaded outside patchlab."""
    info = getattr(model, "_patchlab_info", None)
    if isinstance(info, ModelInfo):
        return info
    cfg = model.cfg
    try:
        device = str(next(model.parameters()).device)
        dtype = str(next(model.parameters()).dtype).replace("torch.", "")
    except StopIteration:
        device, dtype = "cpu", "float32"
    return ModelInfo(
        name=str(getattr(cfg, "model_name", "model")),
        source="external",
        processing="compat" if getattr(model, "compatibility_mode", False) else "raw",
        device=device,
        dtype=dtype,
        architecture=str(getattr(cfg, "original_architecture", "") or ""),
    )


@contextlib.contextmanager
def _offline(enabled: bool):
    """Temporarily set ``HF_HUB_OFFLINE`` so local loads never touch the network."""
    if not enabled:
        yield
        return
    import huggingface_hub.constants as hf_constants

    old = os.environ.get("HF_HUB_OFFLINE")
    old_const = hf_constants.HF_HUB_OFFLINE
    os.environ["HF_HUB_OFFLINE"] = "1"
    hf_constants.HF_HUB_OFFLINE = True  # read at import time; the env var alone is too late
    try:
        yield
    finally:
        hf_constants.HF_HUB_OFFLINE = old_const
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old


def _describe_hub_failure(name: str, exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    offline_markers = (
        "offline", "connect", "resolve", "network", "localentrynotfound", "cannot find the requested",
        "couldn't", "could not", "timed out", "name or service", "max retries",
    )
    if any(m in text.lower() for m in offline_markers):
        return (
            f"Could not load {name!r} from the Hugging Face Hub: there is no network connection "
            "(or the Hub is unreachable) and the model is not in your Hugging Face cache. "
            "Download it on a machine with network access, or choose a local folder in Hugging "
            "Face format (config.json, model.safetensors, tokenizer.json)."
        )
    if "not a valid model identifier" in text.lower() or "repository not found" in text.lower() or "404" in text:
        return (
            f"{name!r} is neither an embedded model, a local folder, nor a model on the Hugging "
            "Face Hub. Check the spelling, run `patchlab models` for the embedded ones, or give "
            "the path of a local folder."
        )
    return f"Could not load {name!r}: {text.splitlines()[0][:400]}"


def load_model(
    name: str | None = None,
    *,
    device: str = "auto",
    dtype: str | torch.dtype | None = None,
    processing: str = "compat",
    trust_remote_code: bool = False,
    device_map: str | dict[str, Any] | None = None,
    max_memory: dict[Any, Any] | None = None,
) -> Any:
    """Load a model as a ``transformer_lens.TransformerBridge``.

    Parameters
    ----------
    name : str, optional
        ``None`` for the embedded default model, the name of an embedded model
        (``patchlab models``), a local folder in Hugging Face format, or a Hub model id
        (uses the Hugging Face cache and, if needed, the network).
    device : str
        ``auto`` (CUDA, then MPS, then CPU), ``cpu``, ``cuda`` or ``mps``.
    dtype : str or torch.dtype, optional
        Weight dtype; default float32.
    processing : {"compat", "raw"}
        ``compat`` runs ``enable_compatibility_mode()`` (HookedTransformer-equivalent folded
        LayerNorm and centred weights, what direct logit attribution tutorials assume);
        ``raw`` keeps the Hugging Face weights. Patching metrics do not depend on it; direct
        logit attribution does. Recorded in :func:`model_info`.
    trust_remote_code : bool
        Off by default; only turn it on for Hub models whose code you trust.
    device_map, max_memory : optional
        Passed to ``TransformerBridge.boot_transformers`` to split a model over devices
        (``device_map="auto"`` and a per-device ``max_memory`` budget such as
        ``{0: "20GiB", 1: "20GiB"}``); ``device`` is then ignored. The hook path runs such a
        model; the fast path runs only when every layer sits on one device, else it says why.

    Raises
    ------
    ModelLoadError
        With a message that says what to change (offline, missing folder, unsupported).
    """
    try:
        from patchlab.engine import embedded
    except ImportError:  # no embedded models in this build
        embedded = None

    if processing not in PROCESSING_MODES:
        raise InputError(f"Unknown processing {processing!r}: use 'compat' or 'raw'.")
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype)
    if max_memory is not None and device_map is None:
        device_map = "auto"  # a memory budget only means something to the dispatcher
    problem = load_errors.dtype_problem(torch_dtype, dev) if device_map is None else None
    if problem:
        raise InputError(problem)
    split = {"device_map": device_map, "max_memory": max_memory}
    if name is None or str(name).strip() == "":
        if embedded is None:
            raise ModelLoadError("This build of patchlab ships no embedded model: give a model name or folder.")
        name = embedded.DEFAULT_MODEL
    name = str(name).strip()

    path = Path(name).expanduser()
    if embedded is not None and embedded.is_embedded(name):
        source = "embedded"
        try:
            model = embedded.load_embedded(name, device=dev, dtype=torch_dtype)
        except Exception as exc:  # a broken install, not the user's fault
            raise ModelLoadError(f"The embedded model {name!r} failed to load: {exc}") from exc
    elif path.exists() or name.startswith((".", "/", "~")) or (os.sep in name and not _looks_like_hub_id(name)):
        source = "local"
        model = _load_local(path, dev, torch_dtype, trust_remote_code, split)
    else:
        source = "hub"
        model = _load_hub(name, dev, torch_dtype, trust_remote_code, split)

    if processing == "compat" and not getattr(model, "compatibility_mode", False):
        try:
            model.enable_compatibility_mode()
        except Exception as exc:
            why = load_errors.describe(name, exc) or str(exc)
            raise ModelLoadError(
                f"{name!r} loaded, but TransformerLens compatibility mode failed ({why}). "
                "Load it with processing='raw' (--processing raw)."
            ) from exc
    model.eval()
    param = next(model.parameters())
    model._patchlab_info = ModelInfo(
        name=name if source != "local" else str(path.resolve()),
        source=source,
        processing=processing,
        device=str(param.device),
        dtype=str(param.dtype).replace("torch.", ""),
        architecture=str(getattr(model.cfg, "original_architecture", "") or getattr(model.cfg, "architecture", "") or ""),
    )
    if device_map is not None:
        import json  # noqa: PLC0415

        hf_map = getattr(getattr(model, "original_model", None), "hf_device_map", None) or device_map
        shown = {str(k): str(v) for k, v in hf_map.items()} if isinstance(hf_map, dict) else str(hf_map)
        model._patchlab_info = replace(model._patchlab_info, device_map=json.dumps(shown))
    return model


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "/", "~"))


def _boot(name_or_dir: str, dev: str, dtype, trust_remote_code: bool, split: dict[str, Any] | None = None):
    from transformer_lens import TransformerBridge
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Loading weights" bars in the CLI or the app log

    kwargs: dict[str, Any] = {"device": dev}
    if split and split.get("device_map") is not None:
        # boot_transformers takes device_map and device as mutually exclusive
        kwargs = {k: v for k, v in split.items() if v is not None}
    if dtype is not None:
        kwargs["dtype"] = dtype
    if trust_remote_code:
        kwargs["trust_remote_code"] = True
    return TransformerBridge.boot_transformers(name_or_dir, **kwargs)


def _load_local(path: Path, dev: str, dtype, trust_remote_code: bool, split: dict[str, Any] | None = None):
    if not path.is_dir():
        raise ModelLoadError(
            f"The model folder {path} does not exist. Give a folder in Hugging Face format "
            "(config.json, model weights, tokenizer files), a Hub model id, or an embedded model."
        )
    if not (path / "config.json").is_file():
        raise ModelLoadError(
            f"{path} has no config.json, so it is not a model folder in Hugging Face format. "
            "Pick the folder that holds config.json and the weights."
        )
    big = load_errors.too_big(path, dtype, dev, (split or {}).get("device_map"))
    if big:
        raise ModelLoadError(big)
    try:
        with _offline(True):
            return _boot(str(path), dev, dtype, trust_remote_code, split)
    except Exception as exc:
        known = load_errors.describe(str(path), exc)
        if known:
            raise ModelLoadError(known) from exc
        msg = str(exc).splitlines()[0][:400] if str(exc) else type(exc).__name__
        raise ModelLoadError(f"Could not load the model in {path}: {type(exc).__name__}: {msg}") from exc


def hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """Quick TCP probe so an offline machine fails in seconds, not after minutes of retries."""
    import socket

    endpoint = os.environ.get("HF_ENDPOINT", f"https://{host}")
    host = endpoint.split("://", 1)[-1].split("/", 1)[0].split(":")[0]
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _load_hub(name: str, dev: str, dtype, trust_remote_code: bool, split: dict[str, Any] | None = None):
    try:
        # the user's Hugging Face cache first, without touching the network
        with _offline(True):
            return _boot(name, dev, dtype, trust_remote_code, split)
    except Exception as exc:  # not cached: try the Hub below; any other cause is the answer
        if not load_errors.is_not_cached(exc):
            known = load_errors.describe(name, exc)
            raise ModelLoadError(known or _describe_hub_failure(name, exc)) from exc
        cached_error = exc
    import huggingface_hub.constants as hf_constants

    if hf_constants.HF_HUB_OFFLINE or not hub_reachable():
        raise ModelLoadError(_describe_hub_failure(name, ConnectionError(f"offline ({cached_error})")))
    try:
        return _boot(name, dev, dtype, trust_remote_code, split)
    except Exception as exc:
        raise ModelLoadError(load_errors.describe(name, exc) or _describe_hub_failure(name, exc)) from exc
