"""Total, direct and indirect effect of every head and / or MLP.

total: the component's source-minus-base write added to the shared residual stream (what
activation patching of its output at all positions does); direct: the same write sent only to
the final residual stream (path patching into the logits); indirect: total minus direct, the part
that works through later layers.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Sequence
from typing import Any

import numpy as np
import torch

from patchlab.core.errors import Cancelled, InputError, TargetUnavailableError
from patchlab.core.metrics import RAW
from patchlab.core.pairs import PromptPair
from patchlab.core.result import PatchResult
from patchlab.engine.context import check_stop
from patchlab.engine.paths import (
    PathEvent,
    aggregate_raw,
    direct_logits,
    finish,
    open_run,
    rows_per_pass,
    total_rows,
)
from patchlab.engine.pathsetup import Sender, meta, no_mlp_message, sender_delta

COMPONENTS = ("heads", "mlps", "all")
EFFECTS = ("total", "direct", "indirect")


def components_of(model: Any, components: str) -> list[Sender]:
    """The senders of ``components`` in forward order (a layer's heads before its MLP)."""
    if components not in COMPONENTS:
        raise InputError(f"Unknown components {components!r}. Choose one of: {', '.join(COMPONENTS)}.")
    cfg = model.cfg
    L, H = int(cfg.n_layers), int(cfg.n_heads)
    if components != "heads":
        msg = no_mlp_message(model, "MLP component")
        if msg:
            raise TargetUnavailableError(msg + " Use components='heads'.")
    out = []
    for layer in range(L):
        if components in ("heads", "all"):
            out += [Sender("head", layer, h) for h in range(H)]
        if components in ("mlps", "all"):
            out.append(Sender("mlp", layer))
    return out


def iter_effects(
    model: Any,
    pairs: PromptPair | Sequence[PromptPair],
    *,
    components: str = "heads",
    metric: str = "logit_diff_recovered",
    direction: str = "denoise",
    freeze_ln: bool = False,
    stop: Any = None,
    batch_size: int | None = None,
) -> Generator[PathEvent, None, PatchResult]:
    """Effects as a generator, one :class:`PathEvent` per layer; see :func:`effects`."""
    t0, stop_fn, senders, st = open_run(model, pairs, metric, direction, stop,
                                        lambda: components_of(model, components))
    n_pairs, S, L = len(st.runs), len(senders), st.n_layers
    raw = {e: {q: np.full((n_pairs, S), np.nan) for q in RAW} for e in ("total", "direct")}
    cap = rows_per_pass(st, batch_size)
    cancelled = False
    try:
        for layer in range(L):
            idx = [i for i, s in enumerate(senders) if s.layer == layer]
            for p, pr in enumerate(st.runs):
                check_stop(stop_fn)
                with torch.inference_mode():
                    D = torch.stack([sender_delta(st, pr, senders[i]) for i in idx])
                    q = direct_logits(st, pr, D, freeze_ln)
                    for k in RAW:
                        raw["direct"][k][p, idx] = q[k]
                    # heads of a layer enter together; an MLP enters after its layer's attention
                    groups: dict[str, list[int]] = {}
                    for j, i in enumerate(idx):
                        stage, _ = total_rows(st, pr, senders[i], D[j])
                        groups.setdefault(stage, []).append(j)
                    for stage, js in groups.items():
                        rows = torch.cat([total_rows(st, pr, senders[idx[j]], D[j])[1] for j in js])
                        q = finish(st, pr, layer, stage, rows, cap)
                        for k in RAW:
                            raw["total"][k][p, [idx[j] for j in js]] = q[k]
            yield PathEvent(done=layer + 1, total=L, layer=layer, elapsed=time.perf_counter() - t0)
    except Cancelled:
        cancelled = True
    vals, per = {}, {}
    for e in ("total", "direct"):
        vals[e], per[e] = aggregate_raw(st, metric, raw[e])
    values = np.stack([vals["total"], vals["direct"], vals["total"] - vals["direct"]])
    per_pair = np.stack([per["total"], per["direct"], per["total"] - per["direct"]], axis=1)
    extra = {
        "target": f"effects:{components}",
        "target_label": "Total, direct (to the logits alone) and indirect (through later layers) effects",
        "components": components,
        "component_index": [[s.kind, s.layer, s.head] for s in senders],
        "freeze_ln": bool(freeze_ln),
        "cell_raw": {e: {q: raw[e][q].mean(axis=0) for q in RAW} for e in ("total", "direct")},
        "complete": not cancelled,
        "cancelled": cancelled,
    }
    return PatchResult(
        values=values,
        axes=("effect", "component"),
        labels={"effect": list(EFFECTS), "component": [s.label for s in senders]},
        per_pair=per_pair,
        meta=meta(st, "effects", time.perf_counter() - t0, extra),
    )


def effects(model: Any, pairs: PromptPair | Sequence[PromptPair], **kwargs: Any) -> PatchResult:
    """Total, direct and indirect effect of every component.

    Parameters
    ----------
    model : TransformerBridge
    pairs : PromptPair or list of PromptPair
    components : str
        ``"heads"``, ``"mlps"`` or ``"all"`` (a layer's heads, then its MLP).
    metric, direction : str
        As in :func:`patchlab.patch`.
    freeze_ln : bool
        Direct effects with the base run's final-norm scale (linear, as direct logit attribution).
    stop, batch_size
        As in :func:`patchlab.path_patch`.

    Returns
    -------
    PatchResult
        Axes ``("effect", "component")``: rows ``total``, ``direct``, ``indirect`` (= total -
        direct); components labelled ``L0H3`` / ``MLP1`` (``meta["component_index"]`` gives
        ``[kind, layer, head]``, head -1 for MLPs).
    """
    from patchlab.engine.sweep import run_to_end

    return run_to_end(iter_effects(model, pairs, **kwargs))
