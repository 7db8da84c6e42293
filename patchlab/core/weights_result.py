"""Results of reading circuits from the weights: token x token matrices and composition scores."""

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
class WeightMatrix(RunRecord):
    """A matrix read from the weights, rows and columns labelled (and grouped) by token or position.

    Attributes
    ----------
    values : ndarray (n_rows, n_cols)
    row_labels, col_labels : list of str
        Token strings (or ``pos 3``).
    row_groups, col_groups : list of str
        A group per row/column (the toy language's word class: ``names``, ``verbs``...; ``tokens``
        for user lists); consecutive rows of a group are adjacent, so the heatmap shows blocks.
    meta : dict
        ``circuit`` (``direct``, ``ov``, ``qk``, ``pos_qk``), ``layer``, ``head``, ``row_axis`` /
        ``col_axis`` names (e.g. ``source token`` / ``logit of token``), model, processing.
    """

    values: np.ndarray
    row_labels: list[str]
    col_labels: list[str]
    row_groups: list[str]
    col_groups: list[str]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str:
        c = self.meta.get("circuit", "")
        where = f" L{self.meta['layer']}H{self.meta['head']}" if self.meta.get("head") is not None else ""
        return f"{c}{where}"

    def group_spans(self, axis: str = "row") -> list[tuple[str, int, int]]:
        """``(group, start, stop)`` runs of equal group along ``row`` or ``col``."""
        groups = self.row_groups if axis == "row" else self.col_groups
        spans: list[tuple[str, int, int]] = []
        for i, g in enumerate(groups):
            if spans and spans[-1][0] == g and spans[-1][2] == i:
                spans[-1] = (g, spans[-1][1], i + 1)
            else:
                spans.append((g, i, i + 1))
        return spans

    def row_top(self, row: str, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` largest entries of one row (e.g. the tokens a source token promotes)."""
        r = self.values[self.row_labels.index(row)]
        order = np.argsort(-np.where(np.isfinite(r), r, -np.inf), kind="stable")[:k]
        return [(self.col_labels[j], float(r[j])) for j in order]

    def to_csv(self) -> str:
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(["row", "row_label", "row_group", "col", "col_label", "col_group", "value"])
        for i, (rl, rg) in enumerate(zip(self.row_labels, self.row_groups)):
            for j, (cl, cg) in enumerate(zip(self.col_labels, self.col_groups)):
                v = self.values[i, j]
                w.writerow([i, rl, rg, j, cl, cg, repr(float(v)) if np.isfinite(v) else ""])
        return out.getvalue()

    def to_dict(self) -> dict[str, Any]:
        return {"format": RUN_FORMAT, "format_version": RUN_FORMAT_VERSION,
                "patchlab_version": __version__, "kind": "weight_matrix", "values": self.values,
                "row_labels": self.row_labels, "col_labels": self.col_labels,
                "row_groups": self.row_groups, "col_groups": self.col_groups, "meta": self.meta}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WeightMatrix:
        check_record(data, "weight_matrix")
        try:
            shape = (len(data["row_labels"]), len(data["col_labels"]))
            return cls(_nan_array(data["values"]).reshape(shape), list(data["row_labels"]),
                       list(data["col_labels"]), list(data["row_groups"]), list(data["col_groups"]),
                       dict(data.get("meta", {})))
        except (KeyError, TypeError, ValueError) as exc:
            raise SessionFileError(f"The run record is malformed ({exc}).") from exc


@dataclass
class CompositionResult(RunRecord):
    """Composition scores between every pair of heads (source, then destination).

    Attributes
    ----------
    values : ndarray (layer, head, layer, head)
        ``values[l1, h1, l2, h2]``: how much head ``L{l2}H{h2}``'s query (``q``), key (``k``) or
        value (``v``) side reads what ``L{l1}H{h1}`` writes, ``||W_OV^src W^dst|| / (||W_OV^src||
        ||W^dst||)`` as TransformerLens's ``all_composition_scores``; NaN where the destination is
        not in a later layer.
    mode : str
        ``q``, ``k`` or ``v``.
    baseline_mean, baseline_p99 : float
        Mean and 99th percentile of the same score between products of random Gaussian
        matrices of the same shapes (``meta["baseline_samples"]`` draws).
    """

    values: np.ndarray
    mode: str
    baseline_mean: float
    baseline_p99: float
    meta: dict[str, Any] = field(default_factory=dict)

    axes = ("layer", "head", "layer", "head")

    @property
    def head_labels(self) -> list[str]:
        n_l, n_h = self.values.shape[:2]
        return [f"L{layer}H{h}" for layer in range(n_l) for h in range(n_h)]

    def matrix(self) -> np.ndarray:
        """``(n_heads_total, n_heads_total)`` source x destination matrix for a heatmap."""
        n = self.values.shape[0] * self.values.shape[1]
        return self.values.reshape(n, n)

    def ranked(self, k: int | None = None) -> list[tuple[str, str, float]]:
        """``(source, destination, score)`` pairs, highest first (NaN pairs left out)."""
        m = self.matrix()
        labels = self.head_labels
        flat = np.where(np.isfinite(m), m, -np.inf).ravel()
        order = np.argsort(-flat, kind="stable")
        out = [(labels[i // m.shape[1]], labels[i % m.shape[1]], float(flat[i])) for i in order if np.isfinite(flat[i])]
        return out[:k] if k else out

    def score(self, source: str, destination: str) -> float:
        labels = self.head_labels
        return float(self.matrix()[labels.index(source), labels.index(destination)])

    def to_csv(self) -> str:
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(["source", "destination", f"{self.mode}_composition", "baseline_mean", "baseline_p99"])
        for s, d, v in self.ranked():
            w.writerow([s, d, repr(v), repr(self.baseline_mean), repr(self.baseline_p99)])
        return out.getvalue()

    def to_dict(self) -> dict[str, Any]:
        return {"format": RUN_FORMAT, "format_version": RUN_FORMAT_VERSION,
                "patchlab_version": __version__, "kind": "composition", "axes": list(self.axes),
                "shape": list(self.values.shape), "values": self.values, "mode": self.mode,
                "baseline_mean": self.baseline_mean, "baseline_p99": self.baseline_p99, "meta": self.meta}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CompositionResult:
        check_record(data, "composition")
        try:
            return cls(_nan_array(data["values"]).reshape(tuple(data["shape"])), str(data["mode"]),
                       float(data["baseline_mean"]), float(data["baseline_p99"]), dict(data.get("meta", {})))
        except (KeyError, TypeError, ValueError) as exc:
            raise SessionFileError(f"The run record is malformed ({exc}).") from exc
