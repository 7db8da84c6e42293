"""The attribution pass in plain torch on views of the bridge's weights (the fast path's).

Per batch of equal-length pairs: the base prompts run once with autograd from the embeddings
on (the weights are detached views, so no parameter enters the graph), keeping every target
family's activations; the source prompts run once without a graph, from the first position
where the prompts differ (earlier positions are the same in both runs: causal attention), on
the base run's keys and values; ONE ``torch.autograd.grad`` of the summed quantity gives
d quantity / d act for all of them. No hook point fires: the bridge's per-hook Python work is
gone.

Before a model's first pass at a token length, :func:`check` runs the bridge's own hook pass
on the first pair and compares every family's activations (both runs) and gradients with this
pass; a difference sends that model and length to the bridge pass, with the reason recorded.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from patchlab.core.errors import Cancelled
from patchlab.engine.context import StopFlag, source_and_base
from patchlab.engine.fast.backend import weights_for
from patchlab.engine.fast.forward import (
    attend,
    attn_out,
    checkpoint,
    qk_normed,
    qkv,
    rope,
    rotary_tables,
    stopping,
    unembed,
)
from patchlab.engine.fast.verify import TOLS
from patchlab.engine.fast.weights import FastWeights, Layer, Unsupported
from patchlab.engine.tokens import TokenizedPair

NAME = "fast-torch"
#: Families whose hook point holds the per-head tensor ``[batch, head, pos, d_head]`` transposed.
HEADWISE = ("q", "k", "v")

# the fast path's activations work in place; autograd needs out-of-place ones (same math)
_ACTS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_fast": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
    "solu": lambda x: x * torch.softmax(x, dim=-1),
    "solu_ln": lambda x: x * torch.softmax(x, dim=-1),
}

# the source run starts where the prompts first differ (see capture); False: every position
SKIP_SHARED_PREFIX = True
# the self-check's tolerance, in units of the exact fast path's (measured: <= 7e-6 relative in
# float32 on the tiny and embedded models, against 1e-4)
TOL_FACTOR = 1
# model -> {(weights key, n_pos, direction): None (checked) or the reason to use the bridge}
_CHECKED: weakref.WeakKeyDictionary[Any, dict[tuple, tuple[str | None, dict]]] = weakref.WeakKeyDictionary()


def _mlp(w: FastWeights, layer: Layer, act: Callable, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(post, out)``: the MLP's hidden activation (TransformerLens's ``hook_post``) and output."""
    shape = x.shape
    xn = layer.ln2(x).reshape(-1, shape[-1])
    pre = xn @ layer.W_in if layer.b_in is None else torch.addmm(layer.b_in, xn, layer.W_in)
    hidden = act(xn @ layer.W_gate) * pre if layer.W_gate is not None else act(pre)
    if layer.ln_mlp is not None:  # SoLU-LN: hook_post comes after the MLP's own LayerNorm
        hidden = layer.ln_mlp(hidden)
    # the output reads the returned tensor (through a view of it), so its gradient is d q / d post
    post = hidden.view(*shape[:-1], -1)
    flat = post.reshape(-1, post.shape[-1])
    out = flat @ layer.W_out if layer.b_out is None else torch.addmm(layer.b_out, flat, layer.W_out)
    return post, out.view(shape)


def quantity(last: torch.Tensor, answer: torch.Tensor, wrong: torch.Tensor, name: str) -> torch.Tensor:
    """``name`` of each row of ``[n, vocab]`` last-position logits (differentiable)."""
    rows = torch.arange(last.shape[0], device=last.device)
    if name == "logit_diff":
        return last[rows, answer] - last[rows, wrong]
    logprob = torch.log_softmax(last.float(), dim=-1)[rows, answer]
    return logprob if name == "answer_logprob" else logprob.exp()


