"""Patching sweeps as generators: one event per finished layer row, a result at the end."""

from __future__ import annotations

import dataclasses
import time
import traceback
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from patchlab._version import __version__
from patchlab.core.errors import Cancelled, InputError
from patchlab.core.gqa import kv_labels, kv_meta
from patchlab.core.metrics import RAW, aggregate, base_metric, check_method
from patchlab.core.pairs import PromptPair
from patchlab.core.result import PatchResult
from patchlab.engine import generic
from patchlab.engine.context import SweepContext, as_stop, prepare, source_and_base
from patchlab.engine.loading import model_info


@dataclass
class SweepEvent:
    """Progress of a running sweep; ``values`` is a fresh array the receiver may keep."""

    done: int
    total: int
    values: np.ndarray
    layer: int | None
    elapsed: float
    phase: str = "exact"  # "estimate" rows come from attribution patching
    raw: dict[str, np.ndarray] = field(default_factory=dict)


def _labels(ctx: SweepContext) -> dict[str, list[str]]:
    labels: dict[str, list[str]] = {"layer": [f"L{i}" for i in range(ctx.n_layers)]}
    tp = ctx.pairs[0]
    if "pos" in ctx.target.axes:
        labels["pos"] = [
            c if c == k else f"{c}/{k}" for c, k in zip(tp.clean_str, tp.corrupted_str)
        ]
    if "neuron" in ctx.target.axes:
        labels["neuron"] = [f"N{n}" for n in range(ctx.row_shape[-1])]
    if "head" in ctx.target.axes:
        n = ctx.row_shape[ctx.target.axes.index("head") - 1]
        labels["head"] = [f"H{h}" for h in range(n)]
        if _kv_heads(ctx):  # grouped-query k/v: one cell per key/value head (issue 13)
            labels["head"] = kv_labels(int(ctx.model.cfg.n_heads), n)
    return labels


def _kv_heads(ctx: SweepContext) -> bool:
    n = ctx.row_shape[ctx.target.axes.index("head") - 1] if "head" in ctx.target.axes else 0
    return ctx.target.uses_kv_heads and 0 < n < int(ctx.model.cfg.n_heads)


def _pick_backend(ctx: SweepContext, engine: str):
    """The exact backend to run: the fast path when it applies, else the generic one."""
    if engine not in ("auto", "fast"):
        return generic, ""
    try:
        from patchlab.engine import fast  # noqa: PLC0415 - optional fast path
    except ImportError as exc:
        # a broken install must not pass for a slow-but-fine run: say so, or refuse when asked
        if engine == "fast":
            raise InputError(f"The fast engine cannot be imported ({exc}); use engine='auto' or 'generic'.") from exc
        return generic, f"the fast engine could not be imported ({exc})"
    reason = fast.unsupported_reason(ctx)
    if reason is None:
        return fast, ""
    return _without_fast(reason, engine)


def _without_fast(reason: str, engine: str):
    """The hook path with ``reason`` recorded, or a refusal when ``engine="fast"`` was asked for
    (the fast path does not apply, or found a pair it computes differently from the bridge)."""
    if engine == "fast":
        raise InputError(f"The fast engine does not apply here: {reason}")
    return generic, reason


def _meta(ctx: SweepContext, path: str, fallback: str) -> dict[str, Any]:
    info = model_info(ctx.model)
    runs = {}
    for which, raw in (("clean", ctx.clean_raw), ("corrupted", ctx.corrupted_raw)):
        runs[which] = {q: float(np.mean(raw[q])) for q in RAW}
        runs[which]["per_pair"] = {q: raw[q] for q in RAW}
    bm = base_metric(ctx.metric)
    if ctx.metric == "logit_diff_recovered":
        src, base = source_and_base(ctx.direction)
        baselines = {src: 1.0, base: 0.0}
    else:
        baselines = {w: runs[w][bm] for w in ("clean", "corrupted")}
    return {
        "model": info.name,
        "model_info": info.to_dict(),
        "processing": info.processing,
        "target": ctx.target.name,
        "target_label": ctx.target.label,
        "direction": ctx.direction,
        "metric": ctx.metric,
        "method": ctx.method,
        "pairs": [tp.pair.to_dict() for tp in ctx.pairs],
        "tokens": [{"clean": tp.clean_str, "corrupted": tp.corrupted_str} for tp in ctx.pairs],
        "baselines": baselines,
        "runs": runs,
        "engine_path": path,
        "fallback_reason": fallback,
        "patchlab_version": __version__,
    }


