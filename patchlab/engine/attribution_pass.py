"""The attribution pass: one forward and one backward per batch of equal-length pairs.

For every pair the source and base prompts run once, and one backward of the chosen quantity
(summed over the batch's pairs, whose rows are independent) gives d quantity / d act of the
base rows at every hook point of every target family. Two implementations give the same
numbers: :mod:`patchlab.engine.attribution_fast` (plain torch on the bridge's weights, used
where its once-per-model-and-length check against the bridge passes) and
:func:`bridge_capture` (the bridge's own forward, a zero leaf added at each hook point; the
fallback, and the reference of that check). Each family's products ``(source act - base act)
* grad`` are summed over the feature axis right away and kept per pair (a few kB), in a small
cache keyed on the model's parameters, the pair, the quantity and the direction: switching
targets afterwards runs nothing.
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
from patchlab.engine import attribution_fast as fast
from patchlab.engine.attribution_fast import quantity
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
#: The plain-torch pass (``attribution_fast``) where it is checked for the model; False: always the bridge's.
FAST = True
BRIDGE = "bridge-hooks"
FAST_OFF = "the plain-torch pass is switched off (attribution_pass.FAST)"


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
    engine: str = ""  # which pass computed it: "fast-torch" or "bridge-hooks"
    fallback: str = ""  # why the bridge's pass ran instead of the plain-torch one

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


def bridge_capture(model: Any, tps: Sequence[TokenizedPair], direction: str, qname: str, stop: StopFlag,
                   families: Sequence[str] = FAMILIES):
    """One forward and one backward through the bridge's hooks for pairs of one length.

    Returns ``(last, deltas, grads, unavailable)``: ``last`` ``[2n, vocab]`` (source rows, then
    base rows); ``deltas[act]`` / ``grads[act]`` per-layer lists of ``[n, ...]`` tensors in the
    hook's layout (``source - base``, and d quantity / d act of the base rows); ``unavailable``
    as in :class:`PairEstimate` (families in it have no deltas or grads).
    """
    src_run, base_run = source_and_base(direction)
    n = len(tps)
    device = tps[0].clean.device
    tokens = torch.cat([tp.tokens(src_run) for tp in tps] + [tp.tokens(base_run) for tp in tps]).to(device)
    n_layers = int(model.cfg.n_layers)
    names = {act: [tl_utils.get_act_name(act, layer) for layer in range(n_layers)] for act in families}
    unavailable = missing_hooks(model, families)
    hooked = [nm for act, act_names in names.items() if act not in unavailable for nm in act_names]
    in_place = set(names.get("resid_mid", []))
    leaves: dict[str, torch.Tensor] = {}
    deltas: dict[str, torch.Tensor] = {}

    def make_hook(name: str, in_place: bool):
        def hook(act, hook):  # noqa: ARG001 - TransformerLens hook signature
            if stop():  # cancel lands within one hook point, inside the forward
                raise Cancelled("Stopped.")
            deltas[name] = (act[:n] - act[n:]).detach()
            # a zero leaf exposes d quantity / d act without cutting the graph between layers
            leaf = torch.zeros_like(act, requires_grad=True)
            leaves[name] = leaf
            # in place where exact patching edits in place for the same reason: the bridge's
            # hook_resid_mid is the MLP norm's input, and only an edit of that very tensor also
            # reaches the residual stream the block adds the MLP output to
            return act.add_(leaf) if in_place else act + leaf

        return hook

    params = [p for p in model.parameters() if p.requires_grad]
    try:
        # parameters out of the graph: no weight gradients are built or kept
        for p in params:
            p.requires_grad_(False)
        with torch.inference_mode(False), torch.enable_grad():
            logits = model.run_with_hooks(tokens, fwd_hooks=[(nm, make_hook(nm, nm in in_place)) for nm in hooked], **_logits_kwargs(model))
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
    out_d: dict[str, list[torch.Tensor]] = {}
    out_g: dict[str, list[torch.Tensor | None]] = {}
    for act in families:
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
            out_d[act] = [deltas[nm] for nm in act_names]
            out_g[act] = [grads[nm][n:] for nm in act_names]
    return last.detach(), out_d, out_g, unavailable


def has_user_hooks(model: Any) -> bool:
    """Hooks the caller left on the model (they change what the pass computes)."""
    # TransformerLens's own records, and torch hooks registered on a hook point directly
    return any(getattr(hp, "fwd_hooks", None) or getattr(hp, "bwd_hooks", None) or getattr(hp, "_forward_hooks", None)
               for hp in model.hook_dict.values())


def missing_hooks(model: Any, families: Sequence[str] = FAMILIES) -> dict[str, tuple[str, str]]:
    """Families without a hook point at some layer: ``{act: ("missing", first missing hook)}``."""
    hook_dict = model.hook_dict  # the bridge rebuilds this mapping on every access
    out = {}
    for act in families:
        missing = [nm for nm in (tl_utils.get_act_name(act, layer) for layer in range(int(model.cfg.n_layers)))
                   if nm not in hook_dict]
        if missing:
            out[act] = ("missing", missing[0])
    return out


def reduce(model: Any, tps: Sequence[TokenizedPair], last: torch.Tensor, deltas: dict, grads: dict,
           unavailable: dict[str, tuple[str, str]], engine: str) -> list[PairEstimate]:
    """Each pair's :class:`PairEstimate` from a capture (either pass's; see :func:`bridge_capture`)."""
    n = len(tps)
    contrib = {act: torch.stack([_reduce_features(act, d, g) for d, g in zip(deltas[act], grads[act])], dim=1)
               for act in FAMILIES if act in deltas and act not in unavailable}
    out = []
    for i, tp in enumerate(tps):
        raw = last_quantities(last[[i, n + i]], tp.answer_id, tp.wrong_id)
        out.append(PairEstimate(
            source_raw={q: float(raw[q][0]) for q in RAW},
            base_raw={q: float(raw[q][1]) for q in RAW},
            contrib={act: c[i].cpu().numpy().astype(np.float32 if act == "post" else np.float64)
                     for act, c in contrib.items()},
            unavailable=dict(unavailable),
            model_ref=weakref.ref(model),
            engine=engine,
        ))
    return out


def _run_batch(model: Any, tps: Sequence[TokenizedPair], direction: str, qname: str, stop: StopFlag,
               mkey: tuple, hooked: bool) -> list[PairEstimate]:
    """One forward and one backward for pairs of one length: plain torch where it is checked
    against the bridge for this model and length, else through the bridge's hooks."""
    global PASSES
    engine, reason, got = BRIDGE, FAST_OFF, None
    if FAST and hooked:
        reason = "hooks are attached to the model (only the bridge's pass runs them)"
    elif FAST:
        reason, unavailable, spare = fast.check(model, mkey, tps[0], direction, qname, stop, bridge_capture, FAMILIES)
        one = spare is not None and len(tps) == 1  # the check just ran both passes on this very pair
        if reason is None:
            engine = fast.NAME
            families = [act for act in FAMILIES if act not in unavailable]
            got = (*(spare["fast"] if one else fast.capture(model, tps, direction, qname, stop, families)), unavailable)
        elif one:
            got = spare["bridge"]
    if got is None:
        got = bridge_capture(model, tps, direction, qname, stop)
    last, deltas, grads, unavailable = got
    PASSES += 1
    out = reduce(model, tps, last, deltas, grads, unavailable, engine)
    for est in out:
        est.fallback = reason or ""
    return out


def estimates(model: Any, tps: Sequence[TokenizedPair], direction: str, qname: str,
              stop: StopFlag, batch_size: int | None = None) -> list[PairEstimate]:
    """Every pair's :class:`PairEstimate` for ``qname``, from the cache or new passes.

    Pairs not cached are grouped by length (rows of one batch must align position by
    position) and run in batches that fit the memory budget; ``stop`` is checked between
    batches, between blocks (plain-torch pass) or in every hook (bridge pass), and before
    each backward.
    """
    if qname not in QUANTITIES:
        raise ValueError(f"attribution estimates one of {QUANTITIES}, not {qname!r}")
    mkey = model_key(model)
    keys = [(mkey, pair_key(tp), qname, direction) for tp in tps]
    # the caller's hooks change the values and are not in the key: run without the cache
    hooked = has_user_hooks(model)
    found: list[PairEstimate | None] = [None if hooked else _cache_get(k, model) for k in keys]
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
            for i, est in zip(chunk, _run_batch(model, [tps[i] for i in chunk], direction, qname, stop, mkey, hooked)):
                found[i] = est
                if not hooked:
                    _cache_put(keys[i], est)
    return [f for f in found if f is not None]
