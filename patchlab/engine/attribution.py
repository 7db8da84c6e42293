"""Attribution patching: a first-order estimate of every cell from one backward pass.

estimate(cell) = (source act - base act) . d quantity / d act, with the gradient taken in the
base (unpatched) run. Each raw quantity is reported as an estimated patched value:
base value + estimated change. Works for every target through the bridge's hooks.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from patchlab.core.metrics import RAW
from patchlab.engine.context import StopFlag, SweepContext, check_stop, hook_name

NAME = "attribution"


def _quantities(last: torch.Tensor, answer_id: int, wrong_id: int) -> torch.Tensor:
    """The four raw quantities, one per batch row: row r gives RAW[r] of its own logits."""
    logprobs = torch.log_softmax(last.float(), dim=-1)
    values = {
        "logit_diff": last[0, answer_id] - last[0, wrong_id],
        "answer_prob": logprobs[1, answer_id].exp(),
        "answer_logprob": logprobs[2, answer_id],
        "wrong_prob": logprobs[3, wrong_id].exp(),
    }
    return torch.stack([values[q] for q in RAW])


def gradients(ctx: SweepContext, p: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Base-run activations and the gradient of each raw quantity at every layer's target.

    Returns ``acts[name] [1, ...]`` and ``grads[name] [len(RAW), ...]``: one forward pass of
    the base prompt copied once per quantity and one backward pass for all of them.
    """
    names = [hook_name(ctx.target, layer) for layer in range(ctx.n_layers)]
    tokens = ctx.base_tokens(p).expand(len(RAW), -1)
    zeros: dict[str, torch.Tensor] = {}
    acts: dict[str, torch.Tensor] = {}

    def hook(act, hook, name):  # noqa: ARG001 - TransformerLens hook signature
        # adding a zero leaf exposes d/d act without cutting the graph between layers
        z = torch.zeros_like(act, requires_grad=True)
        zeros[name] = z
        acts[name] = act[:1].detach().clone()
        return act + z

    tp = ctx.pairs[p]
    with torch.inference_mode(False), torch.enable_grad():
        fwd = [(n, lambda a, hook, n=n: hook_fn(a, hook, n)) for n in names]
        hook_fn = hook
        logits = ctx.model.run_with_hooks(tokens, fwd_hooks=fwd)
        total = _quantities(logits[:, -1], tp.answer_id, tp.wrong_id).sum()
        grads = torch.autograd.grad(total, [zeros[n] for n in names], allow_unused=True)
    out = {}
    for n, g in zip(names, grads):
        out[n] = torch.zeros_like(zeros[n]) if g is None else g.detach()
    return acts, out


def _reduce(prod: torch.Tensor, act: str, axes: tuple[str, ...]) -> torch.Tensor:
    """Sum ``[Q, ...]`` elementwise products over everything but the target's cell axes."""
    inner = axes[1:]
    if act == "pattern":  # [Q, head, dest, src]
        return prod.sum(dim=(2, 3)) if inner == ("head",) else prod.sum(dim=3)
    if "neuron" in inner:  # [Q, pos, d_mlp]
        return prod.sum(dim=1) if inner == ("neuron",) else prod
    if prod.dim() == 3:  # [Q, pos, d_model]
        return prod.sum(dim=2)
    # [Q, pos, head, d_head]
    return prod.sum(dim=3) if inner == ("pos", "head") else prod.sum(dim=(1, 3))


def iter_rows(ctx: SweepContext, stop: StopFlag, batch_size: int | None = None) -> Iterator[tuple[int, dict[str, np.ndarray]]]:  # noqa: ARG001
    """Yield ``(layer, raw)`` per layer with estimated patched values of each raw quantity."""
    est = {q: np.full((len(ctx.pairs), *ctx.shape), np.nan) for q in RAW}
    for p in range(len(ctx.pairs)):
        check_stop(stop)
        acts, grads = gradients(ctx, p)
        for layer in range(ctx.n_layers):
            name = hook_name(ctx.target, layer)
            src = ctx.source_caches[p][name]
            base = ctx.base_caches[p][name] if ctx.base_caches else acts[name]
            delta = (src.to(grads[name].dtype) - base.to(grads[name].dtype))
            contrib = _reduce(delta * grads[name], ctx.target.act, ctx.target.axes).double().cpu().numpy()
            for qi, q in enumerate(RAW):
                est[q][p, layer] = ctx.base_raw[q][p] + contrib[qi]
    for layer in range(ctx.n_layers):
        yield layer, {q: est[q][:, layer] for q in RAW}