def iter_patch(
    model: Any,
    pairs: PromptPair | Sequence[PromptPair],
    *,
    target: str,
    metric: str = "logit_diff_recovered",
    direction: str = "denoise",
    method: str = "exact",
    stop: Any = None,
    batch_size: int | None = None,
    engine: str = "auto",
    context: SweepContext | None = None,
    keep_on_error: bool = False,
) -> Generator[SweepEvent, None, PatchResult]:
    """Run a patching sweep, yielding a :class:`SweepEvent` per finished layer row.

    Parameters are those of :func:`patchlab.patch`, plus ``stop`` (a callable or
    ``threading.Event`` checked between chunks and inside hooks), ``batch_size`` (cells per
    forward pass; default from free memory) and ``engine`` (``auto``, ``fast`` or ``generic``).
    ``context`` reuses a :func:`patchlab.engine.context.prepare` result for the same model,
    pairs, target, metric and direction (e.g. an attribution preview, then the exact sweep);
    prepare it with ``cache_base=True`` for attribution. ``keep_on_error`` (the GUI): an error
    after at least one finished row ends the sweep with those rows instead of raising; the
    result has ``meta["partial"] = True``, ``meta["error"]`` (message) and
    ``meta["error_details"]`` (traceback).

    Returns
    -------
    PatchResult
        As the generator's return value. A stopped sweep returns the rows finished so far
        (NaN elsewhere) with ``meta["complete"] = False``.
    """
    stop_fn = as_stop(stop)
    t0 = time.perf_counter()
    if context is None and method == "attribution":
        from patchlab.engine import attribution  # noqa: PLC0415

        # attribution's single forward + backward gives both runs' quantities: no separate prepare
        ctx = attribution.prepare(model, pairs, target=target, metric=metric, direction=direction, stop=stop_fn)
    elif context is None:
        ctx = prepare(model, pairs, target=target, metric=metric, direction=direction, method=method)
    else:
        ctx = _reuse(context, model, pairs, target, metric, direction, method)
    if method == "exact":
        # issue 13: refuse targets whose edits TransformerLens discards (never draw them as zeros)
        from patchlab.engine.probe import check_reaches_output  # noqa: PLC0415

        check_reaches_output(ctx)
    bm = base_metric(metric)
    per_pair_raw = {q: np.full((len(ctx.pairs), *ctx.shape), np.nan) for q in RAW}

    if method == "attribution":
        from patchlab.engine import attribution  # noqa: PLC0415

        backend, fallback, phase = attribution, "", "estimate"
    else:
        backend, fallback = _pick_backend(ctx, engine)
        phase = "exact"

    done = 0
    live = np.full(ctx.shape, np.nan)  # the aggregated rows so far (each event gets a copy)
    cancelled = False
    error: tuple[str, str] | None = None
    rows = backend.iter_rows(ctx, stop_fn, batch_size=batch_size)
    cells_per_row = int(np.prod(ctx.row_shape))
    while True:
        try:
            layer, raw = next(rows)
        except StopIteration:
            break
        except Cancelled:
            cancelled = True
            break
        except Exception as exc:  # e.g. out of memory in a late layer: keep the rows done
            if done == 0 and isinstance(exc, getattr(backend, "Mismatch", ())):
                # the fast path's self-check failed on a later group of pairs, before any row
                backend, fallback = _without_fast(exc.reason, engine)
                rows = backend.iter_rows(ctx, stop_fn, batch_size=batch_size)
                continue
            if not keep_on_error or done == 0:
                raise
            error = (f"{type(exc).__name__}: {exc}", traceback.format_exc())
            break
        for q in RAW:
            per_pair_raw[q][:, layer] = raw[q]
        done += cells_per_row
        # cell by cell, so the new row alone (aggregating every row per event cost O(layers^2))
        live[layer], _ = aggregate(metric, per_pair_raw[bm][:, layer], ctx.base_raw[bm], ctx.source_raw[bm])
        yield SweepEvent(
            done=done,
            total=ctx.n_cells,
            values=live.copy(),
            layer=layer,
            elapsed=time.perf_counter() - t0,
            phase=phase,
            raw={q: per_pair_raw[q][:, layer].mean(axis=0) for q in RAW},
        )
        if stop_fn():
            cancelled = True
            rows.close()
            break

    values, per_pair = aggregate(metric, per_pair_raw[bm], ctx.base_raw[bm], ctx.source_raw[bm])
    meta = _meta(ctx, getattr(backend, "NAME", backend.__name__), fallback)
    meta["elapsed_s"] = time.perf_counter() - t0
    # a NaN left in any cell means a row was not (fully) computed: never call that complete
    meta["complete"] = not cancelled and done == ctx.n_cells and not np.isnan(per_pair_raw[bm]).any()
    meta["cancelled"] = cancelled
    if error is not None:
        meta["partial"] = True
        meta["error"], meta["error_details"] = error
    meta["cell_raw"] = {q: per_pair_raw[q].mean(axis=0) for q in RAW}
    if hasattr(backend, "result_meta"):  # attribution: "first-order estimate" and of what
        meta.update(backend.result_meta(ctx))
    if _kv_heads(ctx):
        meta.update(kv_meta(int(ctx.model.cfg.n_heads), ctx.row_shape[ctx.target.axes.index("head") - 1]))
    return PatchResult(values=values, axes=ctx.target.axes, labels=_labels(ctx), per_pair=per_pair, meta=meta,
                       per_pair_raw=per_pair_raw[bm])  # the statistics resample raw values (ratio of means)


