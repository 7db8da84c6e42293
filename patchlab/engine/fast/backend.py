"""The fast exact backend: verification against the bridge, batching, the row loop."""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from patchlab.core.metrics import RAW
from patchlab.engine.context import StopFlag, SweepContext, check_stop, hook_name, source_and_base
from patchlab.engine.fast.entries import cell_start, dense_entry, run_cells
from patchlab.engine.fast.forward import BaseRun, base_run, run_wave
from patchlab.engine.fast.weights import FastWeights, Unsupported, extract
from patchlab.engine.memory import choose_batch, is_oom
from patchlab.engine.quantities import last_quantities

NAME = "fast-torch"
TOL = 1e-4
# merge cells with different start positions while the extra recomputed work stays small
MERGE_SLACK = 0.25
MIN_TOKENS = 96
# rows with different starts run packed (no wasted position-wise work), so chunks mix starts
PACKED = True
# a cell whose patched positions all lie in the prompts' common prefix is a no-op (causal
# attention: activations there are the same in both runs), so its value is the base run's
SKIP_SHARED_PREFIX = True
# all-position head sweeps run several layers per wave, but in at least this many waves so
# rows still stream to the display
WAVE_MIN_YIELDS = 2

_WEIGHTS: weakref.WeakKeyDictionary[Any, tuple[Any, FastWeights]] = weakref.WeakKeyDictionary()
_STATE: dict[int, dict[str, Any]] = {}


def weights_for(model: Any) -> FastWeights:
    """Extracted weights, cached per model (re-read if the processing mode changed)."""
    key = (bool(getattr(model, "compatibility_mode", False)), str(getattr(model.cfg, "dtype", "")))
    hit = _WEIGHTS.get(model)
    if hit is not None and hit[0] == key:
        return hit[1]
    with torch.inference_mode():
        w = extract(model)
    _WEIGHTS[model] = (key, w)
    return w


def run_activation(run: BaseRun, act: str, layer: int) -> torch.Tensor:
    """This run's activation in the bridge hook's layout (batch dim dropped)."""
    if act in ("q", "k", "v"):
        return getattr(run, act)[layer].transpose(0, 1)
    field = {"resid_pre": "pre", "resid_mid": "mid", "resid_post": "post", "attn_out": "attn",
             "mlp_out": "mlp", "z": "z", "pattern": "pattern"}[act]
    return getattr(run, field)[layer]


def _close(a: torch.Tensor, b: torch.Tensor) -> float:
    """Max abs difference, scaled by the reference's magnitude when that is above 1."""
    b = b.to(a.dtype)
    return float((a - b).abs().max()) / max(1.0, float(b.abs().max()))


def _verify(ctx: SweepContext, w: FastWeights) -> tuple[str | None, list[BaseRun]]:
    """Compare our unpatched runs with the bridge's (logits and target activations)."""
    bases = []
    for p, tp in enumerate(ctx.pairs):
        runs = {}
        with torch.inference_mode():
            for which in ("clean", "corrupted"):
                runs[which] = base_run(w, tp.tokens(which))
        for which, ref in (("clean", ctx.clean_raw), ("corrupted", ctx.corrupted_raw)):
            ours = last_quantities(runs[which].last_logits.unsqueeze(0), tp.answer_id, tp.wrong_id)
            for q in ("logit_diff", "answer_logprob"):
                err = abs(float(ours[q][0]) - float(ref[q][p])) / max(1.0, abs(float(ref[q][p])))
                if not err <= TOL:
                    return (f"its plain-torch forward pass differs from the bridge's on this model "
                            f"({q} of the {which} run off by {err:.2g})"), []
        src_name, base_name = source_and_base(ctx.direction)
        src_run = runs[src_name]
        for layer in range(ctx.n_layers):
            name = hook_name(ctx.target, layer)
            ref_act = ctx.source_caches[p][name][0]
            ours_act = run_activation(src_run, ctx.target.act, layer)
            if ours_act.shape != ref_act.shape:
                return f"its {name} has shape {tuple(ref_act.shape)}, the fast path expects {tuple(ours_act.shape)}", []
            err = _close(ours_act, ref_act)
            if not err <= TOL:
                return f"its {name} differs from the fast path's by {err:.2g}", []
        bases.append(runs[base_name])
    return None, bases


