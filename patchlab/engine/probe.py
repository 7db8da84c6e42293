"""Refuse targets whose edits never reach the output, instead of drawing them as zeros.

TransformerLens 4.3 hands the attention of some architectures to the Hugging Face module and
fires ``hook_pattern`` (and on some bridges ``hook_q``/``hook_k``) after the fact: an edit there
is discarded with only a ``UserWarning``, so a sweep would show a map of zeros and
TransformerLens's own ``get_act_patch_*`` would agree. Before a sweep we patch the target's
whole activation at each layer where the two runs differ (one batch row per layer, plus one
unpatched row) and check that the logits move.
"""

from __future__ import annotations

import warnings
import weakref
from typing import Any

import torch

from patchlab.core.errors import TargetUnavailableError
from patchlab.engine.context import SweepContext, hook_name

# rows per probe forward pass (one patched layer each, plus one unpatched reference row)
CHUNK = 8
# activations closer than this (relative to their size) count as equal in both runs
ACT_TOL = 1e-6
# a patch that moves no logit by more than this (relative) did not reach the output; the
# patched and unpatched rows share one batch, so a discarded edit gives (nearly) equal bits
LOGIT_TOL = 1e-7

# model -> {activation short name: dead layers ([] = reaches the output)}; architectural facts
_SEEN: weakref.WeakKeyDictionary[Any, dict[str, list[int]]] = weakref.WeakKeyDictionary()


def _arch(model: Any) -> str:
    cfg = model.cfg
    return str(getattr(cfg, "original_architecture", None) or getattr(cfg, "architecture", None)
               or getattr(cfg, "model_name", "this model"))


def dead_layers(ctx: SweepContext, pair: int = 0) -> list[int] | None:
    """Layers where patching the target changes its activation but not the logits.

    Returns ``None`` when the probe cannot tell (the two runs have equal activations at every
    layer, e.g. identical prompts).
    """
    model, tgt = ctx.model, ctx.target
    names = [hook_name(tgt, layer) for layer in range(ctx.n_layers)]
    src = ctx.source_caches[pair]
    base = ctx.base_tokens(pair)
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the bridge's "edit discarded" UserWarning is what we detect
        _, cache = model.run_with_cache(base, names_filter=lambda n: n in names)
        todo = []
        for layer, name in enumerate(names):
            a, b = src[name].float(), cache[name].float()
            if float((a - b).abs().max()) > ACT_TOL * max(1.0, float(b.abs().max())):
                todo.append(layer)
        if not todo:
            return None
        dead = []
        for first in range(0, len(todo), CHUNK):
            layers = todo[first : first + CHUNK]
            hooks = [(names[layer], _setter(row, src[names[layer]])) for row, layer in enumerate(layers)]
            logits = model.run_with_hooks(base.expand(len(layers) + 1, -1), fwd_hooks=hooks).float()
            ref = logits[-1]
            scale = max(1.0, float(ref.abs().max()))
            for row, layer in enumerate(layers):
                if float((logits[row] - ref).abs().max()) <= LOGIT_TOL * scale:
                    dead.append(layer)
    return dead


def _setter(row: int, value: torch.Tensor):
    def hook(act, hook):  # noqa: ARG001 - TransformerLens hook signature
        act[row] = value[0].to(act.dtype)
        return act

    return hook


def check_reaches_output(ctx: SweepContext) -> None:
    """Raise :class:`TargetUnavailableError` if patching ``ctx.target`` cannot move the output.

    Run once per model and activation (the result is a property of the architecture and
    TransformerLens's bridge for it, so it is remembered for the model's life).
    """
    seen = _SEEN.setdefault(ctx.model, {})
    act = ctx.target.act
    if act not in seen:
        dead = None
        for p in range(len(ctx.pairs)):
            dead = dead_layers(ctx, p)
            if dead is not None:
                break
        if dead is None:
            return  # inconclusive (identical activations in both runs): nothing to refuse on
        seen[act] = dead
    dead = seen[act]
    if dead:
        hook = hook_name(ctx.target, dead[0])
        layers = ", ".join(str(x) for x in dead)
        raise TargetUnavailableError(
            f"The target {ctx.target.name!r} is not available for {_arch(ctx.model)}: patching {hook} "
            f"does not change the output (layer{'s' if len(dead) > 1 else ''} {layers}), although the "
            "two runs' activations differ there. TransformerLens's bridge runs this model's "
            "attention inside the Hugging Face module and discards edits to this hook, so every "
            "cell would show zero. Use attn_head_out_by_pos / attn_head_out_all_pos (head outputs) "
            "or a residual-stream target instead."
        )
