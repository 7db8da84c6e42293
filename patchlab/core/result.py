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
from patchlab.core.errors import InputError, PatchlabError, SessionFileError
from patchlab.core.io import atomic_write_text, dump_json, read_json

RUN_FORMAT = "patchlab.run"
RUN_FORMAT_VERSION = 1


def _nan_array(data) -> np.ndarray:
    """JSON nested lists (None for missing) -> float array with NaN."""
    arr = np.array(data, dtype=object)
    arr[arr == None] = np.nan  # noqa: E711 - elementwise comparison on an object array
    return arr.astype(np.float64)


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
        baselines, engine path, elapsed time, patchlab version.
    """

    values: np.ndarray
    axes: tuple[str, ...]
    labels: dict[str, list[str]]
    per_pair: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

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

    def head_label(self, layer: int, head: int) -> str:
        """``L0H3``-style label of one head."""
        return f"L{layer}H{head}"

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
    def to_csv(self) -> str:
        """Tidy CSV: one row per cell with axis indices, their labels and the value."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        header = []
        for axis in self.axes:
            header += [axis, f"{axis}_label"]
        header.append(self.metric or "value")
        writer.writerow(header)
        for index in itertools.product(*(range(n) for n in self.shape)):
            row: list[Any] = []
            for axis, i in zip(self.axes, index):
                row += [i, self.head_label(index[0], i) if axis == "head" else self.labels[axis][i]]
            v = self.values[index]
            row.append(repr(float(v)) if np.isfinite(v) else "")
            writer.writerow(row)
        return out.getvalue()

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
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PatchResult:
        check_record(data, "patch")
        try:
            shape = tuple(data["shape"])
            values = _nan_array(data["values"]).reshape(shape)
            per_pair = _nan_array(data["per_pair"]).reshape((-1, *shape))
            return cls(
                values=values,
                axes=tuple(data["axes"]),
                labels={k: list(v) for k, v in data["labels"].items()},
                per_pair=per_pair,
                meta=dict(data.get("meta", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SessionFileError(f"The run record is malformed ({exc}).") from exc



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