def forward(w: FastWeights, act: Callable, tokens: torch.Tensor, grad: bool, start: int = 0,
            prefix: list[tuple[torch.Tensor, torch.Tensor]] | None = None
            ) -> tuple[torch.Tensor, dict[str, list[torch.Tensor]]]:
    """The last position's final residual ``[P, d_model]`` and every family's activation per layer.

    Layouts are the hook points' except q/k/v (``[P, head, pos, d_head]``; see HEADWISE).
    With ``grad`` the residual stream requires gradients from the embeddings on, so every
    returned tensor is in the graph; ``acts["kv"]`` holds each layer's rotated keys and values
    (detached). ``start > 0`` runs positions ``start ..`` only, attending to ``prefix``
    (another run's ``kv`` for the earlier positions). Mirrors
    :func:`patchlab.engine.fast.forward.base_runs`.
    """
    T = int(tokens.shape[-1])
    x = w.W_E[tokens[:, start:]]
    if w.embed_scale is not None:
        x = x * torch.tensor(w.embed_scale, dtype=x.dtype)
    if w.W_pos is not None:
        x = x + w.W_pos[start:T]
    if grad:
        x.requires_grad_(True)  # a fresh tensor, not a weight: the graph starts here
    types = sorted({ly.rope_type for ly in w.layers if ly.rope_type is not None})
    like = w.W_E[tokens[:1, :1]].expand(1, T, -1)
    tables = {t: rotary_tables(w, T, like, t) for t in types} or None
    cos, sin = tables[types[0]] if tables else rotary_tables(w, T, like)
    qpos = torch.arange(start, T, device=x.device)
    acts: dict[str, list] = {k: [] for k in (
        "resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "z", "q", "k", "v", "pattern", "post", "kv")}
    for li, layer in enumerate(w.layers):
        checkpoint()  # the stop flag, between blocks
        acts["resid_pre"].append(x)
        q, k, v = qkv(w, layer, x)
        lcos, lsin = tables[layer.rope_type] if layer.rope_type is not None and tables else (cos, sin)
        if lcos is not None:
            lcos, lsin = lcos[start:], lsin[start:]
        kr = rope(qk_normed(layer, k, "k"), lcos, lsin, w.rotary_dim)
        keys, values = kr, v
        if start:  # the earlier positions' keys and values, from the run that computed them
            keys, values = (torch.cat([p, t], dim=2) for p, t in zip(prefix[li], (kr, v)))
        acts["kv"].append((kr.detach(), v.detach()))
        z, pattern = attend(w, rope(qk_normed(layer, q, "q"), lcos, lsin, w.rotary_dim), keys, values, qpos, li)
        a = attn_out(w, layer, z)
        if w.parallel:
            post, m = _mlp(w, layer, act, x) if not w.attn_only else (None, torch.zeros_like(x))
            x = x + a + m
        else:
            if layer.post_attn is not None:
                a = layer.post_attn(a)
            mid = x + a
            acts["resid_mid"].append(mid)
            if w.attn_only:
                post, m = None, torch.zeros_like(mid)
            else:
                post, m = _mlp(w, layer, act, mid)
                if layer.post_mlp is not None:
                    m = layer.post_mlp(m)
            x = mid + m
        for name, val in (("resid_post", x), ("attn_out", a), ("mlp_out", m), ("z", z), ("q", q), ("k", k),
                          ("v", v), ("pattern", pattern), ("post", post)):
            if val is not None:
                acts[name].append(val)
    return x[:, -1], acts


def _pos_dim(act_name: str) -> int:
    """The position axis of a family's tensor as :func:`forward` returns it."""
    return 2 if act_name in ("q", "k", "v", "pattern") else 1


def weights(model: Any) -> tuple[FastWeights, Callable]:
    """The fast path's weights and an out-of-place activation; raises :class:`Unsupported`."""
    w = weights_for(model)
    name = getattr(model.cfg, "act_fn", None)
    if not w.attn_only and name not in _ACTS:
        raise Unsupported(f"activation {name!r}")
    return w, _ACTS.get(name, F.gelu)


def capture(model: Any, tps: Sequence[TokenizedPair], direction: str, qname: str, stop: StopFlag,
            families: Sequence[str]):
    """``(last, deltas, grads)`` for the pairs ``tps`` of one length.

    ``last`` is ``[2n, vocab]`` (source rows, then base rows), ``deltas[act]`` and
    ``grads[act]`` are per-layer lists of ``[n, ...]`` tensors (``source - base`` and the base
    run's gradient) in the hook points' layout; a gradient the quantity does not reach is None.
    """
    w, act = weights(model)
    src_run, base_run = source_and_base(direction)
    device = w.W_E.device
    src_tok = torch.cat([tp.tokens(src_run) for tp in tps]).to(device)
    base_tok = torch.cat([tp.tokens(base_run) for tp in tps]).to(device)
    T = int(src_tok.shape[-1])
    # causal attention: where the prompts agree, both runs' activations are the same, so the
    # source run starts at the first differing position on the base run's keys and values
    same = (src_tok == base_tok).all(dim=0)
    start = int(same.int().cumprod(0).sum()) if SKIP_SHARED_PREFIX else 0
    start = min(start, T - 1)  # the last position gives the source run's logits
    with stopping(stop):
        with torch.inference_mode(False), torch.enable_grad():
            base_x, base_acts = forward(w, act, base_tok, grad=True)
            with torch.no_grad():
                src_x, src_acts = forward(w, act, src_tok, grad=False, start=start, prefix=[
                    (k[:, :, :start], v[:, :, :start]) for k, v in base_acts["kv"]])
            # one unembedding for both runs: it reads the whole [d_model, vocab] matrix once
            n = len(tps)
            logits = unembed(w, torch.cat([base_x, src_x]))
            base_last, src_last = logits[:n], logits[n:].detach()
            if stop():  # before the backward
                raise Cancelled("Stopped.")
            answer = torch.tensor([tp.answer_id for tp in tps], device=device)
            wrong = torch.tensor([tp.wrong_id for tp in tps], device=device)
            total = quantity(base_last, answer, wrong, qname).sum()
            # resid_post[l] is resid_pre[l + 1]: ask autograd for each tensor once
            unique: dict[int, torch.Tensor] = {}
            for act_name in families:
                for t in base_acts[act_name]:
                    unique.setdefault(id(t), t)
            got = torch.autograd.grad(total, list(unique.values()), allow_unused=True)
            by_id = {i: g for i, g in zip(unique, got)}
    deltas: dict[str, list[torch.Tensor]] = {}
    grads: dict[str, list[torch.Tensor | None]] = {}
    for act_name in families:
        deltas[act_name], grads[act_name] = [], []
        for li, b in enumerate(base_acts[act_name]):
            g = by_id[id(b)]
            b = b.detach()
            d = torch.zeros_like(b)  # exactly zero before the first difference, as in the bridge
            dim = _pos_dim(act_name)
            d.narrow(dim, start, T - start).copy_(src_acts[act_name][li] - b.narrow(dim, start, T - start))
            if act_name in HEADWISE:  # the hook's layout [n, pos, head, d_head]
                d, g = d.transpose(1, 2), None if g is None else g.transpose(1, 2)
            deltas[act_name].append(d)
            grads[act_name].append(g)
    last = torch.cat([src_last, base_last.detach()])
    return last, deltas, grads


def _differ(ours: torch.Tensor | None, ref: torch.Tensor | None) -> float:
    """Max abs difference scaled by the reference's size (inf when exactly one is missing)."""
    if ours is None or ref is None:
        return 0.0 if ours is None and ref is None else float("inf")
    if ours.shape != ref.shape:
        return float("inf")
    a, b = ours.double(), ref.double()
    return float((a - b).abs().max()) / max(1e-6, float(b.abs().max()))


def compare(fast: tuple, bridge: tuple, tol: float) -> str | None:
    """None when both passes agree on the logits and every family's deltas and gradients."""
    (f_last, f_deltas, f_grads), (b_last, b_deltas, b_grads) = fast, bridge
    err = _differ(f_last, b_last)
    if not err <= tol:
        return f"its plain-torch logits differ from the bridge's by {err:.2g} (tolerance {tol:g})"
    for act_name, refs in b_deltas.items():
        if len(f_deltas.get(act_name, [])) != len(refs):
            return f"its plain-torch pass has no {act_name} at every layer, the bridge has"
        for layer, ref in enumerate(refs):
            for what, ours, theirs in (("activation change", f_deltas[act_name][layer], ref),
                                       ("gradient", f_grads[act_name][layer], b_grads[act_name][layer])):
                err = _differ(ours, theirs)
                # relative to the largest element: a gradient of size 1e-9 next to 1 is noise
                if not err <= tol:
                    return (f"its plain-torch {what} of {act_name} at layer {layer} differs from the bridge's "
                            f"by {err:.2g} (tolerance {tol:g})")
    return None


def check(model: Any, mkey: tuple, tp: TokenizedPair, direction: str, qname: str, stop: StopFlag,
          bridge_capture: Callable, families: Sequence[str]):
    """``(reason, unavailable, spare)``: reason is None when this pass may serve ``model`` at
    ``tp``'s length (checked once per model state, length and direction), else why the
    bridge's pass runs; ``unavailable`` holds the families the bridge's pass could not
    estimate (missing hooks, no gradient), which this pass leaves out too. ``spare`` is None
    when the answer was remembered, else both passes' captures of ``tp`` for ``qname``
    (``{"fast": (last, deltas, grads), "bridge": (last, deltas, grads, unavailable)}``), so a
    one-pair batch need not run again."""
    key = (mkey, tp.n_pos, direction)
    seen = _CHECKED.setdefault(model, {})
    if key in seen:
        return (*seen[key], None)
    spare = None
    try:
        w, _ = weights(model)
    except Unsupported as exc:
        result: tuple[str | None, dict] = (f"the fast path does not implement this architecture ({exc})", {})
    else:
        bridge = bridge_capture(model, [tp], direction, qname, stop, families)
        unavailable = bridge[3]
        ours = capture(model, [tp], direction, qname, stop, [a for a in families if a not in unavailable])
        result = (compare(ours, bridge[:3], TOL_FACTOR * TOLS.get(w.dtype, TOLS[torch.float16])), unavailable)
        spare = {"fast": ours, "bridge": bridge}
    seen[key] = result
    return (*result, spare)


def clear_checks() -> None:
    _CHECKED.clear()
