"""Path patching: one sender's source-minus-base write, sent along one path only.

Semantics of TransformerLens 4.3's ``get_act_patch_direct_path``: the sender's write (a head's
``z @ W_O``, an MLP's output) is added at every position to the receiver's *own* copy of the
residual stream (a head's q, k or v input before its LayerNorm, an MLP's input, or the final
residual stream feeding the unembedding), while every other reader sees the base run.

Speed: the write is computed once per sender; each receiver row starts at the receiver's layer
from the base run (positions before the prompts' first difference are reused), and all
(sender, receiver) rows of one layer run as one batch through the remaining layers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from patchlab.core.errors import Cancelled, InputError, TargetUnavailableError
from patchlab.core.metrics import RAW, aggregate, base_metric, check_direction, check_metric
from patchlab.core.pairs import PromptPair
from patchlab.core.result import PatchResult
from patchlab.engine.context import as_stop, check_stop
from patchlab.engine.fast.forward import attend, mlp, qk_normed, qkv, rope, run_from, unembed
from patchlab.engine.memory import choose_batch
from patchlab.engine.pathsetup import (
    PairRuns,
    PathSetup,
    Sender,
    meta,
    no_mlp_message,
    parse_senders,
    sender_delta,
    setup,
)
from patchlab.engine.quantities import last_quantities

T = TypeVar("T")  # what a generator's own argument check returns (see open_run)
RECEIVERS = {
    "q": "every later head's query input",
    "k": "every later head's key input (per key/value head under grouped-query attention)",
    "v": "every later head's value input (per key/value head under grouped-query attention)",
    "mlp": "every later MLP's input",
    "logits": "the final residual stream only (the direct path to the logits)",
}
NAN_REASON = "NaN: this receiver is at or before the sender, so the sender's write cannot reach it"


@dataclass
class PathEvent:
    """Progress: one receiver layer finished (``layer`` None for the logits receiver)."""

    done: int
    total: int
    layer: int | None
    elapsed: float


def check_receiver(st: PathSetup, receiver: str) -> str:
    if receiver not in RECEIVERS:
        raise InputError(f"Unknown receiver {receiver!r}. Choose one of: {', '.join(RECEIVERS)}.")
    if receiver == "mlp":
        msg = no_mlp_message(st.ctx.model, "MLP receiver")
        if msg:
            raise TargetUnavailableError(msg)
        if st.parallel:
            raise TargetUnavailableError(
                "This model runs attention and MLP in parallel on the same residual stream, so an MLP "
                "has no input separate from its layer's attention input (as TransformerLens says for "
                "resid_mid). Use receiver 'q', 'k', 'v' or 'logits'."
            )
    return receiver


def reaches(st: PathSetup, s: Sender, receiver: str, layer: int) -> bool:
    """Whether the receiver at ``layer`` reads the residual stream after ``s`` wrote to it."""
    if receiver == "logits":
        return True
    if receiver == "mlp" and s.kind == "head":
        return layer >= s.layer  # sequential blocks: the MLP reads its own layer's attention
    return layer > s.layer


def n_receivers(st: PathSetup, receiver: str) -> int:
    if receiver in ("q",):
        return st.w.n_heads
    if receiver in ("k", "v"):
        return st.w.n_kv
    return 1


def _frozen_final(w: Any, x: torch.Tensor, base_final: torch.Tensor) -> torch.Tensor:
    """Final norm of ``x [B, d]`` with the base run's scale (LayerNorm frozen), then unembed."""
    ln = w.ln_final
    if ln.rms:
        scale = torch.sqrt(base_final.pow(2).mean() + ln.eps)
        y = x / scale
    else:
        scale = torch.sqrt(base_final.var(unbiased=False) + ln.eps)
        y = (x - x.mean(-1, keepdim=True)) / scale
    if ln.weight is not None:
        y = y * ln.weight
    if ln.bias is not None:
        y = y + ln.bias
    return torch.addmm(w.b_U, y, w.W_U)