def unsupported_reason(ctx: SweepContext) -> str | None:
    """``None`` if the fast path applies to this sweep, else a plain-language reason."""
    if ctx.method != "exact":
        return "the fast path computes exact patching only"
    if ctx.target.act == "post":
        return "the fast path does not patch MLP neurons (the hook-based path does)"
    try:
        w = weights_for(ctx.model)
    except Unsupported as exc:
        return f"the fast path does not implement this architecture ({exc})"
    reason, bases = _verify(ctx, w)
    if reason is None:
        _STATE[id(ctx)] = {"weights": w, "bases": bases}
        weakref.finalize(ctx, _STATE.pop, id(ctx), None)
    return reason


def bytes_per_row(ctx: SweepContext, w: FastWeights) -> int:
    cfg = ctx.model.cfg
    t = ctx.pairs[0].n_pos
    d = int(cfg.d_model)
    mlp = int(getattr(cfg, "d_mlp", None) or 4 * d)
    per_pos = 10 * d + 3 * mlp + 3 * w.n_heads * t
    # keys/values of one layer per row, and full-vocab logits of the last position
    return 4 * (t * per_pos + 2 * t * w.n_kv * w.d_head + 3 * int(cfg.d_vocab))


def chunks(starts: np.ndarray, n_pos: int, bs: int) -> list[np.ndarray]:
    """Group cell indices so each forward recomputes little beyond what its cells need."""
    order = np.argsort(-starts, kind="stable")
    out: list[list[int]] = []
    cur: list[int] = []
    own = 0
    for i in order:
        need = n_pos - int(starts[i])
        if cur:
            merged = (len(cur) + 1) * need  # the new cell has the earliest start so far
            if len(cur) < bs and (PACKED or merged <= (1 + MERGE_SLACK) * (own + need) or merged <= MIN_TOKENS):
                cur.append(int(i))
                own += need
                continue
            out.append(cur)
        cur, own = [int(i)], need
    if cur:
        out.append(cur)
    return [np.array(c) for c in out]


def shared_prefix(clean: torch.Tensor, corrupted: torch.Tensor) -> int:
    """Number of leading positions where the two ``[1, T]`` token rows agree.

    Parameters
    ----------
    clean, corrupted : Tensor
        Token ids ``[1, T]`` of the two prompts (equal lengths).

    Returns
    -------
    int
        ``T`` when the prompts are identical.
    """
    diff = (clean[0] != corrupted[0]).nonzero()
    return int(diff[0, 0]) if len(diff) else int(clean.shape[-1])


def _wave_logits(ctx: SweepContext, w: FastWeights, base: BaseRun, p: int, layers: range,
                 cells: torch.Tensor) -> torch.Tensor:
    """Logits ``[len(layers) * B, vocab]`` of all-position head cells, layers joined in one wave."""
    entries = []
    for layer in layers:
        src = ctx.source_caches[p][hook_name(ctx.target, layer)][0]
        stage, x = dense_entry(w, layer, base, src, cells, ctx.target.act)
        entries.append((layer, stage, x))
    return run_wave(w, base, entries)


