"""Result of ablating components over a corpus: mean change of loss with CI, per-token drill-down."""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from patchlab._version import __version__
from patchlab.core.errors import InputError, SessionFileError
from patchlab.core.result import RUN_FORMAT, RUN_FORMAT_VERSION, RunRecord, _nan_array, check_record
from patchlab.core.text_result import DocScores, TokenScores


@dataclass
class AblationResult(RunRecord):
    """Mean change of loss (ablated minus clean) per component over a corpus.

    Attributes
    ----------
    values : ndarray
        Shaped like the component grid: ``(layer, head)`` for heads, ``(layer,)`` for MLPs,
        ``(component,)`` for ``"all"`` (every layer's heads, then its MLP).
    axes : tuple of str
        ``("layer", "head")``, ``("layer",)`` or ``("component",)``.
    labels : dict
        Axis name -> labels (``L0``.., ``H0``.., or ``L0H0``/``L0 MLP`` for components).
    ci_low, ci_high : ndarray
        95% confidence interval of each mean (document-clustered standard error).
    component_labels : list of str
        One label per component in ``values.ravel()`` order (``L1H3``, ``L0 MLP``).
    deltas : ndarray (n_tokens, n_components)
        Per-token change of loss; row ``offsets[d] + pos`` is token ``pos`` of ``docs[d]``
        (NaN at the first token of a document, which is not predicted).
    docs : list of DocScores
        The tokens, with the clean per-token loss as values.
    meta : dict
        ``components``, ``method``, ``clean_loss`` (mean), ``n_tokens``, ``n_docs``, model,
        processing, corpus, ``split_docs``, ``complete``, elapsed time.
    """

    values: np.ndarray
    axes: tuple[str, ...]
    labels: dict[str, list[str]]
    ci_low: np.ndarray
    ci_high: np.ndarray
    component_labels: list[str]
    deltas: np.ndarray
    docs: list[DocScores]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def offsets(self) -> np.ndarray:
        """Row in :attr:`deltas` of each document's first token."""
        return np.concatenate([[0], np.cumsum([len(d.tokens) for d in self.docs])])[:-1].astype(int)

    def index(self, component: str) -> int:
        """Column of ``component`` (``"L1H3"``, ``"L0 MLP"``) in :attr:`deltas`."""
        try:
            return self.component_labels.index(component)
        except ValueError:
            raise InputError(f"No component {component!r} in this result (components: "
                             f"{', '.join(self.component_labels[:12])}...).") from None

    def ranked(self) -> list[tuple[str, float, float, float]]:
        """``(label, mean change, ci_low, ci_high)`` for every component, most harmful first."""
        flat, lo, hi = self.values.ravel(), self.ci_low.ravel(), self.ci_high.ravel()
        order = np.argsort(-np.where(np.isfinite(flat), flat, -np.inf), kind="stable")
        return [(self.component_labels[i], float(flat[i]), float(lo[i]), float(hi[i])) for i in order]

    def drilldown(self, component: str) -> TokenScores:
        """Per-token change of loss when ``component`` is ablated, as coloured-text documents."""
        col = self.deltas[:, self.index(component)].astype(np.float64)
        docs = [DocScores(d.tokens, col[o:o + len(d.tokens)].copy(), d.index, d.line, d.windows)
                for d, o in zip(self.docs, self.offsets)]
        meta = {**{k: v for k, v in self.meta.items() if isinstance(v, (str, int, float, bool))},
                "kind": "ablation_drilldown", "component": component,
                "value_label": f"loss change when {component} is {self.meta.get('method', '')}-ablated"}
        return TokenScores(docs, meta)

    def mean_on(self, positions: Iterable[tuple[int, int]]) -> np.ndarray:
        """Mean change per component over the chosen ``(doc, pos)`` tokens, shaped like values."""
        offs = self.offsets
        rows = [int(offs[d] + p) for d, p in positions]
        if not rows:
            raise InputError("No tokens selected.")
        return np.nanmean(self.deltas[rows].astype(np.float64), axis=0).reshape(self.values.shape)

    # -- exports ------------------------------------------------------------------------
    def to_csv(self) -> str:
        """One row per component: indices, label, mean change of loss, CI."""
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow([*self.axes, "component", "loss_change", "ci_low", "ci_high"])
        for flat, idx in enumerate(itertools.product(*(range(n) for n in self.values.shape))):
            w.writerow([*idx, self.component_labels[flat], *(repr(float(a[idx])) for a in
                                                            (self.values, self.ci_low, self.ci_high))])
        return out.getvalue()

    def to_dict(self) -> dict[str, Any]:
        return {"format": RUN_FORMAT, "format_version": RUN_FORMAT_VERSION,
                "patchlab_version": __version__, "kind": "ablation", "axes": list(self.axes),
                "shape": list(self.values.shape), "labels": self.labels, "values": self.values,
                "ci_low": self.ci_low, "ci_high": self.ci_high,
                "component_labels": self.component_labels, "deltas": self.deltas,
                "docs": [d.to_dict() for d in self.docs], "meta": self.meta}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AblationResult:
        check_record(data, "ablation")
        try:
            shape = tuple(data["shape"])
            n = len(data["component_labels"])
            return cls(values=_nan_array(data["values"]).reshape(shape), axes=tuple(data["axes"]),
                       labels={k: list(v) for k, v in data["labels"].items()},
                       ci_low=_nan_array(data["ci_low"]).reshape(shape),
                       ci_high=_nan_array(data["ci_high"]).reshape(shape),
                       component_labels=list(data["component_labels"]),
                       deltas=_nan_array(data["deltas"]).reshape(-1, n).astype(np.float32),
                       docs=[DocScores.from_dict(d) for d in data["docs"]], meta=dict(data.get("meta", {})))
        except (KeyError, TypeError, ValueError) as exc:
            raise SessionFileError(f"The run record is malformed ({exc}).") from exc


def clustered_ci(sums: np.ndarray, sq_sums: np.ndarray, counts: np.ndarray, z: float = 1.96):
    """Mean and 95% CI of per-token values grouped in documents.

    ``sums[d, c]`` is the sum over document ``d``'s tokens of component ``c``'s value and
    ``counts[d]`` its number of tokens; ``sq_sums`` the per-document sums of squares. Tokens of
    one document are not independent, so the standard error is the cluster-robust one
    (``sqrt(sum_d (S_d - n_d m)^2) / N``); with one document it falls back to tokens.
    """
    n = counts.sum()
    mean = sums.sum(0) / max(n, 1)
    if len(counts) >= 2:
        resid = sums - counts[:, None] * mean[None, :]
        se = np.sqrt((resid ** 2).sum(0) * len(counts) / (len(counts) - 1)) / max(n, 1)
    else:
        var = sq_sums.sum(0) / max(n, 1) - mean ** 2
        se = np.sqrt(np.maximum(var, 0) / max(n - 1, 1))
    return mean, mean - z * se, mean + z * se