def receiver_rows(st: PathSetup, pr: PairRuns, D: torch.Tensor, receiver: str, layer: int) -> tuple[str, torch.Tensor]:
    """Residual rows ``[S * R, n, d]`` entering ``layer`` for senders' writes ``D [S, n, d]``.

    Row ``i * R + j`` carries sender ``i``'s write into receiver ``j`` (head, KV head or the MLP)
    of ``layer``. Returns ``(stage, rows)`` for :func:`~patchlab.engine.fast.forward.run_from`.
    """
    w, base, p0 = st.w, pr.base, pr.p0
    lay = w.layers[layer]
    S, n, d = D.shape
    stage = "post" if st.parallel else "mid"
    after = base.post[layer][p0:] if st.parallel else base.mid[layer][p0:]
    if receiver == "mlp":
        mid = base.mid[layer][p0:]
        return "post", mid + mlp(w, lay, mid + D)
    q, k, v = qkv(w, lay, base.pre[layer][p0:] + D)  # each head's own pre-LN copy, shifted
    cos = sin = None
    if base.cos is not None:
        cos, sin = base.cos[p0:], base.sin[p0:]
    qpos = torch.arange(p0, p0 + n, device=D.device)
    H, Hkv, dh = w.n_heads, w.n_kv, w.d_head
    if receiver == "q":
        qr = rope(qk_normed(lay, q, "q"), cos, sin, w.rotary_dim)
        z, _ = attend(w, qr, base.k_rot[layer][None], base.v[layer][None], qpos)
        dz = z - base.z[layer][p0:]  # [S, n, H, dh]: head h computed with its own new query
        dA = torch.einsum("snhe,hed->shnd", dz, lay.W_O)
    else:
        kf, vf = base.k_rot[layer][None].expand(S, -1, -1, -1), base.v[layer][None].expand(S, -1, -1, -1)
        if receiver == "k":
            kf = torch.cat([kf[:, :, :p0], rope(qk_normed(lay, k, "k"), cos, sin, w.rotary_dim)], dim=2)
        else:
            vf = torch.cat([vf[:, :, :p0], v], dim=2)
        qb = base.q_rot[layer][:, p0:][None].expand(S, -1, -1, -1)
        z, _ = attend(w, qb, kf, vf, qpos)  # every KV head's new key (value) at once
        rep = H // Hkv
        dz = (z - base.z[layer][p0:]).reshape(S, n, Hkv, rep, dh)
        dA = torch.einsum("sngre,gred->sgnd", dz, lay.W_O.reshape(Hkv, rep, dh, -1))
    return stage, (after + dA).reshape(-1, n, d)


def total_rows(st: PathSetup, pr: PairRuns, s: Sender, D: torch.Tensor) -> tuple[str, torch.Tensor]:
    """Rows ``[1, n, d]`` with the sender's write in the shared residual stream (all readers)."""
    base, p0 = pr.base, pr.p0
    if s.kind == "head" and not st.parallel:
        return "mid", (base.mid[s.layer][p0:] + D)[None]
    return "post", (base.post[s.layer][p0:] + D)[None]


def finish(st: PathSetup, pr: PairRuns, layer: int, stage: str, rows: torch.Tensor, bs: int) -> dict[str, np.ndarray]:
    """Run rows from ``layer``/``stage`` to the logits in chunks; raw quantities per row."""
    out = []
    for i in range(0, rows.shape[0], bs):
        x = rows[i : i + bs].clone()  # run_from writes into its input
        out.append(run_from(st.w, layer, stage, x, pr.p0, pr.base.run))
    return last_quantities(torch.cat(out), pr.answer_id, pr.wrong_id)


def direct_logits(st: PathSetup, pr: PairRuns, D: torch.Tensor, freeze_ln: bool) -> dict[str, np.ndarray]:
    """Raw quantities with the writes ``D [S, n, d]`` added to the final residual stream only."""
    final = pr.base.post[-1][-1]
    x = final + D[:, -1]
    logits = _frozen_final(st.w, x, final) if freeze_ln else unembed(st.w, x)
    return last_quantities(logits, pr.answer_id, pr.wrong_id)


