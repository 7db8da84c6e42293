"""Generic exact path: many patched cells per forward pass through the bridge's hooks.

Works for every architecture TransformerBridge supports. Batch row ``i`` carries the patch
of cell ``i``; logits are read at the last position only.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import torch

from patchlab.core.errors import Cancelled
from patchlab.core.metrics import RAW
from patchlab.engine.context import StopFlag, SweepContext, check_stop, hook_name
from patchlab.engine.memory import choose_batch, is_oom
from patchlab.engine.quantities import last_quantities

NAME = "generic-hooks"


def set_cells(act: torch.Tensor, src: torch.Tensor, axes: tuple[str, ...], act_kind: str, cells: torch.Tensor) -> None:
    """Copy the source activation into ``act`` at one cell per batch row (in place).

    ``cells`` is ``[batch, len(axes)-1]``: the non-layer indices in the target's axis order.
    Vector activations are ``[batch, pos, (head, d_head | d_model)]``; patterns are
    ``[batch, head, dest, src]``.
    """
    rows = torch.arange(cells.shape[0], device=act.device)
    s = src[0]
    inner = axes[1:]
    if act_kind == "pattern":
        head = cells[:, 0]
        if inner == ("head",):
            act[rows, head] = s[head].to(act.dtype)
        else:  # ("head", "pos"): destination position
            dest = cells[:, 1]
            act[rows, head, dest] = s[head, dest].to(act.dtype)
    elif inner == ("pos",):
        pos = cells[:, 0]
        act[rows, pos] = s[pos].to(act.dtype)
    elif inner == ("pos", "head"):
        pos, head = cells[:, 0], cells[:, 1]
        act[rows, pos, head] = s[pos, head].to(act.dtype)
    elif inner == ("neuron",):  # [batch, pos, d_mlp], every position
        n = cells[:, 0]
        act[rows, :, n] = s[:, n].T.to(act.dtype)
    elif inner == ("pos", "neuron"):
        pos, n = cells[:, 0], cells[:, 1]
        act[rows, pos, n] = s[pos, n].to(act.dtype)
    elif inner == ("head",):
        for i, h in enumerate(cells[:, 0].tolist()):
            act[i, :, h] = s[:, h].to(act.dtype)
    else:  # pragma: no cover - guarded by the target table
        raise ValueError(f"unsupported axes {axes}")


def bytes_per_row(ctx: SweepContext) -> int:
    cfg = ctx.model.cfg
    t = ctx.pairs[0].n_pos
    d = int(cfg.d_model)
    mlp = int(getattr(cfg, "d_mlp", None) or 4 * d)
    per_layer = t * (8 * d + 2 * mlp) + 3 * int(cfg.n_heads) * t * t
    # full-vocab logits are materialised by the bridge's forward
    return 4 * (ctx.n_layers * per_layer + 2 * t * int(cfg.d_vocab))


def iter_rows(ctx: SweepContext, stop: StopFlag, batch_size: int | None = None) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Yield ``(layer, raw)`` per layer; ``raw[q]`` is ``(n_pairs, *row_shape)``."""
    model = ctx.model
    tgt = ctx.target
    cells_all = list(itertools.product(*(range(n) for n in ctx.row_shape)))
    device = ctx.base_tokens(0).device
    bs = batch_size or choose_batch(bytes_per_row(ctx), device, limit=len(cells_all))
    for layer in range(ctx.n_layers):
        name = hook_name(tgt, layer)
        raw = {q: np.full((len(ctx.pairs), *ctx.row_shape), np.nan) for q in RAW}
        for p, tp in enumerate(ctx.pairs):
            src = ctx.source_caches[p][name]
            base = ctx.base_tokens(p)
            start = 0
            while start < len(cells_all):
                check_stop(stop)
                chunk = cells_all[start : start + bs]
                try:
                    q = _run_chunk(model, base, name, src, tgt, chunk, tp.answer_id, tp.wrong_id, stop)
                except Exception as exc:
                    if is_oom(exc) and bs > 1:
                        bs = max(1, bs // 2)
                        if device.type == "cuda":
                            torch.cuda.empty_cache()
                        continue
                    raise
                idx = tuple(np.array(chunk).T)
                for k, v in q.items():
                    raw[k][(p, *idx)] = v
                start += len(chunk)
        yield layer, raw


def _run_chunk(model, base, name, src, tgt, chunk, answer_id, wrong_id, stop) -> dict[str, np.ndarray]:
    cells = torch.tensor(chunk, dtype=torch.long, device=base.device)

    def hook(act, hook):  # noqa: ARG001 - TransformerLens hook signature
        if stop():
            raise Cancelled("Stopped.")
        set_cells(act, src, tgt.axes, tgt.act, cells)
        return act

    with torch.inference_mode():
        logits = model.run_with_hooks(base.expand(len(chunk), -1), fwd_hooks=[(name, hook)])
        last = logits[:, -1]
        return last_quantities(last, answer_id, wrong_id)
