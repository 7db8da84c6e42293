"""What the heatmap draws, computed without Qt: the plane shown, colour limits, tick labels.

Pure numpy helpers of :class:`~patchlab.gui.views.heatmap.HeatmapView` (testable alone).
"""

from __future__ import annotations

import numpy as np

from patchlab.core.metrics import DIRECTIONS, METRICS

#: Position choice meaning "every position: the one of largest |effect| per cell".
ALL_POS = -1
#: Diverging colour maps: normal and colour-blind-safe.
CMAPS = {False: "CET-D1", True: "CET-CBD1"}
#: At most this many tick labels per axis: long prompts (500 positions) would overlap.
MAX_TICKS = 40


def plane(values: np.ndarray, axes: tuple[str, ...], pos: int) -> tuple[np.ndarray, str]:
    """The 2-D ``layer x other`` plane to draw and the name of its x axis.

    Three-axis targets show ``layer x head`` at one position, or for ``ALL_POS`` the value of
    largest magnitude over positions (signed), so no strong position is averaged away.
    """
    if len(axes) == 2:
        return values, axes[1]
    p = axes.index("pos")
    if pos != ALL_POS:
        return np.take(values, pos, axis=p), "head"
    moved = np.moveaxis(values, p, -1)
    finite = np.where(np.isfinite(moved), moved, 0.0)
    idx = np.abs(finite).argmax(axis=-1)
    out = np.take_along_axis(moved, idx[..., None], axis=-1)[..., 0]
    out[~np.isfinite(moved).any(axis=-1)] = np.nan
    return out, "head"


def plane_mask(mask: np.ndarray, values: np.ndarray, axes: tuple[str, ...], pos: int) -> np.ndarray:
    """The cells of ``mask`` that :func:`plane` shows (same position choice per cell)."""
    if len(axes) == 2:
        return mask
    p = axes.index("pos")
    if pos != ALL_POS:
        return np.take(mask, pos, axis=p)
    moved = np.moveaxis(values, p, -1)
    idx = np.abs(np.where(np.isfinite(moved), moved, 0.0)).argmax(axis=-1)
    return np.take_along_axis(np.moveaxis(mask, p, -1), idx[..., None], axis=-1)[..., 0]


def thin_ticks(ticks: list[tuple[float, str]], limit: int = MAX_TICKS) -> list[tuple[float, str]]:
    """Every n-th tick so that at most ``limit`` are labelled (the last one is kept)."""
    if len(ticks) <= limit:
        return ticks
    step = -(-len(ticks) // limit)
    keep = ticks[::step]
    if keep[-1] is not ticks[-1]:
        keep = keep[:-1] + [ticks[-1]]
    return keep


def axis_ticks(labels: list[str] | None, n: int, axis: str, limit: int = MAX_TICKS) -> list[tuple[float, str]]:
    """Thinned ticks at the cell centres of an axis of ``n`` cells.

    Only the kept ticks are formatted (a 512-token prompt needs 40 strings, not 512). Position
    labels with leading or trailing whitespace are shown escaped (a newline token as ``\\n``).
    """
    ticks = thin_ticks([(i + 0.5, str(i)) for i in range(n)], limit)
    if labels is None or len(labels) < n:
        return ticks
    out = []
    for x, i in ticks:
        text = labels[int(i)]
        if axis == "pos" and text.strip() != text:
            text = f"{text!r}"[1:-1]
        out.append((x, text))
    return out


def symmetric_limit(values: np.ndarray, metric: str, centre: float = 0.0) -> float:
    """Half-width of the colour range around ``centre`` (the metric's no-effect value)."""
    finite = np.abs(values[np.isfinite(values)] - centre)
    m = float(finite.max()) if finite.size else 0.0
    if metric == "logit_diff_recovered":
        m = max(m, 1.0)  # keep 1 = fully restored comparable across runs
    return m if m > 0 else 1.0


def row_spans(rows) -> list[tuple[int, int]]:
    """Contiguous runs ``(first, count)`` of the sorted layer ``rows`` (one hatch item each)."""
    spans: list[tuple[int, int]] = []
    for r in sorted(rows):
        if spans and spans[-1][0] + spans[-1][1] == r:
            spans[-1] = (spans[-1][0], spans[-1][1] + 1)
        else:
            spans.append((r, 1))
    return spans


def fade_rgba(shown: np.ndarray, rgb: tuple[int, int, int], alpha: int = 185) -> np.ndarray:
    """An RGBA veil: transparent where ``shown`` is True, background-coloured elsewhere."""
    out = np.zeros((*shown.shape, 4), dtype=np.uint8)
    out[..., :3] = rgb
    out[..., 3] = np.where(shown, 0, alpha)
    return out


def colour_bar_label(metric: str, centre: float) -> str:
    """The metric's short name; when white is not 0, where it is (the unpatched run)."""
    label = METRICS.get(metric, metric).split(" (")[0]
    if centre != 0.0:
        label += f" (white = unpatched run, {centre:.3g})"
    return label


def full_index(values: np.ndarray, axes: tuple[str, ...], layer: int, x: int, pos: int) -> tuple[int, ...]:
    """Index in the result's axis order of plane cell ``(layer, x)`` at position choice ``pos``
    (for :data:`ALL_POS`, the position :func:`plane` shows for that cell)."""
    if len(axes) == 2:
        return (layer, x)
    if pos == ALL_POS:
        moved = np.moveaxis(values, axes.index("pos"), -1)
        col = np.where(np.isfinite(moved[layer, x]), moved[layer, x], 0.0)
        pos = int(np.abs(col).argmax())
    idx = {"layer": layer, "head": x, "pos": pos}
    return tuple(idx[a] for a in axes)


def describe_cell(values: np.ndarray | None, axes: tuple[str, ...], labels: dict[str, list[str]],
                  index: tuple[int, ...]) -> str:
    """Hover text: each axis (a position with its token, a head as ``LxHy``) and the value."""
    parts = []
    for axis, i in zip(axes, index):
        if axis == "pos":
            toks = labels.get("pos", [])
            parts.append(f"pos {i} {toks[i]!r}" if i < len(toks) else f"pos {i}")
        elif axis == "head":
            parts.append(f"head L{index[0]}H{i}")
        else:
            parts.append(f"{axis} {i}")
    v = values[index] if values is not None else np.nan
    value = f"{v:.4g}" if np.isfinite(v) else "not computed yet"
    return f"{', '.join(parts)}: {value}"


def make_title(model: str, target_label: str, direction: str, metric: str, scope: str = "") -> str:
    """Two short lines (a long single line would set the window's minimum width)."""
    tail = f" \u00b7 {scope}" if scope else ""
    return (f"{model} \u00b7 {target_label}<br>{DIRECTIONS.get(direction, direction)}"
            f" \u00b7 {metric}{tail}")


def plane_cell(index: tuple[int, ...], axes: tuple[str, ...]) -> tuple[int, int]:
    """``(layer, x)`` in the drawn plane of a full result ``index``."""
    return index[0], index[axes.index("head")] if len(axes) == 3 else index[1]


def step_cell(cell: tuple[int, int], delta: tuple[int, int], shape: tuple[int, int]) -> tuple[int, int]:
    """``cell`` moved by ``delta``, kept inside a plane of ``shape``."""
    return (min(max(cell[0] + delta[0], 0), shape[0] - 1), min(max(cell[1] + delta[1], 0), shape[1] - 1))