def batch_rows(st: PathSetup, n_pos: int) -> int:
    cfg = st.cfg
    d = int(cfg.d_model)
    mlp_d = int(getattr(cfg, "d_mlp", None) or 4 * d)
    per = 4 * (n_pos * (10 * d + 3 * mlp_d + 3 * st.w.n_heads * n_pos) + 3 * int(cfg.d_vocab))
    return choose_batch(per, st.ctx.base_tokens(0).device, limit=4096)


def open_run(model: Any, pairs: PromptPair | Sequence[PromptPair], metric: str, direction: str, stop: Any,
             check: Callable[[], T], **setup_kw: Any) -> tuple[float, Callable[[], bool], T, PathSetup]:
    """The opening every path-patching generator shares (path patching, effects, neuron screen).

    Starts the clock, makes the stop callable, validates ``metric`` and ``direction``, runs the
    caller's own argument checks ``check()`` (before the costly part: bad input fails at once),
    then :func:`~patchlab.engine.pathsetup.setup` (``setup_kw``: its ``target``, ``cache_base``).

    Returns
    -------
    (t0, stop_fn, checked, st)
        Start time, stop callable, what ``check()`` returned, the pairs' runs.
    """
    t0 = time.perf_counter()
    stop_fn = as_stop(stop)
    check_metric(metric)
    check_direction(direction)
    checked = check()
    return t0, stop_fn, checked, setup(model, pairs, metric, direction, **setup_kw)


def rows_per_pass(st: PathSetup, batch_size: int | None) -> int:
    """``batch_size``, else the rows per forward pass that free memory allows for the longest pair."""
    return batch_size or batch_rows(st, max(tp.n_pos for tp in st.ctx.pairs))


