"""Residual-stream decomposition of the logit difference: DLA per component and head, logit lens."""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from patchlab._version import __version__
from patchlab.core.decomposition import DecomposeResult
from patchlab.core.pairs import PromptPair
from patchlab.engine.context import as_stop, check_stop
from patchlab.engine.loading import model_info
from patchlab.engine.quantities import last_quantities, top_k
from patchlab.engine.tokens import tokenize_pair


@dataclass
class DecomposeEvent:
    done: int
    total: int
    stage: str
    elapsed: float


def _ln_final_params(model: Any) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Weight and bias the final norm applies after the scale (None when folded or absent)."""
    ln = getattr(model, "ln_final", None)
    comp = getattr(ln, "_original_component", ln)
    w = getattr(comp, "weight", None)
    b = getattr(comp, "bias", None)
    return (w.detach() if isinstance(w, torch.Tensor) else None,
            b.detach() if isinstance(b, torch.Tensor) else None)


@dataclass
class _Direction:
    """Answer-minus-wrong direction before and after the final norm's weight and bias."""

    unembed: torch.Tensor  # on the final norm's output (logit lens recomputes the norm)
    unembed_const: float  # unembedding bias difference
    resid: torch.Tensor  # on the scaled residual (norm weight folded in)
    resid_const: float  # unembedding bias + final norm bias terms


def _direction(model: Any, answer_id: int, wrong_id: int) -> _Direction:
    W_U = model.W_U.detach()
    d = (W_U[:, answer_id] - W_U[:, wrong_id]).double()
    const = 0.0
    b_U = getattr(model, "b_U", None)
    if isinstance(b_U, torch.Tensor):
        const += float(b_U[answer_id] - b_U[wrong_id])
    w, b = _ln_final_params(model)
    resid, resid_const = d, const
    if b is not None:
        resid_const += float(b.double() @ d)
    if w is not None:
        resid = d * w.double()
    return _Direction(d, const, resid, resid_const)


def _project(cache: Any, stack: torch.Tensor, d: torch.Tensor) -> np.ndarray:
    normed = cache.apply_ln_to_stack(stack, layer=-1, pos_slice=-1)
    return (normed[:, 0].double() @ d).cpu().numpy()


def _one_run(model: Any, tokens: torch.Tensor, direction: _Direction) -> dict[str, Any]:
    # no mid-layer residual with parallel attention+MLP or without MLPs
    no_mid = bool(getattr(model.cfg, "parallel_attn_mlp", False) or getattr(model.cfg, "attn_only", False))
    logits, cache = model.run_with_cache(tokens)
    comps, comp_labels = cache.decompose_resid(layer=-1, pos_slice=-1, return_labels=True)
    heads, _ = cache.stack_head_results(layer=-1, pos_slice=-1, return_labels=True)
    lens, lens_labels = cache.accumulated_resid(
        layer=None, incl_mid=not no_mid, pos_slice=-1, apply_ln=True, return_labels=True
    )
    comp_vals = _project(cache, comps, direction.resid)
    head_vals = _project(cache, heads, direction.resid).reshape(model.cfg.n_layers, -1)
    # the logit lens re-applies the whole final norm (weight and bias) to each partial sum
    lens_vals = (lens[:, 0].double() @ direction.unembed).cpu().numpy() + direction.unembed_const
    return {
        "logits": logits[0, -1],
        "comp_labels": list(comp_labels) + ["bias"],
        "components": np.append(comp_vals, direction.resid_const),
        "heads": head_vals,
        "lens_labels": list(lens_labels),
        "lens": lens_vals,
    }


def iter_decompose(
    model: Any, pair: PromptPair, *, k: int = 10, stop: Any = None
) -> Generator[DecomposeEvent, None, DecomposeResult]:
    """Decompose the logit difference of both runs; yields one event per run.

    Returns
    -------
    DecomposeResult
        Components (embeddings, each attention layer, each MLP, constant ``bias``) sum to the
        total logit difference; per-head values and the logit lens as TransformerLens's
        ``decompose_resid`` / ``stack_head_results`` / ``accumulated_resid`` +
        ``apply_ln_to_stack`` give them, projected on the answer-minus-wrong direction.
    """
    stop_fn = as_stop(stop)
    t0 = time.perf_counter()
    tp = tokenize_pair(model, pair)
    direction = _direction(model, tp.answer_id, tp.wrong_id)
    parts = {}
    runs: dict[str, Any] = {}
    for i, (which, toks, strs) in enumerate(
        (("clean", tp.clean, tp.clean_str), ("corrupted", tp.corrupted, tp.corrupted_str))
    ):
        check_stop(stop_fn)
        with torch.inference_mode():
            part = _one_run(model, toks, direction)
        q = last_quantities(part["logits"][None], tp.answer_id, tp.wrong_id)
        runs[which] = {name: float(v[0]) for name, v in q.items()}
        runs[which]["top_k"] = [[tok, p] for tok, p in top_k(part["logits"], model, k)]
        runs[which]["tokens"] = list(strs)
        parts[which] = part
        yield DecomposeEvent(done=i + 1, total=2, stage=which, elapsed=time.perf_counter() - t0)
    info = model_info(model)
    c, r = parts["clean"], parts["corrupted"]
    return DecomposeResult(
        component_labels=c["comp_labels"],
        components=np.stack([c["components"], r["components"]]),
        heads=np.stack([c["heads"], r["heads"]]),
        lens_labels=c["lens_labels"],
        logit_lens=np.stack([c["lens"], r["lens"]]),
        total=np.array([runs["clean"]["logit_diff"], runs["corrupted"]["logit_diff"]]),
        runs=runs,
        meta={
            "model": info.name,
            "model_info": info.to_dict(),
            "processing": info.processing,
            "pair": pair.to_dict(),
            "patchlab_version": __version__,
            "elapsed_s": time.perf_counter() - t0,
        },
    )


def decompose(model: Any, pair: PromptPair, **kwargs: Any) -> DecomposeResult:
    """Residual-stream decomposition of the logit difference for both runs.

    See :func:`iter_decompose`.
    """
    from patchlab.engine.sweep import run_to_end

    return run_to_end(iter_decompose(model, pair, **kwargs))
