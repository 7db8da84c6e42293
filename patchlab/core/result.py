"""Patching results: labelled numpy arrays with metadata, tidy CSV and JSON run records."""

from __future__ import annotations

import csv
import io
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from patchlab._version import __version__
from patchlab.core import stats
from patchlab.core.errors import InputError, PatchlabError, SessionFileError
from patchlab.core.io import atomic_write_text, dump_json, read_json

RUN_FORMAT = "patchlab.run"
RUN_FORMAT_VERSION = 1


def _nan_array(data) -> np.ndarray:
    """JSON nested lists (None for missing) -> float array with NaN."""
    arr = np.array(data, dtype=object)
    arr[arr == None] = np.nan  # noqa: E711 - elementwise comparison on an object array
    return arr.astype(np.float64)


def _num(v) -> str:
    v = float(v)
    return repr(v) if np.isfinite(v) else ""


class RunRecord:
    """JSON and CSV file methods shared by result classes (``to_dict``/``from_dict``/``to_csv``)."""

    def to_json(self) -> str:
        return dump_json(self.to_dict())  # type: ignore[attr-defined]

    def save_json(self, path: str | Path) -> Path:
        return atomic_write_text(path, self.to_json())

    def save_csv(self, path: str | Path) -> Path:
        return atomic_write_text(path, self.to_csv())  # type: ignore[attr-defined]

    @classmethod
    def load_json(cls, path: str | Path):
        return cls.from_dict(read_json(path, "run record"))  # type: ignore[attr-defined]