def aggregate_raw(st: PathSetup, metric: str, raw: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``metric`` over pairs and per pair, from raw quantities ``{quantity: [pair, ...]}``."""
    bm = base_metric(metric)
    return aggregate(metric, raw[bm], st.ctx.base_raw[bm], st.ctx.source_raw[bm])


def _labels(st: PathSetup, senders: list[Sender], multi: bool, receiver: str) -> tuple[tuple[str, ...], dict[str, list[str]]]:
    L = st.n_layers
    axes: tuple[str, ...]
    labels: dict[str, list[str]] = {}
    if receiver == "logits":
        axes, labels["receiver"] = ("receiver",), ["logits"]
    else:
        layer_labels = [f"L{i}" for i in range(L)]
        if not multi:
            layer_labels = [lab if reaches(st, senders[0], receiver, i) else f"{lab} (not after {senders[0].label}: NaN)"
                            for i, lab in enumerate(layer_labels)]
        labels["layer"] = layer_labels
        if receiver == "mlp":
            axes = ("layer",)
        else:
            axes = ("layer", "head")
            kv = receiver in ("k", "v") and st.w.n_kv != st.w.n_heads
            labels["head"] = [f"KV{h}" if kv else f"H{h}" for h in range(n_receivers(st, receiver))]
    if multi:
        axes = ("sender", *axes)
        labels["sender"] = [s.label for s in senders]
    return axes, labels


def iter_path_patch(
    model: Any,
    pairs: PromptPair | Sequence[PromptPair],
    sender: Any,
    receiver: str,
    *,
    metric: str = "logit_diff_recovered",
    direction: str = "denoise",
    freeze_ln: bool = False,
    stop: Any = None,
    batch_size: int | None = None,
) -> Generator[PathEvent, None, PatchResult]:
    """Path patching as a generator: one :class:`PathEvent` per receiver layer; see :func:`path_patch`."""
    t0, stop_fn, (senders, multi), st = open_run(model, pairs, metric, direction, stop,
                                                 lambda: parse_senders(model, sender))
    check_receiver(st, receiver)
    L, R = st.n_layers, n_receivers(st, receiver)
    layers = [None] if receiver == "logits" else list(range(L))
    if not multi and not any(reaches(st, senders[0], receiver, layer) for layer in layers if layer is not None) and receiver != "logits":
        raise InputError(
            f"No {receiver} receiver comes after {senders[0].label}: every {receiver} receiver is at or before "
            f"the sender. Pick an earlier sender, or receiver 'logits' for the direct path."
        )
    n_pairs = len(st.runs)
    shape = (len(senders), 1) if receiver == "logits" else (len(senders), L) + ((R,) if receiver != "mlp" else ())
    raw = {q: np.full((n_pairs, *shape), np.nan) for q in RAW}
    cap = rows_per_pass(st, batch_size)
    done = 0
    cancelled = False
    try:
        for layer in layers:
            for p, pr in enumerate(st.runs):
                check_stop(stop_fn)
                idx = [i for i, s in enumerate(senders) if layer is None or reaches(st, s, receiver, layer)]
                # senders per chunk so that one chunk holds about ``cap`` rows
                step = max(1, cap // R)
                for c in range(0, len(idx), step):
                    check_stop(stop_fn)
                    part = idx[c : c + step]
                    with torch.inference_mode():
                        D = torch.stack([sender_delta(st, pr, senders[i]) for i in part])
                        if layer is None:
                            q = direct_logits(st, pr, D, freeze_ln)
                            for k in RAW:
                                raw[k][p, part, 0] = q[k]
                            continue
                        stage, rows = receiver_rows(st, pr, D, receiver, layer)
                        q = finish(st, pr, layer, stage, rows, cap)
                    for k in RAW:
                        raw[k][p, part, layer] = q[k].reshape(len(part), *shape[2:])
            done += 1
            yield PathEvent(done=done, total=len(layers), layer=layer, elapsed=time.perf_counter() - t0)
    except Cancelled:
        cancelled = True
    if not multi:
        raw = {k: v[:, 0] for k, v in raw.items()}
    values, per_pair = aggregate_raw(st, metric, raw)
    axes, labels = _labels(st, senders, multi, receiver)
    extra = {
        "target": f"path:{'heads' if multi else senders[0].label}->{receiver}",
        "target_label": f"Path patching: {'every head' if multi else senders[0].label} -> {RECEIVERS[receiver]}",
        "sender": [s.label for s in senders] if multi else senders[0].label,
        "receiver": receiver,
        "freeze_ln": bool(freeze_ln),
        "nan_reason": NAN_REASON,
        "cell_raw": {q: raw[q].mean(axis=0) for q in RAW},
        "complete": not cancelled,
        "cancelled": cancelled,
    }
    return PatchResult(values=values, axes=axes, labels=labels, per_pair=per_pair,
                       meta=meta(st, "path_patch", time.perf_counter() - t0, extra))


def path_patch(model: Any, pairs: PromptPair | Sequence[PromptPair], sender: Any, receiver: str, **kwargs: Any) -> PatchResult:
    """Path patching from one sender into every receiver of one kind.

    Parameters
    ----------
    model : TransformerBridge
        From :func:`patchlab.load_model`.
    pairs : PromptPair or list of PromptPair
        The metric is averaged over pairs (per-pair values in ``result.per_pair``).
    sender : str or tuple
        A head (``"L0H3"`` or ``(0, 3)``), an MLP layer (``"MLP1"``), or ``"heads"`` (every head;
        adds a leading ``sender`` axis).
    receiver : str
        ``"q"``, ``"k"``, ``"v"`` (axes ``layer, head``; on grouped-query models k and v are per
        key/value head, labelled ``KV0``...), ``"mlp"`` (axis ``layer``) or ``"logits"`` (the
        direct path; axis ``receiver`` of length 1).
    metric, direction : str
        As in :func:`patchlab.patch`.
    freeze_ln : bool
        For ``receiver="logits"``: divide by the base run's final-norm scale instead of
        recomputing it (the linear direct-logit-attribution view).
    stop, batch_size
        A stop callable / ``threading.Event``; rows per forward pass.

    Returns
    -------
    PatchResult
        Receivers at or before the sender are NaN (``meta["nan_reason"]``; their layer labels say
        so for a single sender). Same CSV/JSON as a patching sweep.
    """
    from patchlab.engine.sweep import run_to_end

    return run_to_end(iter_path_patch(model, pairs, sender, receiver, **kwargs))
