"""The attribution pass: one forward and one backward per batch of equal-length pairs.

For every pair the source and base prompts run as rows of one batch; a zero leaf added at each
hook point of every target family exposes d quantity / d act of the base rows, and one backward
of the chosen quantity (summed over the batch's pairs, whose rows are independent) fills them
all. Each family's products ``(source act - base act) * grad`` are summed over the feature axis
right away and kept per pair (a few kB), in a small cache keyed on the model's parameters, the
pair, the quantity and the direction: switching targets afterwards runs nothing.
"""

from __future__ import annotations

import inspect
import threading
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformer_lens import utilities as tl_utils

from patchlab.core.errors import Cancelled
from patchlab.core.metrics import RAW
from patchlab.engine.context import StopFlag, source_and_base
from patchlab.engine.memory import choose_batch
from patchlab.engine.quantities import last_quantities
from patchlab.engine.tokens import TokenizedPair

#: TransformerLens activation names of every target family, all estimated by the same pass.
FAMILIES = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "z", "q", "k", "v", "pattern", "post")
#: Raw quantities a pass can differentiate (one per pass; ``wrong_prob`` is no metric).
QUANTITIES = ("logit_diff", "answer_prob", "answer_logprob")

_CACHE_BYTES = 64 << 20
_CACHE_ENTRIES = 1024
_cache: OrderedDict[tuple, PairEstimate] = OrderedDict()
_lock = threading.Lock()
#: Forward + backward passes run so far (tests read it to see a cache hit).
PASSES = 0


@dataclass
class PairEstimate:
    """One pair's share of a pass.

    ``contrib[act]`` is ``(source - base) * grad`` summed over the feature axis:
    ``[layer, pos]`` for residual-stream families, ``[layer, pos, head]`` for q/k/v/z,
    ``[layer, head, dest_pos]`` for the pattern (summed over source positions),
    ``[layer, pos, neuron]`` for MLP neurons (``post``, float32 to keep the cache small).
    ``unavailable[act]`` is ``(reason, hook)`` for families the pass could not estimate:
    ``"missing"`` (no such hook, or it never fired) or ``"no_gradient"`` (the hook fired but
    the quantity does not depend on what it returns, e.g. a pattern the bridge reports after
    the Hugging Face attention module has used it).
    """

    source_raw: dict[str, float]
    base_raw: dict[str, float]
    contrib: dict[str, np.ndarray]
    unavailable: dict[str, tuple[str, str]]
    model_ref: Any = None

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.contrib.values()) + 512


def model_key(model: Any) -> tuple:
    """Identity and state of the weights: a replaced, moved or edited parameter changes it."""
    return (id(model), tuple((id(p), p.data_ptr(), p._version, p.dtype) for p in model.parameters()))


def pair_key(tp: TokenizedPair) -> tuple:
    return (tuple(tp.clean[0].tolist()), tuple(tp.corrupted[0].tolist()), tp.answer_id, tp.wrong_id)


def clear_cache() -> None:
    with _lock:
        _cache.clear()


def _cache_get(key: tuple, model: Any) -> PairEstimate | None:
    with _lock:
        hit = _cache.get(key)
        if hit is None or hit.model_ref() is not model:
            return None
        _cache.move_to_end(key)
        return hit


def _cache_put(key: tuple, value: PairEstimate) -> None:
    with _lock:
        _cache[key] = value
        total = sum(v.nbytes for v in _cache.values())
        while _cache and (total > _CACHE_BYTES or len(_cache) > _CACHE_ENTRIES):
            _, old = _cache.popitem(last=False)
            total -= old.nbytes


def quantity(last: torch.Tensor, answer: torch.Tensor, wrong: torch.Tensor, name: str) -> torch.Tensor:
    """``name`` of each row of ``[n, vocab]`` last-position logits (differentiable)."""
    rows = torch.arange(last.shape[0], device=last.device)
    if name == "logit_diff":
        return last[rows, answer] - last[rows, wrong]
    logprob = torch.log_softmax(last.float(), dim=-1)[rows, answer]
    return logprob if name == "answer_logprob" else logprob.exp()


