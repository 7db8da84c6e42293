"""The fast path's self-check against the bridge: logits of every pair, activations of pair 0.

The fast forward must reproduce the bridge's unpatched runs before its numbers are used. The
first group of pairs is checked before the sweep is routed here (logits of each pair, and the
target's activations of pair 0 against the bridge's cache of its source run); every later
group's logits are checked on its first runs inside the sweep, before any row is yielded
(:class:`Mismatch`), so no forward pass runs only for the check.
"""

from __future__ import annotations

from typing import Any

import torch

from patchlab.engine.context import SweepContext, hook_name, source_and_base
from patchlab.engine.fast.forward import BaseRun, base_runs
from patchlab.engine.fast.weights import FastWeights
from patchlab.engine.quantities import last_quantities

# self-check tolerance per weight dtype: several units in the last place of a half type (the two
# forwards round in different orders: 1e-3 measured in bfloat16 on tiny models), 1e-4 in float32
TOLS = {torch.float32: 1e-4, torch.float64: 1e-6, torch.float16: 1e-2, torch.bfloat16: 5e-2}
TOL = TOLS[torch.float32]


def run_activation(run: BaseRun, act: str, layer: int) -> torch.Tensor:
    """This run's activation in the bridge hook's layout ``[P, ...]``."""
    if act in ("q", "k", "v"):
        return getattr(run, act)[layer].transpose(1, 2)
    field = {"resid_pre": "pre", "resid_mid": "mid", "resid_post": "post", "attn_out": "attn",
             "mlp_out": "mlp", "z": "z", "pattern": "pattern"}[act]
    return getattr(run, field)[layer]


def _close(a: torch.Tensor, b: torch.Tensor) -> float:
    """Max abs difference, scaled by the reference's magnitude when that is above 1."""
    a, b = a.double(), b.double()
    return float((a - b).abs().max()) / max(1.0, float(b.abs().max()))


def group_tokens(ctx: SweepContext, group: list[int], which: str) -> torch.Tensor:
    return torch.cat([ctx.pairs[p].tokens(which) for p in group])


def source_acts(run: BaseRun, act: str, layers) -> dict[int, torch.Tensor]:
    """The target's activations ``[P, ...]`` (bridge hook layout) of a source run, per layer."""
    return {layer: run_activation(run, act, layer) for layer in layers}


class Mismatch(RuntimeError):
    """A later group of pairs failed the self-check, found before the sweep's first row.

    ``reason`` says how; :func:`patchlab.engine.sweep.iter_patch` then falls back to the hook
    path (``engine="auto"``) or refuses (``engine="fast"``), as if it had been found up front.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"The fast engine does not apply: {reason}")
        self.reason = reason


def _tol(w: FastWeights) -> float:
    return TOLS.get(w.dtype, TOLS[torch.float16])


def check_logits(ctx: SweepContext, w: FastWeights, group: list[int], runs: dict[str, BaseRun]) -> str | None:
    """Our unpatched runs' last-position quantities against the bridge's, for each pair of ``group``."""
    tol = _tol(w)
    for i, p in enumerate(group):
        tp = ctx.pairs[p]
        for which, ref in (("clean", ctx.clean_raw), ("corrupted", ctx.corrupted_raw)):
            ours = last_quantities(runs[which].last_logits[i : i + 1], tp.answer_id, tp.wrong_id)
            for q in ("logit_diff", "answer_logprob"):
                err = abs(float(ours[q][0]) - float(ref[q][p])) / max(1.0, abs(float(ref[q][p])))
                if not err <= tol:
                    return (f"its plain-torch forward pass differs from the bridge's on this model "
                            f"({q} of the {which} run of pair {p + 1} off by {err:.2g}, tolerance {tol:g} "
                            f"in {w.dtype})")
    return None


def _check_acts(ctx: SweepContext, w: FastWeights, p: int, i: int, src: BaseRun) -> str | None:
    """Pair ``p``'s target activations (row ``i`` of our source run) against the bridge's cache."""
    tol = _tol(w)
    bridge = ctx.source_caches[p]
    for layer in range(ctx.n_layers):
        name = hook_name(ctx.target, layer)
        ref_act = bridge[name][0]
        ours_act = run_activation(src, ctx.target.act, layer)[i]
        if ours_act.shape != ref_act.shape:
            return f"its {name} has shape {tuple(ref_act.shape)}, the fast path expects {tuple(ours_act.shape)}"
        err = _close(ours_act, ref_act)
        if not err <= tol:
            return f"its {name} differs from the fast path's by {err:.2g} (tolerance {tol:g} in {w.dtype})"
    return None


def verify(ctx: SweepContext, w: FastWeights, groups: list[list[int]]) -> tuple[str | None, dict[str, Any]]:
    """Compare the first group's unpatched runs with the bridge's before choosing the fast path.

    Checked: the logits of every pair of the first group, and the target activations of pair 0
    against the bridge's cache of its source run (the one the probe reads too; a forward that
    computes a model differently shows it on any prompt). No other pair's bridge activations
    are ever run or held. The other groups' logits are checked by :func:`patchlab.engine.fast.backend.iter_rows` on their
    first runs, before any row is yielded (:class:`Mismatch`), so no forward pass runs twice.
    Returns the reason the fast path does not apply (or None), and what the sweep keeps of
    these runs: ``kept`` (the group's base run and source activations for the whole sweep)
    when it holds every pair, else ``first`` (both runs, for the first wave only).
    """
    src_name, base_name = source_and_base(ctx.direction)
    with torch.inference_mode():
        runs = {which: base_runs(w, group_tokens(ctx, groups[0], which)) for which in ("clean", "corrupted")}
    reason = check_logits(ctx, w, groups[0], runs) or _check_acts(ctx, w, groups[0][0], 0, runs[src_name])
    if reason is not None:
        return reason, {}
    if len(groups) == 1:
        return None, {"kept": (runs[base_name], source_acts(runs[src_name], ctx.target.act, range(ctx.n_layers)))}
    return None, {"first": (runs[base_name], runs[src_name])}