@dataclass
class PatchResult(RunRecord):
    """The outcome of a patching sweep.

    Attributes
    ----------
    values : ndarray
        The metric per cell (averaged over pairs); NaN where not computed (yet).
    axes : tuple of str
        Axis names (``layer``, ``pos``, ``head``), in TransformerLens's order.
    labels : dict
        Axis name -> list of string labels (token strings for ``pos``, ``L0H3`` for heads).
    per_pair : ndarray
        ``(n_pairs, *values.shape)``: the metric of each pair on its own.
    meta : dict
        Model, processing mode, prompts and tokens, target, direction, metric, method,
        baselines, engine path, elapsed time, patchlab version. ``meta["runs"][run]["per_pair"]``
        holds each pair's unpatched clean/corrupted quantities (the per-pair baselines).
    per_pair_raw : ndarray or None
        ``(n_pairs, *values.shape)``: the raw quantity behind the metric (the logit difference
        for ``logit_diff_recovered``) of each patched run, when the engine kept it; statistics
        rebuild it from ``per_pair`` and the baselines otherwise.

    Statistics over pairs (see :mod:`patchlab.core.stats`): :attr:`stderr`,
    :meth:`bootstrap_ci`, :meth:`pvalues`, :meth:`qvalues`, :meth:`significant`.
    """

    values: np.ndarray
    axes: tuple[str, ...]
    labels: dict[str, list[str]]
    per_pair: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    per_pair_raw: np.ndarray | None = None

    # -- convenience -------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.values.shape)

    @property
    def target(self) -> str:
        return self.meta.get("target", "")

    @property
    def metric(self) -> str:
        return self.meta.get("metric", "")

    @property
    def direction(self) -> str:
        return self.meta.get("direction", "")

    @property
    def complete(self) -> bool:
        return bool(np.isfinite(self.values).all()) or bool(self.meta.get("complete", False))

    @property
    def n_pairs(self) -> int:
        return int(np.shape(self.per_pair)[0]) if np.ndim(self.per_pair) else 0

    # -- statistics over pairs ---------------------------------------------------------
    @property
    def stderr(self) -> np.ndarray:
        """Standard error of the per-pair values (``std(ddof=1) / sqrt(n_pairs)``), shaped like
        ``values``; NaN with fewer than 2 pairs."""
        return stats.standard_error(self.per_pair)

    def bootstrap_ci(self, confidence: float = 0.95, n_resamples: int = 1000, seed: int = 0,
                     ) -> tuple[np.ndarray, np.ndarray]:
        """Percentile bootstrap interval over pairs of the aggregate shown in :attr:`values`.

        For ``logit_diff_recovered`` the ratio of means (mean patched logit difference
        normalised by the mean baselines) is recomputed on each resample of pairs.

        Returns
        -------
        low, high : ndarray
            Shaped like ``values``.
        """
        return stats.result_bootstrap_ci(self, confidence, n_resamples, seed)

    def pvalues(self, n_permutations: int = 1000, seed: int = 0) -> np.ndarray:
        """Two-sided sign-flip permutation p-value per cell that the mean change from the
        unpatched run is zero (exact for 12 pairs or fewer), shaped like ``values``."""
        return stats.sign_flip_pvalues(stats.result_effects(self), n_permutations=n_permutations, seed=seed)

    def qvalues(self, n_permutations: int = 1000, seed: int = 0) -> np.ndarray:
        """Benjamini-Hochberg adjusted :meth:`pvalues` over the finite cells."""
        return stats.bh_qvalues(self.pvalues(n_permutations, seed))

    def significant(self, alpha: float = 0.05, n_permutations: int = 1000, seed: int = 0) -> np.ndarray:
        """Boolean mask of cells with q-value <= ``alpha`` (false discovery rate ``alpha``)."""
        q = self.qvalues(n_permutations, seed)
        with np.errstate(invalid="ignore"):
            return np.isfinite(q) & (q <= alpha)

    def head_label(self, layer: int, head: int) -> str:
        """``L0H3``-style label of one head (``L1KV0`` for a key/value head)."""
        names = self.labels.get("head")
        return f"L{layer}{names[head]}" if names and head < len(names) else f"L{layer}H{head}"

    def label(self, axis: str, index: int) -> str:
        return self.labels[axis][index]

    def cell_label(self, index: tuple[int, ...]) -> str:
        """Human label of one cell, e.g. ``layer 1, pos 3 ' Mary', head L1H2``."""
        parts = []
        for axis, i in zip(self.axes, index):
            lab = self.labels.get(axis, [str(i)] * (i + 1))[i]
            parts.append(f"{axis} {i} {lab!r}" if axis == "pos" else f"{axis} {lab}" if axis == "head" else f"{axis} {i}")
        return ", ".join(parts)

    @property
    def no_effect(self) -> float:
        """The value of a cell whose patch changes nothing (see :func:`~patchlab.core.metrics.no_effect_value`).

        0 for ``logit_diff_recovered``; the unpatched run's value for the raw metrics.
        NaN when the record lacks the unpatched run's value.
        """
        from patchlab.core.metrics import no_effect_value

        try:
            return no_effect_value(self.metric, self.direction, self.meta.get("runs"))
        except PatchlabError:
            return float("nan")

    def change(self) -> np.ndarray:
        """``values - no_effect``: each cell's effect relative to the unpatched run."""
        return self.values - self.no_effect

    def top_cells(self, k: int = 5, absolute: bool = False,
                  by: str = "value") -> list[tuple[tuple[int, ...], float]]:
        """The ``k`` cells ranked by ``by``, NaN ignored; each with its (unchanged) value.

        Parameters
        ----------
        k : int
            How many cells.
        absolute : bool
            Rank by the absolute value of the key.
        by : {"value", "change"}
            ``value``: the metric itself. ``change``: the metric minus :attr:`no_effect`, so
            that ``logit_diff``, ``answer_prob`` and ``answer_logprob`` rank by the patch's
            effect rather than by the unpatched run's level (with ``absolute=True``, by the
            size of the effect in either direction).
        """
        if by not in ("value", "change"):
            raise InputError(f"Unknown ranking {by!r}: use 'value' or 'change'.")
        flat = np.where(np.isfinite(self.values), self.values, -np.inf).ravel()
        key = flat - self.no_effect if by == "change" else flat
        key = np.where(np.isfinite(key), key, -np.inf)
        key = np.where(np.isfinite(flat), np.abs(key), -np.inf) if absolute else key
        order = np.argsort(-key, kind="stable")[:k]
        return [(tuple(int(i) for i in np.unravel_index(j, self.shape)), float(flat[j]))
                for j in order if np.isfinite(flat[j]) and np.isfinite(key[j])]

    # -- CSV ---------------------------------------------------------------------------
    def _cell_cells(self, index: tuple[int, ...]) -> list[Any]:
        row: list[Any] = []
        for axis, i in zip(self.axes, index):
            # the layer axis need not come first (path patching's leading sender axis)
            layer = index[self.axes.index("layer")] if "layer" in self.axes else index[0]
            row += [i, self.head_label(layer, i) if axis == "head" else self.labels[axis][i]]
        return row

    def cell_stats(self, confidence: float = 0.95, n_resamples: int = 1000, n_permutations: int = 1000,
                   seed: int = 0) -> dict[str, np.ndarray]:
        """All per-cell statistics at once: ``stderr, ci_low, ci_high, p, q`` (each like ``values``).

        A statistic that needs per-pair baselines the result lacks is left out rather than
        guessed. One call computes each statistic once (a worker thread can run it).
        """
        cols: dict[str, np.ndarray] = {"stderr": self.stderr}
        try:
            cols["ci_low"], cols["ci_high"] = self.bootstrap_ci(confidence, n_resamples, seed)
        except InputError:
            pass
        try:
            cols["p"] = self.pvalues(n_permutations, seed)
            cols["q"] = stats.bh_qvalues(cols["p"])
        except InputError:
            pass
        return cols

    def to_csv(self, per_pair: bool = False) -> str:
        """Tidy CSV: one row per cell with axis indices, their labels and the value.

        With 2 or more pairs the columns ``stderr, ci_low, ci_high, p, q`` follow (defaults of
        :meth:`bootstrap_ci` and :meth:`pvalues`). ``per_pair=True`` gives the long form: one
        row per (pair, cell) with the pair's own metric value (and ``raw`` when known).
        """
        if per_pair:
            return self._per_pair_csv()
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        header = []
        for axis in self.axes:
            header += [axis, f"{axis}_label"]
        header.append(self.metric or "value")
        cols = self.cell_stats() if self.n_pairs >= 2 else {}
        header += list(cols)
        writer.writerow(header)
        for index in itertools.product(*(range(n) for n in self.shape)):
            row = self._cell_cells(index)
            row += [_num(self.values[index])] + [_num(c[index]) for c in cols.values()]
            writer.writerow(row)
        return out.getvalue()

    def _per_pair_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        try:
            raw: np.ndarray | None = stats.pair_raw(self)
        except InputError:
            raw = None
        pairs = self.meta.get("pairs") or []
        header = ["pair", "pair_name"]
        for axis in self.axes:
            header += [axis, f"{axis}_label"]
        header.append(self.metric or "value")
        if raw is not None:
            header.append("raw")
        writer.writerow(header)
        for p in range(self.n_pairs):
            name = pairs[p].get("name", "") if p < len(pairs) and isinstance(pairs[p], dict) else ""
            for index in itertools.product(*(range(n) for n in self.shape)):
                row = [p, name, *self._cell_cells(index), _num(self.per_pair[(p, *index)])]
                if raw is not None:
                    row.append(_num(raw[(p, *index)]))
                writer.writerow(row)
        return out.getvalue()

    def save_csv_per_pair(self, path: str | Path) -> Path:
        """Write the long per-pair CSV (see :meth:`to_csv`) atomically."""
        return atomic_write_text(path, self.to_csv(per_pair=True))

    # -- JSON run record ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": RUN_FORMAT,
            "format_version": RUN_FORMAT_VERSION,
            "patchlab_version": __version__,
            "kind": "patch",
            "axes": list(self.axes),
            "shape": list(self.shape),
            "labels": self.labels,
            "values": self.values,
            "per_pair": self.per_pair,
            "meta": self.meta,
            **({} if self.per_pair_raw is None else {"per_pair_raw": self.per_pair_raw}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PatchResult:
        check_record(data, "patch")
        try:
            shape = tuple(data["shape"])
            values = _nan_array(data["values"]).reshape(shape)
            per_pair = _nan_array(data["per_pair"]).reshape((-1, *shape))
            raw = data.get("per_pair_raw")  # absent in records before 0.x: stats rebuild it
            res = cls(
                values=values,
                axes=tuple(data["axes"]),
                labels={k: list(v) for k, v in data["labels"].items()},
                per_pair=per_pair,
                meta=dict(data.get("meta", {})),
                per_pair_raw=None if raw is None else _nan_array(raw).reshape(per_pair.shape),
            )
            _check_layout(res)
            return res
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SessionFileError(f"The run record is malformed ({exc}).") from exc



def _check_layout(res: PatchResult) -> None:
    """Axes, labels and arrays agree, so a loaded record can be drawn and exported."""
    shape = res.values.shape
    if any(not isinstance(n, int) or isinstance(n, bool) for n in shape):
        raise ValueError("the shape must be whole numbers")
    if len(res.axes) != len(shape) or not all(isinstance(a, str) for a in res.axes):
        raise ValueError(f"{len(res.axes)} axis names for {len(shape)} dimensions")
    for axis, n in zip(res.axes, shape):
        labels = res.labels.get(axis)
        if axis != "head" and (labels is None or len(labels) != n):
            raise ValueError(f"axis {axis!r} needs {n} labels")
        if labels is not None and not all(isinstance(x, str) for x in labels):
            raise ValueError(f"the labels of axis {axis!r} must be text")
    if not isinstance(res.meta.get("metric", ""), str) or not isinstance(res.meta.get("direction", ""), str):
        raise ValueError("'metric' and 'direction' must be text")


def check_record(data: Any, kind: str) -> None:
    """Validate the envelope of a JSON run record."""
    if not isinstance(data, dict) or data.get("format") != RUN_FORMAT:
        raise SessionFileError("This is not a patchlab run record (missing 'format': 'patchlab.run').")
    version = data.get("format_version")
    if not isinstance(version, int) or version > RUN_FORMAT_VERSION:
        raise SessionFileError(
            f"This run record has format version {version!r}; this patchlab ({__version__}) reads "
            f"up to {RUN_FORMAT_VERSION}. Update patchlab to open it."
        )
    if data.get("kind") != kind:
        raise SessionFileError(f"This run record holds a {data.get('kind')!r} result, not {kind!r}.")