def _reduce_features(act: str, delta: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """``[n, ...]`` products summed over the feature axis (d_model, d_head or source position).

    MLP neurons (``post``) are cells themselves: their products are kept per neuron.
    """
    prod = delta.float() * grad.float()
    return prod if act == "post" else prod.sum(dim=-1)


def _logits_kwargs(model: Any) -> dict[str, int]:
    """Ask Hugging Face models for the last position's logits only (the metric reads no other).

    The full-vocabulary unembedding of every position, and its backward, cost about a third
    of a GPT-2-small pass at 16 tokens. Models whose forward lacks ``logits_to_keep`` return
    every position; the pass reads ``[:, -1]`` either way.
    """
    hf = getattr(model, "original_model", None)
    try:
        ok = hf is not None and "logits_to_keep" in inspect.signature(hf.forward).parameters
    except (TypeError, ValueError):
        ok = False
    return {"logits_to_keep": 1} if ok else {}


def _bytes_per_pair(model: Any, n_pos: int) -> int:
    """Rough autograd memory of one pair (two rows): activations kept for the backward."""
    cfg = model.cfg
    d_model, n_heads = int(cfg.d_model), int(cfg.n_heads)
    d_mlp = int(getattr(cfg, "d_mlp", None) or 4 * d_model)
    per_layer = n_pos * (24 * d_model + 3 * d_mlp + 6 * n_heads * n_pos)
    return 2 * int(cfg.n_layers) * per_layer * 4


def _run_batch(model: Any, tps: Sequence[TokenizedPair], direction: str, qname: str,
               stop: StopFlag) -> list[PairEstimate]:
    """One forward and one backward for pairs of one length; see the module docstring."""
    global PASSES
    src_run, base_run = source_and_base(direction)
    n = len(tps)
    device = tps[0].clean.device
    tokens = torch.cat([tp.tokens(src_run) for tp in tps] + [tp.tokens(base_run) for tp in tps]).to(device)
    n_layers = int(model.cfg.n_layers)
    names = {act: [tl_utils.get_act_name(act, layer) for layer in range(n_layers)] for act in FAMILIES}
    unavailable: dict[str, tuple[str, str]] = {}
    hooked: list[str] = []
    hook_dict = model.hook_dict  # the bridge rebuilds this mapping on every access
    for act, act_names in names.items():
        missing = [nm for nm in act_names if nm not in hook_dict]
        if missing:
            unavailable[act] = ("missing", missing[0])
        else:
            hooked += act_names
    leaves: dict[str, torch.Tensor] = {}
    deltas: dict[str, torch.Tensor] = {}

    def make_hook(name: str):
        def hook(act, hook):  # noqa: ARG001 - TransformerLens hook signature
            if stop():  # cancel lands within one hook point, inside the forward
                raise Cancelled("Stopped.")
            deltas[name] = (act[:n] - act[n:]).detach()
            # a zero leaf exposes d quantity / d act without cutting the graph between layers
            leaf = torch.zeros_like(act, requires_grad=True)
            leaves[name] = leaf
            return act + leaf

        return hook

    params = [p for p in model.parameters() if p.requires_grad]
    try:
        # parameters out of the graph: no weight gradients are built or kept
        for p in params:
            p.requires_grad_(False)
        with torch.inference_mode(False), torch.enable_grad():
            logits = model.run_with_hooks(tokens, fwd_hooks=[(nm, make_hook(nm)) for nm in hooked], **_logits_kwargs(model))
            last = logits[:, -1]
            if stop():
                raise Cancelled("Stopped.")
            answer = torch.tensor([tp.answer_id for tp in tps], device=last.device)
            wrong = torch.tensor([tp.wrong_id for tp in tps], device=last.device)
            total = quantity(last[n:], answer, wrong, qname).sum()
            fired = [nm for nm in hooked if nm in leaves]
            if fired and total.requires_grad:
                # allow_unused only to detect a missing gradient, which refuses the family below
                grads = dict(zip(fired, torch.autograd.grad(total, [leaves[nm] for nm in fired], allow_unused=True)))
            else:
                grads = dict.fromkeys(fired)
            del logits
            leaves.clear()  # the graph goes with them
    finally:
        for p in params:
            p.requires_grad_(True)
    PASSES += 1
    contrib: dict[str, torch.Tensor] = {}
    for act in FAMILIES:
        if act in unavailable:
            continue
        act_names = names[act]
        not_fired = [nm for nm in act_names if nm not in deltas]
        no_grad = [nm for nm in act_names if nm in deltas and grads.get(nm) is None]
        if not_fired:
            unavailable[act] = ("missing", not_fired[0])
        elif no_grad:
            unavailable[act] = ("no_gradient", no_grad[0])
        else:
            contrib[act] = torch.stack([_reduce_features(act, deltas[nm], grads[nm][n:]) for nm in act_names], dim=1)
    last_d = last.detach()
    out = []
    for i, tp in enumerate(tps):
        raw = last_quantities(last_d[[i, n + i]], tp.answer_id, tp.wrong_id)
        out.append(PairEstimate(
            source_raw={q: float(raw[q][0]) for q in RAW},
            base_raw={q: float(raw[q][1]) for q in RAW},
            contrib={act: c[i].cpu().numpy().astype(np.float32 if act == "post" else np.float64)
                     for act, c in contrib.items()},
            unavailable=dict(unavailable),
            model_ref=weakref.ref(model),
        ))
    return out


def estimates(model: Any, tps: Sequence[TokenizedPair], direction: str, qname: str,
              stop: StopFlag, batch_size: int | None = None) -> list[PairEstimate]:
    """Every pair's :class:`PairEstimate` for ``qname``, from the cache or new passes.

    Pairs not cached are grouped by length (rows of one batch must align position by
    position) and run in batches that fit the memory budget; ``stop`` is checked between
    batches, inside every hook and before each backward.
    """
    if qname not in QUANTITIES:
        raise ValueError(f"attribution estimates one of {QUANTITIES}, not {qname!r}")
    mkey = model_key(model)
    keys = [(mkey, pair_key(tp), qname, direction) for tp in tps]
    found: list[PairEstimate | None] = [_cache_get(k, model) for k in keys]
    todo: dict[int, list[int]] = {}
    for i, hit in enumerate(found):
        if hit is None:
            todo.setdefault(tps[i].n_pos, []).append(i)
    for n_pos, idx in todo.items():
        device = next(iter(model.parameters())).device
        bs = batch_size or choose_batch(_bytes_per_pair(model, n_pos), device, limit=len(idx), cap=64)
        for start in range(0, len(idx), bs):
            if stop():
                raise Cancelled("Stopped.")
            chunk = idx[start:start + bs]
            for i, est in zip(chunk, _run_batch(model, [tps[i] for i in chunk], direction, qname, stop)):
                found[i] = est
                _cache_put(keys[i], est)
    return [f for f in found if f is not None]
