"""A neuron screen of one MLP layer: attribution estimate for all, exact patching of the top k,
direct logit attribution per neuron and each neuron's output tokens.

A neuron is one input of the MLP's down projection (``hook_post``; ``act(gate) * up`` in gated
MLPs); patching it at all positions adds ``(source - base) * W_out[n]`` to the residual stream.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Sequence
from typing import Any

import numpy as np
import torch

from patchlab.core.errors import InputError, TargetUnavailableError
from patchlab.core.metrics import RAW, aggregate, base_metric
from patchlab.core.neurons import NeuronResult
from patchlab.core.pairs import PromptPair
from patchlab.engine.attribution import check_available
from patchlab.engine.attribution_pass import estimates
from patchlab.engine.context import check_stop, hook_name, source_and_base
from patchlab.engine.decompose import _direction
from patchlab.engine.paths import PathEvent, finish, open_run, rows_per_pass
from patchlab.engine.pathsetup import PathSetup, meta, no_mlp_message

TARGET = "mlp_post_neuron"


def check_layer(model: Any, layer: Any) -> int:
    msg = no_mlp_message(model, "MLP neuron")
    if msg:
        raise TargetUnavailableError(msg)
    L = int(model.cfg.n_layers)
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not 0 <= int(layer) < L:
        raise InputError(f"The MLP layer {layer!r} is outside the model: layers are 0..{L - 1}.")
    return int(layer)


def check_neuron(model: Any, n: Any) -> int:
    d_mlp = int(model.cfg.d_mlp)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 <= int(n) < d_mlp:
        raise InputError(f"The neuron index {n!r} is out of range: this model's MLPs have neurons 0..{d_mlp - 1}.")
    return int(n)


def output_tokens(model: Any, layer: int, neurons: Sequence[int], k: int = 5) -> dict[str, dict[str, list[list[Any]]]]:
    """Top promoted and suppressed tokens of each neuron by ``W_out[n] @ W_U``."""
    layer = check_layer(model, layer)
    idx = [check_neuron(model, n) for n in neurons]
    if not idx:
        return {}
    with torch.inference_mode():
        W_out = model.blocks[layer].mlp.W_out if hasattr(model.blocks[layer].mlp, "W_out") else model.W_out[layer]
        scores = W_out[idx].float() @ model.W_U.float()  # [k, vocab]
        k = min(k, scores.shape[-1])
        hi, lo = scores.topk(k, dim=-1), (-scores).topk(k, dim=-1)
    out = {}
    for j, n in enumerate(idx):
        out[str(n)] = {
            "promoted": [[str(model.to_string(int(i))), float(v)] for v, i in zip(hi.values[j], hi.indices[j])],
            "suppressed": [[str(model.to_string(int(i))), float(-v)] for v, i in zip(lo.values[j], lo.indices[j])],
        }
    return out


def _dla(st: PathSetup, layer: int) -> np.ndarray:
    """Per-neuron DLA on the clean run, mean over pairs: post[n] * (W_out[n] @ d) / final scale."""
    ctx, w = st.ctx, st.w
    name = hook_name(ctx.target, layer)
    clean_is_src = source_and_base(ctx.direction)[0] == "clean"
    W = w.layers[layer].W_out.double()
    if not w.ln_final.rms:  # LayerNorm centres every write before scaling it
        W = W - W.mean(-1, keepdim=True)
    out = []
    for p, (tp, pr) in enumerate(zip(ctx.pairs, st.runs)):
        caches = ctx.source_caches if clean_is_src else ctx.base_caches
        post = caches[p][name][0, -1].double()
        final = (pr.src if clean_is_src else pr.base).post[-1][-1].double()
        var = final.pow(2).mean() if w.ln_final.rms else final.var(unbiased=False)
        scale = torch.sqrt(var + w.ln_final.eps)
        d = _direction(ctx.model, tp.answer_id, tp.wrong_id).resid
        out.append((post * (W @ d) / scale).cpu().numpy())
    return np.mean(out, axis=0)


def iter_neurons(
    model: Any,
    pairs: PromptPair | Sequence[PromptPair],
    layer: int,
    *,
    k: int = 50,
    metric: str = "logit_diff_recovered",
    direction: str = "denoise",
    n_tokens: int = 5,
    stop: Any = None,
    batch_size: int | None = None,
) -> Generator[PathEvent, None, NeuronResult]:
    """The neuron screen as a generator (events: estimate, then exact per pair); see :func:`neurons`."""
    def checked_layer(asked: Any = layer) -> int:
        good = check_layer(model, asked)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise InputError(f"k must be a whole number of neurons to patch exactly (0 or more), got {k!r}.")
        return good

    t0, stop_fn, layer, st = open_run(model, pairs, metric, direction, stop, checked_layer,
                                      target=TARGET, cache_base=True)
    ctx = st.ctx
    name = hook_name(ctx.target, layer)
    d_mlp = int(ctx.source_caches[0][name].shape[-1])
    k = min(int(k), d_mlp)
    n_pairs = len(st.runs)
    bm = base_metric(metric)
    est_raw = {q: np.zeros((n_pairs, d_mlp)) for q in RAW}
    # attribution helper: the shared one-pass estimate (cached per pair), for the metric's quantity only
    for p, est in enumerate(estimates(model, ctx.pairs, direction, bm, stop_fn)):
        check_available(model, ctx.target, est)
        est_raw[bm][p] = ctx.base_raw[bm][p] + est.contrib["post"][layer].sum(axis=0, dtype=np.float64)
    base_b, src_b = ctx.base_raw[bm], ctx.source_raw[bm]
    estimate, est_pp = aggregate(metric, est_raw[bm], base_b, src_b)
    unpatched = aggregate(metric, base_b[:, None], base_b, src_b)[0][0]
    top = [int(n) for n in np.argsort(-np.abs(estimate - unpatched), kind="stable")[:k]]
    yield PathEvent(done=1, total=1 + n_pairs, layer=layer, elapsed=time.perf_counter() - t0)
    exact_raw = {q: np.full((n_pairs, d_mlp), np.nan) for q in RAW}
    if top:
        cap = rows_per_pass(st, batch_size)
        W_out = st.w.layers[layer].W_out[top]  # [k, d]
        for p, pr in enumerate(st.runs):
            check_stop(stop_fn)
            with torch.inference_mode():
                dpost = (ctx.source_caches[p][name][0] - ctx.base_caches[p][name][0])[pr.p0 :, top]  # [n, k]
                rows = pr.base.post[layer][pr.p0 :] + dpost.T.unsqueeze(-1) * W_out.unsqueeze(1)
                q = finish(st, pr, layer, "post", rows, cap)
            for name_q in RAW:
                exact_raw[name_q][p, top] = q[name_q]
            yield PathEvent(done=2 + p, total=1 + n_pairs, layer=layer, elapsed=time.perf_counter() - t0)
    exact, ex_pp = aggregate(metric, exact_raw[bm], base_b, src_b)
    with torch.inference_mode():
        dla = _dla(st, layer)
    tokens = output_tokens(model, layer, top, n_tokens) if n_tokens > 0 else {}
    extra = {
        "target": f"neurons:L{layer}",
        "target_label": f"MLP {layer} neurons: estimate for all, exact for the top {k}",
        "layer": layer,
        "k": k,
        "unpatched": float(unpatched),
        "dla_units": "logit difference (answer - wrong), clean run, mean over pairs",
    }
    return NeuronResult(
        layer=layer, estimate=estimate, exact=exact, dla=dla, top=top, tokens=tokens,
        per_pair=np.stack([est_pp, ex_pp], axis=1),
        meta=meta(st, "neurons", time.perf_counter() - t0, extra),
    )


def neurons(model: Any, pairs: PromptPair | Sequence[PromptPair], layer: int, k: int = 50, **kwargs: Any) -> NeuronResult:
    """Screen every neuron of one MLP layer.

    Parameters
    ----------
    model : TransformerBridge
    pairs : PromptPair or list of PromptPair
    layer : int
        The MLP layer.
    k : int
        How many neurons (largest estimated effect) to patch exactly.
    metric, direction : str
        As in :func:`patchlab.patch`.
    n_tokens : int
        Promoted / suppressed output tokens listed per top neuron.

    Returns
    -------
    NeuronResult
        ``estimate`` (attribution patching, every neuron), ``exact`` (top ``k``, NaN elsewhere),
        ``dla`` (clean run; sums to the MLP's DLA minus its output bias), ``top``, ``tokens``.
    """
    from patchlab.engine.sweep import run_to_end

    return run_to_end(iter_neurons(model, pairs, layer, k=k, **kwargs))