def _reuse(ctx: SweepContext, model: Any, pairs: PromptPair | Sequence[PromptPair], target: str, metric: str,
           direction: str, method: str) -> SweepContext:
    """A prepared context for another method, after checking it was made for this sweep."""
    check_method(method)
    if ctx.model is not model:
        raise InputError("The prepared context was made for another model: prepare it again for this one.")
    asked = [pairs] if isinstance(pairs, PromptPair) else list(pairs)
    if [tp.pair for tp in ctx.pairs] != asked:
        raise InputError(f"The prepared context was made for other prompt pairs ({len(ctx.pairs)} pair(s)); "
                         f"prepare it again for these {len(asked)} pair(s).")
    for name, have, want in (("target", ctx.target.name, target), ("metric", ctx.metric, metric),
                             ("direction", ctx.direction, direction)):
        if have != want:
            raise InputError(f"The prepared context was made for {name} {have!r}, not {want!r}: "
                             f"prepare it again, or ask for {name} {have!r}.")
    if method == "attribution" and not ctx.base_caches:
        raise InputError("Attribution needs a context prepared with cache_base=True.")
    return dataclasses.replace(ctx, method=method)


def run_to_end(gen: Generator[Any, None, Any]) -> Any:
    """Drain a generator and return its return value."""
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def patch(
    model: Any,
    pairs: PromptPair | Sequence[PromptPair],
    *,
    target: str,
    metric: str = "logit_diff_recovered",
    direction: str = "denoise",
    method: str = "exact",
    **kwargs: Any,
) -> PatchResult:
    """Activation patching sweep over one target; see :func:`iter_patch`.

    Parameters
    ----------
    model : TransformerBridge
        From :func:`patchlab.load_model` (or any TransformerBridge).
    pairs : PromptPair or list of PromptPair
        The metric is averaged over pairs; per-pair values are kept in ``result.per_pair``.
    target : str
        One of ``patchlab.TARGETS`` (TransformerLens ``get_act_patch_*`` names).
    metric : str
        ``logit_diff_recovered`` (0 = unpatched, 1 = source run), ``logit_diff``,
        ``answer_prob`` or ``answer_logprob``.
    direction : str
        ``denoise`` (clean activations into the corrupted run) or ``noise``.
    method : str
        ``exact`` or ``attribution`` (first-order estimate).
    """
    return run_to_end(
        iter_patch(model, pairs, target=target, metric=metric, direction=direction, method=method, **kwargs)
    )
