"""Worker-side job bodies of the Trace analysis (no Qt): effects, path maps and neurons.

One job runs the whole trace of a sender so that it is cancelled and superseded as one: the
effect bars of every component, the sender's path into every receiver kind that comes after
it, and for an MLP sender the neuron screen. Progress events say which stage runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from patchlab.core.errors import Cancelled, InputError


@dataclass
class TraceProgress:
    """Progress of a trace: ``stage`` (effects / path into q... / neurons), ``done`` of ``total`` stages."""

    stage: str
    done: int
    total: int
    elapsed: float


def has_mlps(model: Any) -> bool:
    """False on attention-only models (no MLP senders or receivers there)."""
    return not bool(getattr(model.cfg, "attn_only", False))


def receivers_for(model: Any) -> list[str]:
    return ["q", "k", "v"] + (["mlp"] if has_mlps(model) else [])


def _drain(gen, stop):
    """Run an engine generator to its end; a stop mid-way is a cancel, not a partial result."""
    while True:
        try:
            next(gen)
        except StopIteration as end:
            result = end.value
            break
    if stop is not None and stop.is_set() or getattr(result, "meta", {}).get("cancelled"):
        raise Cancelled("cancelled")
    return result


def trace_job(model, pairs, *, sender: str, metric: str, direction: str, k: int = 50, stop=None):
    """Effects of every component, ``sender``'s path maps and (MLP sender) its neuron screen.

    Returns
    -------
    dict
        ``effects`` (PatchResult, axes effect x component), ``paths`` (receiver -> PatchResult;
        receivers that nothing after the sender reads are left out and named in ``skipped``)
        and ``neurons`` (NeuronResult or None).
    """
    from patchlab.engine.effects import iter_effects
    from patchlab.engine.neurons import iter_neurons
    from patchlab.engine.paths import iter_path_patch

    t0 = time.perf_counter()
    receivers = receivers_for(model)
    is_mlp = sender.upper().startswith("MLP")
    total = 1 + len(receivers) + int(is_mlp)
    kw = dict(metric=metric, direction=direction, stop=stop)
    yield TraceProgress("effects", 0, total, 0.0)
    eff = _drain(iter_effects(model, pairs, components="all" if has_mlps(model) else "heads", **kw), stop)
    paths, skipped = {}, {}
    for n, rec in enumerate(receivers):
        yield TraceProgress(f"path into {rec}", 1 + n, total, time.perf_counter() - t0)
        try:
            paths[rec] = _drain(iter_path_patch(model, pairs, sender, rec, **kw), stop)
        except InputError as exc:  # nothing after the sender reads this receiver kind
            skipped[rec] = str(exc)
    neurons = None
    if is_mlp:
        yield TraceProgress("neurons", total - 1, total, time.perf_counter() - t0)
        neurons = _drain(iter_neurons(model, pairs, int(sender[3:]), k=k, **kw), stop)
    return {"effects": eff, "paths": paths, "skipped": skipped, "neurons": neurons}


def neuron_patch_job(model, pairs, *, layer: int, neuron: int, direction: str, stop=None):
    """Readouts of the run with one neuron patched alone (all positions; mean over pairs)."""
    from patchlab.gui.pair_jobs import patched_job

    return (yield from patched_job(model, pairs, target="mlp_post_neuron", index=(layer, neuron),
                                   direction=direction, stop=stop))
