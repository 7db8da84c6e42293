"""The fast exact backend: verification against the bridge, batching, the row loop.

Pairs of one token length run in groups: one forward pass carries cells of every pair of the
group (batch row ``i`` patches pair ``prow[i]``). Each yielded layer row covers every pair.
The source activations patched in come from this forward's own source run (checked against
the bridge's run of pair 0), never from a bridge cache per pair. A group's unpatched run and
source activations are kept for the whole sweep only when every pair fits one group;
otherwise they are recomputed per wave of layers and freed, so memory does not grow with the
number of pairs beyond the group in flight.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from patchlab.core.metrics import RAW
from patchlab.engine.context import StopFlag, SweepContext, check_stop, source_and_base
from patchlab.engine.fast.entries import cell_start, dense_entry, run_cells
from patchlab.engine.fast.forward import BaseRun, base_runs, run_wave, stopping
from patchlab.engine.fast.verify import Mismatch, check_logits, group_tokens, source_acts, verify
from patchlab.engine.fast.weights import FastWeights, Unsupported, extract
from patchlab.engine.memory import budget_bytes, choose_batch, is_oom
from patchlab.engine.quantities import last_quantities

NAME = "fast-torch"
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
# most pairs per group: more adds memory for base runs without larger useful matmuls
MAX_GROUP = 8
# when the pairs need several groups, their unpatched runs are recomputed once per wave of
# layers (never kept for all pairs); the waves are few enough that the recomputation costs at
# most this share of the patched work (estimated in token-layers), and at least one
RECOMPUTE_SHARE = 0.1

_WEIGHTS: weakref.WeakKeyDictionary[Any, tuple[Any, FastWeights]] = weakref.WeakKeyDictionary()
_STATE: dict[int, dict[str, Any]] = {}


def _weights_key(model: Any) -> tuple:
    """What the extracted weights depend on: processing, and every parameter's identity,
    device, dtype and version (``model.to(...)``, a reload or an in-place edit all change it)."""
    params = tuple((id(p), p.device, p.dtype, p._version) for p in model.parameters())
    return bool(getattr(model, "compatibility_mode", False)), str(getattr(model.cfg, "dtype", "")), params


def weights_for(model: Any) -> FastWeights:
    """Extracted weights (views of the bridge's parameters), cached per model and key."""
    key = _weights_key(model)
    hit = _WEIGHTS.get(model)
    if hit is not None and hit[0] == key:
        return hit[1]
    _WEIGHTS.pop(model, None)
    with torch.no_grad():
        w = extract(model)
    _WEIGHTS[model] = (key, w)
    return w


def base_bytes(w: FastWeights, n_pos: int) -> int:
    """Bytes of one pair's :class:`BaseRun` (every layer's intermediates, patterns included)."""
    d, H, Hkv, dh, T = int(w.W_E.shape[1]), w.n_heads, w.n_kv, w.d_head, n_pos
    per_layer = 5 * T * d + 2 * H * T * dh + 3 * Hkv * T * dh + T * H * dh + H * T * T
    return len(w.layers) * per_layer * w.W_E.element_size()


def pair_groups(ctx: SweepContext, w: FastWeights) -> list[list[int]]:
    """Pairs of one token length in groups whose base runs take at most half the budget."""
    by_len: dict[int, list[int]] = {}
    for p, tp in enumerate(ctx.pairs):
        by_len.setdefault(tp.n_pos, []).append(p)
    out = []
    for n, ps in by_len.items():
        k = max(1, min(MAX_GROUP, budget_bytes(ctx.base_tokens(0).device) // 2 // max(1, base_bytes(w, n))))
        out += [ps[i : i + k] for i in range(0, len(ps), k)]
    return out


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
    groups = pair_groups(ctx, w)
    try:
        reason, runs = verify(ctx, w, groups)
    except Exception as exc:
        if not is_oom(exc):
            raise
        return f"the fast path ran out of memory during its self-check against the bridge ({exc})"
    if reason is None:
        _STATE[id(ctx)] = {"weights": w, "groups": groups, **runs}
        weakref.finalize(ctx, _STATE.pop, id(ctx), None)
    return reason


def bytes_per_row(ctx: SweepContext, w: FastWeights) -> int:
    cfg = ctx.model.cfg
    t = max(tp.n_pos for tp in ctx.pairs)
    d = int(cfg.d_model)
    mlp = int(getattr(cfg, "d_mlp", None) or 4 * d)
    per_pos = 10 * d + 3 * mlp + 3 * w.n_heads * t
    # keys/values of one layer per row, and full-vocab logits of the last position
    return w.W_E.element_size() * (t * per_pos + 2 * t * w.n_kv * w.d_head) + 4 * 3 * int(cfg.d_vocab)


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


def _fill_skipped(ctx: SweepContext, raw: dict[str, np.ndarray], p: int, cells_np: np.ndarray, todo: np.ndarray) -> None:
    """Cells of pair ``p`` not in ``todo`` (inside the shared prefix) take the base run's values."""
    skipped = np.setdiff1d(np.arange(len(cells_np)), todo)
    if len(skipped):
        sel = (p, *cells_np[skipped].T)
        for k in RAW:
            raw[k][sel] = ctx.base_raw[k][p]


def iter_rows(ctx: SweepContext, stop: StopFlag, batch_size: int | None = None) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Yield ``(layer, raw)`` per layer; ``raw[q]`` is ``(n_pairs, *row_shape)``."""
    state = _STATE.get(id(ctx))
    if state is None:
        reason = unsupported_reason(ctx)
        if reason is not None:
            raise RuntimeError(f"The fast engine does not apply: {reason}")
        state = _STATE[id(ctx)]
    w, groups, kept = state["weights"], state["groups"], state.get("kept")
    tgt = ctx.target
    device = ctx.base_tokens(0).device
    cells_np = np.array(list(itertools.product(*(range(n) for n in ctx.row_shape))), dtype=np.int64)
    cells_all = torch.from_numpy(cells_np).to(device)
    starts = cell_start(torch.from_numpy(cells_np), tgt.act, tgt.axes).numpy()
    n_pos = max(tp.n_pos for tp in ctx.pairs)
    cached = kept is not None
    # recomputed per wave: one group's base run, and its source run up to the wave's last layer
    reserved = 0 if cached else 2 * max(len(g) for g in groups) * base_bytes(w, n_pos)
    bs = batch_size or choose_batch(bytes_per_row(ctx, w), device, limit=ctx.n_layers * len(cells_np) * len(ctx.pairs),
                                    reserved=reserved)
    # the last position each cell's patch touches: its own position, or every position
    last_pos = starts if "pos" in tgt.axes else np.full(len(cells_np), n_pos - 1)
    todo_cells = []
    for tp in ctx.pairs:
        shared = shared_prefix(tp.clean, tp.corrupted) if SKIP_SHARED_PREFIX else 0
        todo_cells.append(np.nonzero(last_pos >= shared)[0])
    # per group: every (pair, cell) row still to compute, as local pair index and cell index
    g_rows = []
    for group in groups:
        pr = np.concatenate([np.full(len(todo_cells[p]), i) for i, p in enumerate(group)]).astype(np.int64)
        ce = np.concatenate([todo_cells[p] for p in group]).astype(np.int64)
        g_rows.append((pr, ce))

    def group_runs(gi: int, layers: range) -> tuple[BaseRun, dict[int, torch.Tensor]]:
        """Group ``gi``'s base run and its source activations at ``layers`` (kept or recomputed)."""
        if cached:
            return kept
        src_name, base_name = source_and_base(ctx.direction)
        first = layers[0] == 0
        if first and gi == 0 and "first" in state:  # the self-check's runs of group 0
            base, src = state.pop("first")
            return base, source_acts(src, tgt.act, layers)
        with torch.inference_mode(), stopping(stop):
            base = base_runs(w, group_tokens(ctx, groups[gi], base_name))
            # the source run stops after the wave's last layer, except on a group's first runs,
            # whose logits complete the self-check against the bridge (before any row is yielded)
            src = base_runs(w, group_tokens(ctx, groups[gi], src_name), upto=None if first else layers[-1] + 1)
        if first:
            reason = check_logits(ctx, w, groups[gi], {src_name: src, base_name: base})
            if reason is not None:
                raise Mismatch(reason)
        return base, source_acts(src, tgt.act, layers)

    def store(raw: dict[str, np.ndarray], gi: int, idx: np.ndarray, q: dict[str, np.ndarray]) -> None:
        pr, ce = g_rows[gi]
        sel = (np.asarray(groups[gi])[pr[idx]], *cells_np[ce[idx]].T)
        for k, v in q.items():
            raw[k][sel] = v

    def layer_rows(layer: int, gi: int, base: BaseRun, src: torch.Tensor, raw: dict[str, np.ndarray]) -> None:
        """One layer's rows of group ``gi`` in chunks of ``bs`` rows, halving a chunk on OOM."""
        pr, ce = g_rows[gi]
        check_stop(stop)  # also before a layer whose cells are all skipped
        if not len(ce):
            return
        prow_all = torch.from_numpy(pr).to(device)
        answer = torch.tensor([ctx.pairs[p].answer_id for p in groups[gi]], device=device)
        wrong = torch.tensor([ctx.pairs[p].wrong_id for p in groups[gi]], device=device)
        # largest chunks (earliest starts) first: the row's peak memory, or an OOM, comes at once
        todo = chunks(starts[ce], n_pos, bs)[::-1]
        while todo:
            check_stop(stop)
            idx = todo.pop(0)
            try:
                with torch.inference_mode(), stopping(stop):
                    prow = prow_all[idx]
                    logits = run_cells(w, layer, base, prow, src, cells_all[ce[idx]], tgt.act, tgt.axes)
                    q = last_quantities(logits, answer[prow], wrong[prow])
            except Exception as exc:
                if is_oom(exc) and len(idx) > 1:
                    _empty_cache(device)
                    half = len(idx) // 2
                    todo[:0] = [idx[:half], idx[half:]]
                    continue
                raise
            store(raw, gi, idx, q)

    def wave(layers: range, gi: int, base: BaseRun, srcs: dict[int, torch.Tensor], raw: dict[str, np.ndarray]) -> None:
        """All-position head rows of several layers in one pass; layer by layer on OOM."""
        pr, ce = g_rows[gi]
        if not len(ce):
            return
        check_stop(stop)
        prow = torch.from_numpy(pr).to(device)
        answer = torch.tensor([ctx.pairs[p].answer_id for p in groups[gi]], device=device)[prow]
        wrong = torch.tensor([ctx.pairs[p].wrong_id for p in groups[gi]], device=device)[prow]
        try:
            with torch.inference_mode(), stopping(stop):
                entries = []
                for layer in layers:
                    stage, x = dense_entry(w, layer, base, prow, srcs[layer], cells_all[ce], tgt.act)
                    entries.append((layer, stage, x))
                logits = run_wave(w, base, entries)
                q = last_quantities(logits, answer.repeat(len(layers)), wrong.repeat(len(layers)))
        except Exception as exc:
            if not is_oom(exc):
                raise
            _empty_cache(device)
            for i, layer in enumerate(layers):
                layer_rows(layer, gi, base, srcs[layer], {k: v[i] for k, v in raw.items()})
            return
        for i in range(len(layers)):
            part = {k: v[i * len(ce) : (i + 1) * len(ce)] for k, v in q.items()}
            store({k: v[i] for k, v in raw.items()}, gi, np.arange(len(ce)), part)

    # all-position head cells all start at position 0: several layers' rows share one pass
    sub = 1
    most = max(len(r[1]) for r in g_rows)
    if "pos" not in tgt.axes and 0 < most <= bs:
        sub = max(1, min(bs // most, -(-ctx.n_layers // WAVE_MIN_YIELDS)))
    per = sub  # layers per wave (rows yielded together)
    if not cached:
        # groups' runs are recomputed once per wave: few enough waves that this stays a small
        # share of the patched work (rows then arrive a wave at a time)
        per = max(per, -(-ctx.n_layers // _recompute_waves(ctx, starts, todo_cells, n_pos)))
    for first in range(0, ctx.n_layers, per):
        layers = range(first, min(ctx.n_layers, first + per))
        raw = {q: np.full((len(layers), len(ctx.pairs), *ctx.row_shape), np.nan) for q in RAW}
        for i in range(len(layers)):
            for p in range(len(ctx.pairs)):
                _fill_skipped(ctx, {k: v[i] for k, v in raw.items()}, p, cells_np, todo_cells[p])
        for gi in range(len(groups)):
            check_stop(stop)
            base, srcs = group_runs(gi, layers)
            for j in range(0, len(layers), sub):
                part = layers[j : j + sub]
                if len(part) > 1:
                    wave(part, gi, base, srcs, {k: v[j : j + len(part)] for k, v in raw.items()})
                else:
                    layer_rows(part[0], gi, base, srcs[part[0]], {k: v[j] for k, v in raw.items()})
            del base, srcs  # a recomputed group's runs are freed before the next group's
        for i, layer in enumerate(layers):
            yield layer, {k: v[i] for k, v in raw.items()}


def _recompute_waves(ctx: SweepContext, starts: np.ndarray, todo_cells: list[np.ndarray], n_pos: int) -> int:
    """How many waves of layers, when each wave recomputes every group's runs.

    A wave costs a base run and a (partial) source run per pair, about ``2 T L`` token-layers;
    a cell at layer ``l`` starting at position ``s`` recomputes ``(T - s) (L - l)``.
    """
    L = ctx.n_layers
    per_layer = sum(float((n_pos - starts[c]).sum()) for c in todo_cells)  # token-positions per layer
    patched = per_layer * L * (L + 1) / 2  # summed over layers of (L - l)
    recompute = 2.0 * n_pos * L * len(ctx.pairs)
    return int(max(1, min(L, RECOMPUTE_SHARE * patched // max(1.0, recompute))))


def _empty_cache(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
