"""Frozen inputs of a sweep: validated pairs, caches of both runs and baselines."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from transformer_lens import utilities as tl_utils

from patchlab.core.errors import Cancelled, InputError, TargetUnavailableError
from patchlab.core.metrics import RAW, check_direction, check_method, check_metric
from patchlab.core.pairs import PromptPair
from patchlab.core.targets import Target, get_target
from patchlab.engine.quantities import last_quantities
from patchlab.engine.tokens import TokenizedPair, check_equal_lengths, tokenize_pairs

StopFlag = Callable[[], bool]


def as_stop(stop: Any) -> StopFlag:
    """Accept ``None``, a callable or a ``threading.Event`` and return a callable."""
    if stop is None:
        return lambda: False
    if hasattr(stop, "is_set"):
        return stop.is_set
    if callable(stop):
        return stop
    raise InputError("stop must be a callable or a threading.Event.")


def check_stop(stop: StopFlag) -> None:
    if stop():
        raise Cancelled("Stopped.")


def hook_name(target: Target, layer: int) -> str:
    return tl_utils.get_act_name(target.act, layer)


def source_and_base(direction: str) -> tuple[str, str]:
    """Which run gives the patched-in activations and which run is patched: (source, base)."""
    return ("clean", "corrupted") if direction == "denoise" else ("corrupted", "clean")


@dataclass
class SweepContext:
    """Everything a backend needs; built once, never mutated by backends."""

    model: Any
    pairs: list[TokenizedPair]
    target: Target
    metric: str
    direction: str
    method: str
    n_layers: int
    row_shape: tuple[int, ...]
    clean_raw: dict[str, np.ndarray]  # quantity -> (n_pairs,)
    corrupted_raw: dict[str, np.ndarray]
    source_caches: list[dict[str, torch.Tensor]] = field(default_factory=list)
    base_caches: list[dict[str, torch.Tensor]] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.n_layers, *self.row_shape)

    @property
    def n_cells(self) -> int:
        return int(np.prod(self.shape))

    def _raw(self, which: str) -> dict[str, np.ndarray]:
        return self.clean_raw if which == "clean" else self.corrupted_raw

    @property
    def source_raw(self) -> dict[str, np.ndarray]:
        """Quantities of the run the activations come from."""
        return self._raw(source_and_base(self.direction)[0])

    @property
    def base_raw(self) -> dict[str, np.ndarray]:
        """Quantities of the unpatched run that gets patched."""
        return self._raw(source_and_base(self.direction)[1])

    def base_tokens(self, p: int) -> torch.Tensor:
        return self.pairs[p].tokens(source_and_base(self.direction)[1])

    def source_tokens(self, p: int) -> torch.Tensor:
        return self.pairs[p].tokens(source_and_base(self.direction)[0])


def _n_heads(model: Any, target: Target) -> int:
    cfg = model.cfg
    if target.uses_kv_heads and getattr(cfg, "n_key_value_heads", None):
        return int(cfg.n_key_value_heads)
    return int(cfg.n_heads)


def row_shape(model: Any, target: Target, n_pos: int) -> tuple[int, ...]:
    sizes = {"pos": n_pos, "head": _n_heads(model, target), "neuron": int(getattr(model.cfg, "d_mlp", None) or 0)}
    return tuple(sizes[a] for a in target.axes[1:])


def _run(model: Any, tokens: torch.Tensor, names: list[str]):
    with torch.inference_mode():
        logits, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
        return logits[:, -1], {n: cache[n].clone() for n in names if n in cache.cache_dict}


def unavailable_message(model: Any, target: Target, missing: str) -> str:
    cfg = model.cfg
    arch = getattr(cfg, "original_architecture", None) or getattr(cfg, "model_name", "this model")
    if target.act == "resid_mid" and getattr(cfg, "parallel_attn_mlp", False):
        why = "attention and MLP run in parallel on the same residual stream, so there is no residual stream between them"
        alt = "Use resid_pre, resid_post, attn_out or mlp_out."
    elif target.act in ("mlp_out", "resid_mid", "post") and getattr(cfg, "attn_only", False):
        why = "it is attention-only and has no MLP layers"
        alt = "Use resid_pre, resid_post, attn_out or a head target."
    else:
        why = f"its TransformerLens bridge has no hook {missing}"
        alt = "Choose another target."
    return f"The target {target.name!r} is not available for {arch}: {why}. {alt}"


def validate(
    model: Any,
    pairs: PromptPair | Sequence[PromptPair],
    target: str,
    metric: str,
    direction: str,
    method: str | None = None,
) -> tuple[Target, list[TokenizedPair]]:
    """What every ``prepare`` checks first: the target, metric, direction (and method), and
    the pairs, tokenised, of one token length when the target has a position axis."""
    tgt = get_target(target)
    check_metric(metric)
    check_direction(direction)
    if method is not None:
        check_method(method)
    tps = tokenize_pairs(model, pairs)
    if "pos" in tgt.axes:  # names the pairs per length and offers grouping
        check_equal_lengths(tps, tgt.name)
    return tgt, tps


def prepare(
    model: Any,
    pairs: PromptPair | Sequence[PromptPair],
    *,
    target: str,
    metric: str = "logit_diff_recovered",
    direction: str = "denoise",
    method: str = "exact",
    cache_base: bool = False,
) -> SweepContext:
    """Validate inputs, run both prompts once, and cache the target's activations."""
    tgt, tps = validate(model, pairs, target, metric, direction, method)
    n_pos = tps[0].n_pos
    n_layers = int(model.cfg.n_layers)
    names = [hook_name(tgt, layer) for layer in range(n_layers)]
    raw: dict[str, dict[str, list]] = {w: {q: [] for q in RAW} for w in ("clean", "corrupted")}
    source_caches, base_caches = [], []
    for tp in tps:
        runs = {}
        for which in ("clean", "corrupted"):
            last, cache = _run(model, tp.tokens(which), names)
            missing = [n for n in names if n not in cache]
            if missing:
                raise TargetUnavailableError(unavailable_message(model, tgt, missing[0]))
            runs[which] = cache
            for q, v in last_quantities(last, tp.answer_id, tp.wrong_id).items():
                raw[which][q].append(float(v[0]))
        src, base = source_and_base(direction)
        source_caches.append(runs[src])
        if cache_base:
            base_caches.append(runs[base])
    arr = {w: {q: np.array(v, dtype=np.float64) for q, v in d.items()} for w, d in raw.items()}
    return SweepContext(
        model=model,
        pairs=tps,
        target=tgt,
        metric=metric,
        direction=direction,
        method=method,
        n_layers=n_layers,
        row_shape=row_shape(model, tgt, n_pos),
        clean_raw=arr["clean"],
        corrupted_raw=arr["corrupted"],
        source_caches=source_caches,
        base_caches=base_caches,
    )
