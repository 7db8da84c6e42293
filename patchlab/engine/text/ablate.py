"""Ablate heads or MLPs over a corpus: mean change of loss per component, per-token drill-down.

All heads of a layer run as one batched forward pass (batch rows = heads: row group ``h``
ablates head ``h``); all MLPs likewise (row group ``l`` ablates layer ``l``'s MLP). Mean
ablation first streams the corpus once to average the components' outputs over its own tokens.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np
import torch

from patchlab._version import __version__
from patchlab.core.ablation_result import AblationResult, clustered_ci
from patchlab.core.errors import InputError, TargetUnavailableError
from patchlab.core.text_result import DocScores
from patchlab.engine.text import fast_ablate
from patchlab.engine.text.losses import logprobs, model_meta, row_chunks
from patchlab.engine.text.stream import (
    Batch,
    TextEvent,
    iter_windows,
    next_token_logprobs,
    run_to_end,
)

COMPONENTS = ("heads", "mlps", "all")
ABLATIONS = ("mean", "zero", "resample")


def _z(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_z"


def _mlp(layer: int) -> str:
    return f"blocks.{layer}.hook_mlp_out"


def _units(model: Any, components: str) -> list[tuple[str, int, int]]:
    """``(kind, layer, head)`` of every component, in result order (heads, then MLP, per layer)."""
    if components not in COMPONENTS:
        raise InputError(f"Unknown components {components!r}: use heads, mlps or all.")
    cfg = model.cfg
    if components in ("mlps", "all") and getattr(cfg, "attn_only", False):
        if components == "mlps":
            raise TargetUnavailableError("This model is attention-only: it has no MLPs to ablate. "
                                         "Use components='heads'.")
        components = "heads"
    units = []
    for layer in range(int(cfg.n_layers)):
        if components in ("heads", "all"):
            units += [("head", layer, h) for h in range(int(cfg.n_heads))]
        if components in ("mlps", "all"):
            units.append(("mlp", layer, -1))
    return units


def _real_mask(b: Batch) -> torch.Tensor:
    pos = torch.arange(b.tokens.shape[1], device=b.tokens.device)
    return pos[None, :] < torch.tensor(b.lengths, device=b.tokens.device)[:, None]


def _names(units) -> list[str]:
    return sorted({_z(la) if k == "head" else _mlp(la) for k, la, _ in units})


class _Engine:
    """Which forward pass runs: the plain-torch one (checked against the bridge on the first
    batch) or the bridge with hooks."""

    def __init__(self, model: Any, engine: str):
        if engine not in ("auto", "fast", "bridge"):
            raise InputError(f"Unknown engine {engine!r}: use auto, fast or bridge.")
        self.model, self.w, self.reason, self.checked = model, None, "", False
        if engine != "bridge":
            self.w, self.reason = fast_ablate.weights(model)
            if self.w is None and engine == "fast":
                raise InputError(f"The fast path does not apply to this model: {self.reason}")

    @property
    def name(self) -> str:
        return "fast" if self.w is not None else "bridge"

    def clean(self, b: Batch, names: list[str]):
        """Clean per-token loss ``[B, T]``, the activations ``names`` and the fast run (or None)."""
        if self.w is not None:
            run = fast_ablate.clean_run(self.w, b.tokens, row_chunks(self.model, b.tokens.shape[0], b.tokens.shape[1]))
            if not self.checked:
                self.checked = True
                ref = -logprobs(self.model, b.tokens)
                mask = _real_mask(b)
                mask[:, 0] = False
                err = float((run.loss - ref)[mask].abs().max()) if mask.any() else 0.0
                if not err <= fast_ablate.TOL:
                    self.w, self.reason = None, f"the plain-torch pass differs from the bridge's by {err:.2g}"
            if self.w is not None:
                cache = {**{_z(i): z for i, z in enumerate(run.z)}, **{_mlp(i): m for i, m in enumerate(run.mlp_out)}}
                return run.loss, {n: cache[n] for n in names}, run
        logits, cache = self.model.run_with_cache(b.tokens, names_filter=lambda n: n in names)
        return -next_token_logprobs(logits, b.tokens), {n: cache[n] for n in names}, None


def _means(eng, texts, units, kw) -> Generator[TextEvent, None, dict[str, torch.Tensor]]:
    """Mean of each ablated hook's activation over every real token of the corpus."""
    names = _names(units)
    sums: dict[str, torch.Tensor] = {}
    count = [0]

    def compute(b: Batch) -> np.ndarray:
        mask = _real_mask(b)
        with torch.inference_mode():
            _, cache, _ = eng.clean(b, names)
            for n in names:
                s = cache[n][mask].double().sum(0)
                sums[n] = sums[n] + s if n in sums else s
        count[0] += int(mask.sum())
        return np.zeros((b.tokens.shape[0], b.tokens.shape[1], 1))

    _, _, info = yield from iter_windows(eng.model, texts, compute, keep=False, phase="means", **kw)
    if not info["complete"]:
        return {}
    return {n: (s / max(count[0], 1)).to(torch.get_default_dtype()) for n, s in sums.items()}


