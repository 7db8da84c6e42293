"""Shared setup of path patching, effects and neurons: senders, verified plain-torch runs, meta.

Path patching runs the plain-torch forward of :mod:`patchlab.engine.fast` (the bridge has no
cheap way to give one head its own copy of the residual stream), after checking that this
forward reproduces the bridge's clean and corrupted runs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from patchlab._version import __version__
from patchlab.core.errors import InputError, TargetUnavailableError
from patchlab.core.metrics import RAW, base_metric
from patchlab.core.pairs import PromptPair
from patchlab.engine.context import SweepContext, prepare, source_and_base
from patchlab.engine.fast.backend import shared_prefix, weights_for
from patchlab.engine.fast.forward import BaseRun, base_runs
from patchlab.engine.fast.weights import FastWeights, Unsupported, extra_features
from patchlab.engine.loading import model_info
from patchlab.engine.quantities import last_quantities

TOL = 1e-4


@dataclass(frozen=True)
class Sender:
    """One component whose source-minus-base write is sent: a head or an MLP layer."""

    kind: str  # "head" or "mlp"
    layer: int
    head: int = -1

    @property
    def label(self) -> str:
        return f"L{self.layer}H{self.head}" if self.kind == "head" else f"MLP{self.layer}"


class OneRun:
    """A one-prompt :class:`BaseRun` (``run``, batched layout, for ``run_from``) read with its
    prompt axis dropped from every per-layer list (``pre[l]`` is ``[T, d]``)."""

    def __init__(self, run: BaseRun) -> None:
        self.run = run

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.run, name)
        return [t[0] for t in value] if isinstance(value, list) else value


@dataclass
class PairRuns:
    """Both plain-torch runs of one pair, seen from the chosen direction."""

    src: Any  # OneRun: per-layer tensors without the prompt axis
    base: Any
    p0: int  # first position where the prompts differ (earlier positions are identical)
    answer_id: int
    wrong_id: int


@dataclass
class PathSetup:
    ctx: SweepContext  # tokenised pairs and the bridge's baselines
    w: FastWeights
    runs: list[PairRuns]

    @property
    def cfg(self) -> Any:
        return self.ctx.model.cfg

    @property
    def n_layers(self) -> int:
        return self.ctx.n_layers

    @property
    def parallel(self) -> bool:
        return self.w.parallel

    @property
    def attn_only(self) -> bool:
        return self.w.attn_only


def _arch(model: Any) -> str:
    cfg = model.cfg
    return str(getattr(cfg, "original_architecture", None) or getattr(cfg, "model_name", "this model"))


def no_mlp_message(model: Any, what: str) -> str | None:
    """Why ``what`` (an MLP sender/receiver) does not exist on this model, or None."""
    cfg = model.cfg
    if getattr(cfg, "attn_only", False):
        return f"{_arch(model)} is attention-only: it has no MLP layers, so there is no {what}. Use heads instead."
    return None


def parse_senders(model: Any, sender: Any) -> tuple[list[Sender], bool]:
    """Senders from ``"L0H3"``, ``(0, 3)``, ``"MLP1"``, ``"heads"`` or ``"mlps"``.

    Returns the list and whether it is a multi-sender request (an extra leading axis).
    """
    cfg = model.cfg
    L, H = int(cfg.n_layers), int(cfg.n_heads)
    if isinstance(sender, str) and sender.strip().lower() in ("heads", "mlps"):
        if sender.strip().lower() == "heads":
            return [Sender("head", layer, h) for layer in range(L) for h in range(H)], True
        msg = no_mlp_message(model, "MLP sender")
        if msg:
            raise TargetUnavailableError(msg)
        return [Sender("mlp", layer) for layer in range(L)], True
    if isinstance(sender, (tuple, list)) and len(sender) == 2 and all(isinstance(i, (int, np.integer)) for i in sender):
        s = Sender("head", int(sender[0]), int(sender[1]))
    elif isinstance(sender, str) and (m := re.fullmatch(r"\s*L(\d+)H(\d+)\s*", sender, re.IGNORECASE)):
        s = Sender("head", int(m.group(1)), int(m.group(2)))
    elif isinstance(sender, str) and (m := re.fullmatch(r"\s*MLP\s*(\d+)\s*", sender, re.IGNORECASE)):
        msg = no_mlp_message(model, "MLP sender")
        if msg:
            raise TargetUnavailableError(msg)
        s = Sender("mlp", int(m.group(1)))
    else:
        raise InputError(
            f"Unknown sender {sender!r}. Use a head ('L0H3' or (0, 3)), an MLP layer ('MLP1'), "
            "or 'heads' for every head."
        )
    if not 0 <= s.layer < L:
        raise InputError(f"The sender {s.label} is outside the model: layers are 0..{L - 1}.")
    if s.kind == "head" and not 0 <= s.head < H:
        raise InputError(f"The sender {s.label} is outside the model: heads are 0..{H - 1}.")
    return [s], False


def setup(model: Any, pairs: PromptPair | Sequence[PromptPair], metric: str, direction: str,
          target: str = "attn_head_out_all_pos", cache_base: bool = False) -> PathSetup:
    """Tokenise, run both prompts on the bridge and in plain torch, and check they agree.

    ``target`` (without a position axis, so pairs may differ in length) picks what the
    bridge's runs cache.
    """
    ctx = prepare(model, pairs, target=target, metric=metric, direction=direction, cache_base=cache_base)
    try:
        w = weights_for(model)
        extra = extra_features(w)  # implemented by the patching fast path only
        if extra:
            raise Unsupported(extra)
    except Unsupported as exc:
        raise TargetUnavailableError(
            f"Path patching needs patchlab's plain-torch forward pass, which does not implement "
            f"{_arch(model)} ({exc})."
        ) from None
    src_name, base_name = source_and_base(direction)
    runs = []
    for p, tp in enumerate(ctx.pairs):
        got = {}
        with torch.inference_mode():
            for which in ("clean", "corrupted"):
                got[which] = base_runs(w, tp.tokens(which))  # batched layout; OneRun drops the prompt axis
        for which, ref in (("clean", ctx.clean_raw), ("corrupted", ctx.corrupted_raw)):
            ours = last_quantities(got[which].last_logits.reshape(1, -1), tp.answer_id, tp.wrong_id)
            err = abs(float(ours["logit_diff"][0]) - float(ref["logit_diff"][p]))
            if not err <= TOL * max(1.0, abs(float(ref["logit_diff"][p]))):
                raise TargetUnavailableError(
                    f"Path patching needs patchlab's plain-torch forward pass, and on {_arch(model)} it "
                    f"differs from the bridge's (logit difference of the {which} run off by {err:.2g})."
                )
        p0 = min(shared_prefix(tp.clean, tp.corrupted), tp.n_pos - 1)
        runs.append(PairRuns(OneRun(got[src_name]), OneRun(got[base_name]), p0, tp.answer_id, tp.wrong_id))
    return PathSetup(ctx, w, runs)


def sender_delta(st: PathSetup, pr: PairRuns, s: Sender) -> torch.Tensor:
    """Source-minus-base residual write of ``s`` at positions ``p0..T-1``: ``[n, d_model]``.

    A head writes ``z @ W_O`` (its output bias belongs to no head and cancels); an MLP its output.
    """
    if s.kind == "mlp":
        return (pr.src.mlp[s.layer] - pr.base.mlp[s.layer])[pr.p0 :]
    dz = pr.src.z[s.layer][pr.p0 :, s.head] - pr.base.z[s.layer][pr.p0 :, s.head]
    return dz @ st.w.layers[s.layer].W_O[s.head]


def meta(st: PathSetup, kind: str, elapsed: float, extra: dict[str, Any]) -> dict[str, Any]:
    """Run record metadata in the shape of :func:`patchlab.engine.sweep`'s."""
    ctx = st.ctx
    info = model_info(ctx.model)
    runs = {}
    for which, raw in (("clean", ctx.clean_raw), ("corrupted", ctx.corrupted_raw)):
        runs[which] = {q: float(np.mean(raw[q])) for q in RAW}
        runs[which]["per_pair"] = {q: raw[q] for q in RAW}
    src, base = source_and_base(ctx.direction)
    if ctx.metric == "logit_diff_recovered":
        baselines = {src: 1.0, base: 0.0}
    else:
        bm = base_metric(ctx.metric)
        baselines = {w: runs[w][bm] for w in ("clean", "corrupted")}
    out = {
        "kind": kind,
        "model": info.name,
        "model_info": info.to_dict(),
        "processing": info.processing,
        "direction": ctx.direction,
        "metric": ctx.metric,
        "method": "exact",
        "pairs": [tp.pair.to_dict() for tp in ctx.pairs],
        "tokens": [{"clean": tp.clean_str, "corrupted": tp.corrupted_str} for tp in ctx.pairs],
        "baselines": baselines,
        "runs": runs,
        "engine_path": "paths-torch",
        "patchlab_version": __version__,
        "elapsed_s": elapsed,
        "complete": True,
    }
    out.update(extra)
    return out
