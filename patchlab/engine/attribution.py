"""Attribution patching: a first-order estimate of every cell from one forward and one backward.

estimate(cell) = base value + (source act - base act) . d quantity / d act, with the gradient
taken in the base (unpatched) run, for the one raw quantity the metric is computed from
(``logit_diff`` for both logit-difference metrics, else the metric itself). The pass itself
(:mod:`patchlab.engine.attribution_pass`) estimates every target family at once and is cached
per pair, so a second target on the same pairs costs no forward pass.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from patchlab.core.errors import TargetUnavailableError
from patchlab.core.metrics import RAW, base_metric
from patchlab.core.pairs import PromptPair
from patchlab.core.targets import Target
from patchlab.engine.attribution_pass import PairEstimate, estimates
from patchlab.engine.context import (
    StopFlag,
    SweepContext,
    as_stop,
    hook_name,
    row_shape,
    source_and_base,
    unavailable_message,
    validate,
)

NAME = "attribution"
# id(context) -> the pairs' estimates, for the context's life (see prepare)
_PREPARED: dict[int, list[PairEstimate]] = {}

#: What every attribution result says about its values (``meta["estimate"]["note"]``).
NOTE = ("First-order estimate (attribution patching): the change each patch would make, "
        "extrapolated linearly from the unpatched run's gradient. Estimated probabilities "
        "may leave [0, 1]; rank cells by their change from the unpatched run.")


def _no_gradient_message(model: Any, target: Target, hook: str) -> str:
    cfg = model.cfg
    arch = getattr(cfg, "original_architecture", None) or getattr(cfg, "model_name", "this model")
    return (f"Attribution patching cannot estimate the target {target.name!r} on {arch}: the metric "
            f"does not depend on what the hook {hook} returns (TransformerLens fires it after the "
            "Hugging Face module has already used the values), so its gradient is missing. "
            "Choose another target.")


def check_available(model: Any, target: Target, est: PairEstimate) -> None:
    """Refuse a target the pass could not estimate, never reporting zeros for it."""
    if target.act in est.unavailable:
        why, hook = est.unavailable[target.act]
        if why == "no_gradient":
            raise TargetUnavailableError(_no_gradient_message(model, target, hook))
        raise TargetUnavailableError(unavailable_message(model, target, hook))


def target_contrib(est: PairEstimate, target: Target, layer: int) -> np.ndarray:
    """One pair's estimated change for every cell of ``target`` at ``layer``: ``row_shape``.

    Per layer: a whole ``[layer, pos, neuron]`` map in float64 is tens of MB on GPT-2 small.
    """
    c = est.contrib[target.act][layer]
    inner = target.axes[1:]
    if target.act == "pattern":  # [head, dest]
        return c.sum(axis=1) if inner == ("head",) else c
    if target.act == "post":  # [pos, neuron]
        return c.sum(axis=0, dtype=np.float64) if inner == ("neuron",) else c.astype(np.float64)
    if c.ndim == 1:  # [pos]
        return c
    return c.sum(axis=0) if inner == ("head",) else c  # [pos, head]


def prepare(
    model: Any,
    pairs: PromptPair | Sequence[PromptPair],
    *,
    target: str,
    metric: str = "logit_diff_recovered",
    direction: str = "denoise",
    stop: Any = None,
    batch_size: int | None = None,
) -> SweepContext:
    """Validate inputs and run (or reuse) the attribution pass; both runs' quantities come from it.

    The returned context carries no activation caches: it serves ``method="attribution"`` only.
    """
    tgt, tps = validate(model, pairs, target, metric, direction)
    n_pos = tps[0].n_pos
    n_layers = int(model.cfg.n_layers)
    hook_dict = model.hook_dict  # rebuilt by the bridge on every access
    missing = [n for n in (hook_name(tgt, layer) for layer in range(n_layers)) if n not in hook_dict]
    if missing:
        raise TargetUnavailableError(unavailable_message(model, tgt, missing[0]))
    ests = estimates(model, tps, direction, base_metric(metric), as_stop(stop), batch_size)
    check_available(model, tgt, ests[0])
    src, _ = source_and_base(direction)
    raw = {"clean": {}, "corrupted": {}}
    for q in RAW:
        s = np.array([e.source_raw[q] for e in ests])
        b = np.array([e.base_raw[q] for e in ests])
        raw["clean"][q], raw["corrupted"][q] = (s, b) if src == "clean" else (b, s)
    ctx = SweepContext(
        model=model, pairs=tps, target=tgt, metric=metric, direction=direction, method="attribution",
        n_layers=n_layers, row_shape=row_shape(model, tgt, n_pos),
        clean_raw=raw["clean"], corrupted_raw=raw["corrupted"],
    )
    # iter_rows reads these, not the cache: with many pairs it may have evicted the first ones
    _PREPARED[id(ctx)] = ests
    weakref.finalize(ctx, _PREPARED.pop, id(ctx), None)
    return ctx


def _estimates(ctx: SweepContext, stop: StopFlag, batch_size: int | None) -> list[PairEstimate]:
    ests = _PREPARED.get(id(ctx))
    if ests is None or len(ests) != len(ctx.pairs):  # a context from context.prepare
        ests = estimates(ctx.model, ctx.pairs, ctx.direction, base_metric(ctx.metric), stop, batch_size)
        _PREPARED[id(ctx)] = ests
        weakref.finalize(ctx, _PREPARED.pop, id(ctx), None)
    return ests


def iter_rows(ctx: SweepContext, stop: StopFlag, batch_size: int | None = None) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Yield ``(layer, raw)`` per layer: the estimated patched value of the metric's quantity.

    Only that quantity is estimated (one backward); the other raw quantities are NaN.
    """
    q = base_metric(ctx.metric)
    ests = _estimates(ctx, stop, batch_size)
    for est in ests:
        check_available(ctx.model, ctx.target, est)
    # one read-only NaN row serves every quantity not estimated (a neuron row is MBs on GPT-2)
    nan = np.full((len(ctx.pairs), *ctx.row_shape), np.nan)
    nan.flags.writeable = False
    for layer in range(ctx.n_layers):
        raw = dict.fromkeys((r for r in RAW if r != q), nan)
        # a zero change adds exactly 0.0: such cells keep the unpatched value bit for bit
        raw[q] = np.stack([ctx.base_raw[q][p] + target_contrib(e, ctx.target, layer) for p, e in enumerate(ests)])
        yield layer, raw


def result_meta(ctx: SweepContext) -> dict[str, Any]:
    """What the result says about itself: a first-order estimate of one quantity, and which
    pass computed it (``"fast-torch"`` or ``"bridge-hooks"``, with the reason for the latter)."""
    ests = _PREPARED.get(id(ctx)) or []
    info = {"kind": "first-order estimate", "quantity": base_metric(ctx.metric), "note": NOTE,
            "pass": ", ".join(sorted({e.engine for e in ests}))}
    reasons = sorted({e.fallback for e in ests if e.fallback})
    if not reasons:
        return {"estimate": info}
    # as the exact sweep says why its fast path did not run (CLI and status bar show it)
    info["fallback_reason"] = "; ".join(reasons)
    return {"estimate": info, "fallback_reason": "the plain-torch attribution pass did not run: " + info["fallback_reason"]}