def iter_ablate(model: Any, texts: Any, *, components: str = "heads", method: str = "mean",
                batch_tokens: int = 4096, max_tokens: int | None = None, stop: Any = None,
                seed: int = 0, engine: str = "auto") -> Generator[TextEvent, None, AblationResult]:
    """Generator form of :func:`ablate`: events per batch (phase ``means``, then ``ablate``)."""
    if method not in ABLATIONS:
        raise InputError(f"Unknown ablation method {method!r}: use mean, zero or resample.")
    units = _units(model, components)
    eng = _Engine(model, engine)
    kw = {"batch_tokens": batch_tokens, "max_tokens": max_tokens, "stop": stop}
    means = (yield from _means(eng, texts, units, kw)) if method == "mean" else {}
    if method == "mean" and not means:
        raise InputError("Stopped while averaging the activations: nothing to show yet.")
    layers = sorted({la for _, la, _ in units})
    gen = torch.Generator().manual_seed(seed)
    n_c = len(units)
    col = {u: i for i, u in enumerate(units)}
    groups = []  # per forward pass: (unit, hook name, head or None) for each row group
    for layer in layers:
        heads = [u for u in units if u[0] == "head" and u[1] == layer]
        if heads:
            groups.append([(u, _z(layer), u[2]) for u in heads])
    mlps = [u for u in units if u[0] == "mlp"]
    if mlps:
        groups.append([(u, _mlp(u[1]), None) for u in mlps])

    def compute(b: Batch) -> np.ndarray:
        toks = b.tokens
        n_b, width = toks.shape
        out = np.full((n_b, width, n_c + 1), np.nan)
        with torch.inference_mode():
            clean, cache, run = eng.clean(b, _names(units))
            out[..., 0] = clean.cpu().numpy()
            src = None
            if method == "resample":
                real = _real_mask(b).nonzero()  # draw replacements from the batch's real tokens
                pick = real[torch.randint(len(real), (n_b, width), generator=gen)]
                src = (pick[..., 0], pick[..., 1])

            def replacement(name: str, part: Any) -> torch.Tensor:
                act = cache[name]
                if method == "zero":
                    return torch.zeros_like(act[:, :, part] if part is not None else act)
                if method == "mean":
                    m = means[name][part] if part is not None else means[name]
                    return m.expand_as(act[:, :, part] if part is not None else act)
                r = act[src[0], src[1]]
                return r[:, :, part] if part is not None else r

            for group in groups:
                reps = {id(g): replacement(g[1], g[2]) for g in group}
                per_pass = max(1, row_chunks(model, len(group) * n_b, width, 512) // n_b)
                for s in range(0, len(group), per_pass):
                    chunk = group[s:s + per_pass]
                    ablated = _run_chunk(eng, run, chunk, reps, toks)
                    for i, g in enumerate(chunk):
                        out[..., 1 + col[g[0]]] = (ablated[i] - clean).cpu().numpy()
        return out

    docs, values, info = yield from iter_windows(model, texts, compute, n_values=n_c + 1, phase="ablate", **kw)
    info = {**info, "engine_path": eng.name, "fallback_reason": eng.reason}
    return _result(model, units, components, method, docs, values, info)


def _run_chunk(eng: _Engine, run, chunk, reps, toks: torch.Tensor) -> torch.Tensor:
    """Losses ``[len(chunk), B, T]``, row group ``i`` with unit ``chunk[i]`` ablated."""
    n_b, width = toks.shape
    if run is not None:
        rpc = row_chunks(eng.model, len(chunk) * n_b, width)
        if chunk[0][2] is not None:  # the heads of one layer
            return fast_ablate.ablated_heads(eng.w, run, chunk[0][0][1], [g[2] for g in chunk],
                                             [reps[id(g)] for g in chunk], toks, rpc)
        return torch.stack([fast_ablate.ablated_mlp(eng.w, run, g[0][1], reps[id(g)], toks, rpc) for g in chunk])
    rows = toks.repeat(len(chunk), 1)
    lp = next_token_logprobs(eng.model.run_with_hooks(rows, fwd_hooks=_hooks(chunk, reps, n_b)), rows)
    return (-lp).view(len(chunk), n_b, width)


def _hooks(chunk, reps, n_b):
    """One hook per hook name; row group ``i`` of the pass gets unit ``chunk[i]`` replaced."""
    by_name: dict[str, list[tuple[int, Any]]] = {}
    for i, g in enumerate(chunk):
        by_name.setdefault(g[1], []).append((i, g))
    hooks = []
    for name, items in by_name.items():
        def hook(act, hook=None, items=items):
            for i, g in items:
                rows = slice(i * n_b, (i + 1) * n_b)
                if g[2] is None:
                    act[rows] = reps[id(g)]
                else:
                    act[rows, :, g[2]] = reps[id(g)]
            return act
        hooks.append((name, hook))
    return hooks


def _result(model, units, components, method, docs, values, info) -> AblationResult:
    n_c = len(units)
    labels_c = [f"L{la}H{h}" if k == "head" else f"L{la} MLP" for k, la, h in units]
    deltas = np.concatenate([v[:, 1:] for v in values]).astype(np.float32) if values else np.zeros((0, n_c))
    sums = np.array([np.nansum(v[:, 1:], 0) for v in values])
    sq = np.array([np.nansum(v[:, 1:] ** 2, 0) for v in values])
    counts = np.array([np.isfinite(v[:, 0]).sum() for v in values], dtype=float)
    mean, lo, hi = clustered_ci(sums, sq, counts)
    n_layers, n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)
    kinds = {k for k, _, _ in units}
    if kinds == {"head"}:
        axes, shape = ("layer", "head"), (n_layers, n_heads)
        labels = {"layer": [f"L{i}" for i in range(n_layers)], "head": [f"H{h}" for h in range(n_heads)]}
    elif kinds == {"mlp"}:
        axes, shape = ("layer",), (n_layers,)
        labels = {"layer": [f"L{i}" for i in range(n_layers)]}
    else:
        axes, shape, labels = ("component",), (n_c,), {"component": labels_c}
    docs_out = [DocScores(d.tokens, v[:, 0].copy(), d.doc.index, d.doc.line, d.windows)
                for d, v in zip(docs, values)]
    clean = np.concatenate([v[:, 0] for v in values]) if values else np.zeros(0)
    meta = {"kind": "ablation", "components": components, "method": method,
            "value_label": f"mean loss change ({method} ablation minus clean, nats)",
            "clean_loss": float(np.nanmean(clean)) if np.isfinite(clean).any() else float("nan"),
            "ci": "95%, document-clustered standard error", **model_meta(model), **info,
            "patchlab_version": __version__}
    return AblationResult(mean.reshape(shape), axes, labels, lo.reshape(shape), hi.reshape(shape),
                          labels_c, deltas, docs_out, meta)