def iter_rows(ctx: SweepContext, stop: StopFlag, batch_size: int | None = None) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Yield ``(layer, raw)`` per layer; ``raw[q]`` is ``(n_pairs, *row_shape)``."""
    state = _STATE.get(id(ctx))
    if state is None:
        reason = unsupported_reason(ctx)
        if reason is not None:
            raise RuntimeError(f"The fast engine does not apply: {reason}")
        state = _STATE[id(ctx)]
    w, bases = state["weights"], state["bases"]
    tgt = ctx.target
    device = ctx.base_tokens(0).device
    cells_np = np.array(list(itertools.product(*(range(n) for n in ctx.row_shape))), dtype=np.int64)
    cells_all = torch.from_numpy(cells_np).to(device)
    starts = cell_start(torch.from_numpy(cells_np), tgt.act, tgt.axes).numpy()
    n_pos = ctx.pairs[0].n_pos
    bs = batch_size or choose_batch(bytes_per_row(ctx, w), device, limit=ctx.n_layers * len(cells_np))
    # the last position each cell's patch touches: its own position, or every position
    last_pos = starts if "pos" in tgt.axes else np.full(len(cells_np), n_pos - 1)
    todo_cells, groups = [], []
    for tp in ctx.pairs:
        shared = shared_prefix(tp.clean, tp.corrupted) if SKIP_SHARED_PREFIX else 0
        keep = np.nonzero(last_pos >= shared)[0]
        todo_cells.append(keep)
        groups.append([keep[g] for g in chunks(starts[keep], n_pos, bs)] if len(keep) else [])

    def new_raw(n_layers: int) -> dict[str, np.ndarray]:
        return {q: np.full((n_layers, len(ctx.pairs), *ctx.row_shape), np.nan) for q in RAW}

    def layer_rows(layer: int, p: int, raw: dict[str, np.ndarray]) -> None:
        """One layer's cells of pair ``p`` in chunks of ``bs`` rows, halving a chunk on OOM."""
        tp = ctx.pairs[p]
        src = ctx.source_caches[p][hook_name(tgt, layer)][0]
        check_stop(stop)  # also before a layer whose cells are mostly skipped
        skipped = np.setdiff1d(np.arange(len(cells_np)), todo_cells[p])
        if len(skipped):
            sel = (p, *cells_np[skipped].T)
            for k in RAW:
                raw[k][sel] = ctx.base_raw[k][p]
        todo = list(groups[p])
        while todo:
            check_stop(stop)
            idx = todo.pop(0)
            try:
                with torch.inference_mode():
                    logits = run_cells(w, layer, bases[p], src, cells_all[idx], tgt.act, tgt.axes)
                    q = last_quantities(logits, tp.answer_id, tp.wrong_id)
            except Exception as exc:
                if is_oom(exc) and len(idx) > 1:
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                    half = len(idx) // 2
                    todo[:0] = [idx[:half], idx[half:]]
                    continue
                raise
            sel = (p, *cells_np[idx].T)
            for k, v in q.items():
                raw[k][sel] = v

    # all-position head cells all start at position 0: several layers' rows share one wave
    per = 1
    if "pos" not in tgt.axes and bs >= len(cells_np):
        per = max(1, min(bs // len(cells_np), -(-ctx.n_layers // WAVE_MIN_YIELDS)))
    for first in range(0, ctx.n_layers, per):
        layers = range(first, min(ctx.n_layers, first + per))
        raw = new_raw(len(layers))
        for p, tp in enumerate(ctx.pairs):
            if per == 1 or len(todo_cells[p]) < len(cells_np):  # (identical prompts: all no-ops)
                layer_rows(first, p, {k: v[0] for k, v in raw.items()})
                continue
            check_stop(stop)
            try:
                with torch.inference_mode():
                    q = last_quantities(_wave_logits(ctx, w, bases[p], p, layers, cells_all), tp.answer_id, tp.wrong_id)
            except Exception as exc:
                if not is_oom(exc):
                    raise
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                for i, layer in enumerate(layers):
                    layer_rows(layer, p, {k: v[i] for k, v in raw.items()})
                continue
            for k, v in q.items():
                raw[k][:, p] = v.reshape(len(layers), *ctx.row_shape)
        for i, layer in enumerate(layers):
            yield layer, {k: v[i] for k, v in raw.items()}
