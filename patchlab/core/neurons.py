"""Neuron screen results: estimate, exact effect, DLA and output tokens per MLP neuron."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from patchlab._version import __version__
from patchlab.core.errors import SessionFileError
from patchlab.core.result import RUN_FORMAT, RUN_FORMAT_VERSION, RunRecord, _nan_array, check_record


@dataclass
class NeuronResult(RunRecord):
    """One MLP layer's neurons.

    Attributes
    ----------
    layer : int
        The MLP layer.
    estimate : ndarray (d_mlp,)
        Attribution-patching estimate of the metric with that neuron patched (all positions).
    exact : ndarray (d_mlp,)
        Exact patching of the neuron (all positions); NaN outside ``top``.
    dla : ndarray (d_mlp,)
        Direct logit attribution of the neuron on the clean run (logit difference; mean over
        pairs); the neurons sum to the MLP's DLA minus its output bias.
    top : list of int
        The neurons patched exactly, by decreasing ``|estimate - unpatched|``.
    tokens : dict
        ``str(neuron) -> {"promoted": [[token, value]...], "suppressed": [...]}`` from
        ``W_out[n] @ W_U`` for the neurons in ``top``.
    per_pair : ndarray (n_pairs, 2, d_mlp)
        Estimate and exact metric of each pair.
    meta : dict
        As a patching run's (model, direction, metric, pairs, baselines, ...).
    """

    layer: int
    estimate: np.ndarray
    exact: np.ndarray
    dla: np.ndarray
    top: list[int]
    tokens: dict[str, dict[str, list[list[Any]]]]
    per_pair: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def d_mlp(self) -> int:
        return int(self.estimate.shape[0])

    def label(self, n: int) -> str:
        """``L0N17``-style label of one neuron."""
        return f"L{self.layer}N{n}"

    def to_csv(self) -> str:
        """One row per neuron: index, label, estimate, exact, DLA, top output tokens."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        metric = self.meta.get("metric", "value")
        writer.writerow(["neuron", "neuron_label", f"estimate_{metric}", f"exact_{metric}", "dla_logit_diff",
                         "promoted_tokens", "suppressed_tokens"])

        def num(v: float) -> str:
            return repr(float(v)) if np.isfinite(v) else ""

        for n in range(self.d_mlp):
            toks = self.tokens.get(str(n), {})
            writer.writerow([n, self.label(n), num(self.estimate[n]), num(self.exact[n]), num(self.dla[n]),
                             " ".join(str(t) for t, _ in toks.get("promoted", [])),
                             " ".join(str(t) for t, _ in toks.get("suppressed", []))])
        return out.getvalue()

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": RUN_FORMAT,
            "format_version": RUN_FORMAT_VERSION,
            "patchlab_version": __version__,
            "kind": "neurons",
            "layer": self.layer,
            "estimate": self.estimate,
            "exact": self.exact,
            "dla": self.dla,
            "top": list(self.top),
            "tokens": self.tokens,
            "per_pair": self.per_pair,
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NeuronResult:
        check_record(data, "neurons")
        try:
            est = _nan_array(data["estimate"])
            return cls(
                layer=int(data["layer"]),
                estimate=est,
                exact=_nan_array(data["exact"]),
                dla=_nan_array(data["dla"]),
                top=[int(n) for n in data["top"]],
                tokens=dict(data.get("tokens", {})),
                per_pair=_nan_array(data["per_pair"]).reshape(-1, 2, est.shape[0]),
                meta=dict(data.get("meta", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SessionFileError(f"The neuron record is malformed ({exc}).") from exc