def ablate(model: Any, texts: Any, components: str = "heads", method: str = "mean", **kwargs: Any) -> AblationResult:
    """Ablate each component in turn over a corpus and measure the change of loss.

    Parameters
    ----------
    model : TransformerBridge
    texts : corpus
        As in :func:`patchlab.token_losses`.
    components : {"heads", "mlps", "all"}
    method : {"mean", "zero", "resample"}
        ``mean``: the component's output (``hook_z`` per head, ``hook_mlp_out``) is replaced by
        its mean over the corpus's own tokens; ``zero``: by zero; ``resample``: by its value at a
        random token of the same batch (seeded by ``seed``).
    batch_tokens, max_tokens, stop, seed
        Tokens per batch, a cap on tokens read, a stop flag, the resampling seed.
    engine : {"auto", "fast", "bridge"}
        ``auto``: plain-torch passes that start each ablated row at its own layer, where the
        architecture allows and its clean losses match the bridge's on the first batch
        (``meta["engine_path"]`` says which ran, ``meta["fallback_reason"]`` why not); ``bridge``:
        full forward passes through TransformerLens hooks.

    Returns
    -------
    AblationResult
        ``.values`` (ablated minus clean loss, ``(layer, head)`` for heads), ``.ci_low`` /
        ``.ci_high``, ``.ranked()``, ``.drilldown("L1H3")`` (per-token change as coloured text).
    """
    return run_to_end(iter_ablate(model, texts, components=components, method=method, **kwargs))
