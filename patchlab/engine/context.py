"""Frozen inputs of a sweep: validated pairs, caches of both runs and baselines."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from transformer_lens import utilities as tl_utils

from patchlab.core.errors import Cancelled, InputError, TargetUnavailableError
from patchlab.core.metrics import RAW, check_direction, check_method, check_metric
from patchlab.core.pairs import PromptPair
from patchlab.core.targets import Target, get_target
from patchlab.engine.memory import budget_bytes
from patchlab.engine.quantities import last_quantities
from patchlab.engine.tokens import TokenizedPair, check_equal_lengths, tokenize_pairs

# most prompts per batched bridge forward when prepare computes the baselines
BASELINE_BATCH = 16

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
    # the bridge's target activations per pair, run on first use (see BridgeCaches)
    source_caches: Sequence[dict[str, torch.Tensor]] = field(default_factory=list)
    base_caches: Sequence[dict[str, torch.Tensor]] = field(default_factory=list)

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


class BridgeCaches(Sequence):
    """The bridge's cached target activations of one run per pair, each run on first use.

    ``caches[p]`` is ``{hook name: [1, ...]}`` of pair ``p``'s ``which`` prompt, as
    ``run_with_cache`` gives it. Nothing runs until a pair is read, and a pair once run is kept:
    the hook path reads every pair at every layer (and keeps them all, as before), while the
    fast path computes its source activations per group of pairs in flight with its own forward
    and reads only pair 0 here (its self-check and the probe), so its memory does not grow with
    the number of pairs.
    """

    def __init__(self, model: Any, pairs: Sequence[TokenizedPair], which: str, names: list[str]) -> None:
        self.model, self.pairs, self.which, self.names = model, list(pairs), which, list(names)
        self._store: dict[int, dict[str, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, p):  # type: ignore[override]
        if isinstance(p, slice):
            return [self[i] for i in range(*p.indices(len(self)))]
        p = int(p)
        if p < 0:
            p += len(self)
        if not 0 <= p < len(self):
            raise IndexError(f"pair {p} out of range ({len(self)} pairs)")
        hit = self._store.get(p)
        if hit is None:
            _, hit = _run(self.model, self.pairs[p].tokens(self.which), self.names)
            self._store[p] = hit
        return hit

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return (self[p] for p in range(len(self)))

    @property
    def n_run(self) -> int:
        """How many pairs' caches have been run (and are held)."""
        return len(self._store)


def _baselines(model: Any, tps: list[TokenizedPair], seed: BridgeCaches) -> dict[str, dict[str, np.ndarray]]:
    """Both runs' last-position quantities per pair, from batched bridge forwards.

    Prompts of one token length share a forward pass (no padding, so each row is the run of
    that prompt alone); a batch holds at most ``BASELINE_BATCH`` prompts and fits a quarter of
    the memory budget (full-vocabulary logits at every position dominate). The batch with pair
    0's ``seed.which`` prompt also caches its target activations into ``seed`` (pair 0 only).
    """
    cfg = model.cfg
    device = tps[0].clean.device
    out = {w: {q: np.full(len(tps), np.nan) for q in RAW} for w in ("clean", "corrupted")}
    by_len: dict[int, list[int]] = {}
    for p, tp in enumerate(tps):
        by_len.setdefault(tp.n_pos, []).append(p)
    names = seed.names
    for n_pos, ps in by_len.items():
        per_prompt = 4 * n_pos * (int(cfg.d_vocab) + 16 * int(cfg.d_model) * int(cfg.n_layers))
        k = int(max(1, min(BASELINE_BATCH, budget_bytes(device) // 4 // max(1, per_prompt))))
        for i in range(0, len(ps), k):
            group = ps[i : i + k]
            for which in ("clean", "corrupted"):
                tokens = torch.cat([tps[p].tokens(which) for p in group])
                with torch.inference_mode():
                    if group[0] == 0 and which == seed.which:
                        logits, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
                        seed._store[0] = {n: cache[n][:1].clone() for n in names if n in cache.cache_dict}
                        del cache
                    else:
                        logits = model(tokens)
                    last = logits[:, -1]
                    del logits
                for j, p in enumerate(group):
                    q = last_quantities(last[j : j + 1], tps[p].answer_id, tps[p].wrong_id)
                    for name, v in q.items():
                        out[which][name][p] = float(v[0])
    return out


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
    """Validate inputs, run both prompts of every pair once (batched), and set up the caches.

    The baselines (last-position quantities of both runs) are computed here; the target's
    activations (``source_caches``, and ``base_caches`` with ``cache_base``) are run through
    the bridge per pair on first use (:class:`BridgeCaches`), so a sweep on the fast path holds
    only the activations of the pairs in flight.
    """
    tgt, tps = validate(model, pairs, target, metric, direction, method)
    n_pos = tps[0].n_pos
    n_layers = int(model.cfg.n_layers)
    names = [hook_name(tgt, layer) for layer in range(n_layers)]
    src, base = source_and_base(direction)
    source_caches = BridgeCaches(model, tps, src, names)
    arr = _baselines(model, tps, source_caches)
    # pair 0's source run (kept: the probe and the fast path's self-check read it) shows missing hooks
    missing = [n for n in names if n not in source_caches[0]]
    if missing:
        raise TargetUnavailableError(unavailable_message(model, tgt, missing[0]))
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
        base_caches=BridgeCaches(model, tps, base, names) if cache_base else [],
    )
