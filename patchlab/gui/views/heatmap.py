"""Heatmap of a patching result (pyqtgraph): live fill, symmetric diverging colours, hover, click."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QBrush, QColor, QPen
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGraphicsRectItem,
    QHBoxLayout,
    QLabel,
    QVBoxLayout,
    QWidget,
)

from patchlab.core.metrics import DIRECTIONS, METRICS

ALL_POS = -1
CMAPS = {False: "CET-D1", True: "CET-CBD1"}


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


def symmetric_limit(values: np.ndarray, metric: str) -> float:
    finite = np.abs(values[np.isfinite(values)])
    m = float(finite.max()) if finite.size else 0.0
    if metric == "logit_diff_recovered":
        m = max(m, 1.0)  # keep 1 = fully restored comparable across runs
    return m if m > 0 else 1.0


class HeatmapView(QWidget):
    """Draws a :class:`~patchlab.core.result.PatchResult`-shaped array; never computes it.

    Signals
    -------
    cellSelected(index)
        Full index tuple of the clicked cell (in the result's axis order).
    cellMenuRequested(index, global_pos)
        Right-click on a cell (after selecting it): the window shows its context menu there.
    """

    cellSelected = Signal(object)
    cellMenuRequested = Signal(object, object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._values: np.ndarray | None = None
        self._axes: tuple[str, ...] = ()
        self._labels: dict[str, list[str]] = {}
        self._metric = ""
        self._title = ""
        self._dirty = False
        self._selected: tuple[int, ...] | None = None
        self._estimate_rows: frozenset[int] = frozenset()
        self._hatches: list[QGraphicsRectItem] = []
        self._significant: np.ndarray | None = None  # cells drawn at full strength
        self._drawn: dict[str, object] = {}  # what the last redraw set (see _set_once)

        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground(None)
        self.title_item = self.graphics.addLabel("", row=0, col=0, colspan=2, size="11pt")
        self.plot = self.graphics.addPlot(row=1, col=0)
        self.plot.invertY(True)
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        self.plot.setMouseEnabled(x=False, y=False)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.plot.addItem(self.image)
        self.fade = pg.ImageItem(axisOrder="row-major")  # veils cells that are not significant
        self.fade.setZValue(4)
        self.plot.addItem(self.fade)
        self.colorbar = pg.ColorBarItem(values=(-1, 1), colorMap=CMAPS[False], interactive=False,
                                        width=15, label="")
        self.colorbar.setImageItem(self.image)
        self.colorbar.axis.enableAutoSIPrefix(False)
        self.graphics.addItem(self.colorbar, row=1, col=1)
        self.marker = QGraphicsRectItem()
        pen = QPen(QColor(255, 200, 0))
        pen.setCosmetic(True)  # width in pixels, whatever the cell size
        pen.setWidth(3)
        self.marker.setPen(pen)
        self.marker.setVisible(False)
        self.marker.setZValue(10)  # above the estimate hatching
        self.plot.addItem(self.marker)

        self.pos_box = QComboBox()
        self.pos_box.setToolTip("Position shown for per-position head targets")
        self.pos_box.currentIndexChanged.connect(self._on_pos_changed)
        self.cbd = QCheckBox("Colour-blind-safe colours")
        self.cbd.toggled.connect(self._on_cmap_toggled)
        self.legend = QLabel("")
        self.legend.setWordWrap(True)
        self.hover = QLabel(" ")
        self.hover.setTextInteractionFlags(Qt.TextSelectableByMouse)
        bar = QHBoxLayout()
        self.pos_label = QLabel("Position:")
        bar.addWidget(self.pos_label)
        bar.addWidget(self.pos_box)
        bar.addStretch(1)
        bar.addWidget(self.cbd)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(bar)
        lay.addWidget(self.graphics, 1)
        lay.addWidget(self.legend)
        lay.addWidget(self.hover)
        self._set_pos_visible(False)
        self.legend.setVisible(False)
        self._show_empty()

        self.graphics.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.graphics.scene().sigMouseClicked.connect(self._on_mouse_clicked)
        self._timer = QTimer(self)
        self._timer.setInterval(33)  # redraws are throttled to ~30 Hz, data never is
        self._timer.timeout.connect(self._redraw)
        self._timer.start()

    # -- data in --------------------------------------------------------------------------
    def set_data(self, values: np.ndarray, axes: tuple[str, ...], labels: dict[str, list[str]],
                 *, metric: str, title: str) -> None:
        """Show ``values`` (NaN = not computed yet); cheap, the redraw happens on a timer."""
        new_shape = self._values is None or self._values.shape != values.shape or self._axes != tuple(axes)
        new_pos = labels.get("pos") != self._labels.get("pos")
        self._values = values
        self._axes = tuple(axes)
        self._labels = labels
        self._metric = metric
        self._title = title
        if new_shape:
            self._selected = None
            self.marker.setVisible(False)
            self._fill_positions()
        elif new_pos:  # the same grid for another pair: keep the chosen position
            keep = self.pos_box.currentIndex()
            self._fill_positions()
            self.pos_box.blockSignals(True)
            self.pos_box.setCurrentIndex(keep)
            self.pos_box.blockSignals(False)
        self._dirty = True

    def set_significance(self, mask: np.ndarray | None, legend: str = "") -> None:
        """Fade the cells where ``mask`` is False (None: no statistics, nothing faded)."""
        self._significant = None if mask is None else np.asarray(mask, dtype=bool)
        self.legend.setText(legend)
        self.legend.setVisible(bool(legend))
        self._dirty = True

    @property
    def significant(self) -> np.ndarray | None:
        return self._significant

    def set_estimate_rows(self, rows) -> None:
        """Layer rows that still show the attribution estimate (drawn hatched)."""
        rows = frozenset(int(r) for r in rows)
        if rows != self._estimate_rows:
            self._estimate_rows = rows
            self._dirty = True

    @property
    def title(self) -> str:
        """The title of the latest data (drawn on the next throttled redraw)."""
        return self._title

    @property
    def position_labels(self) -> list[str]:
        """The position labels of the data shown (empty without a position axis)."""
        return list(self._labels.get("pos", []))

    @property
    def values(self) -> np.ndarray | None:
        """The array drawn (the latest given to :meth:`set_data`)."""
        return self._values

    @property
    def estimate_rows(self) -> frozenset[int]:
        return self._estimate_rows

    def _draw_hatches(self, n_x: int) -> None:
        rows = sorted(self._estimate_rows)
        spans: list[tuple[int, int]] = []  # contiguous (first, count)
        for r in rows:
            if spans and spans[-1][0] + spans[-1][1] == r:
                spans[-1] = (spans[-1][0], spans[-1][1] + 1)
            else:
                spans.append((r, 1))
        while len(self._hatches) < len(spans):
            item = QGraphicsRectItem()
            item.setBrush(QBrush(QColor(128, 128, 128, 150), Qt.BDiagPattern))
            pen = QPen(QColor(128, 128, 128))
            pen.setCosmetic(True)
            item.setPen(pen)
            item.setZValue(5)
            self.plot.addItem(item)
            self._hatches.append(item)
        for i, item in enumerate(self._hatches):
            if i < len(spans):
                item.setRect(QRectF(0, spans[i][0], n_x, spans[i][1]))
            item.setVisible(i < len(spans))

    def clear(self) -> None:
        self._values = None
        self.set_significance(None)
        self._drawn.pop("title", None)
        self._drawn.pop("shape", None)
        self._estimate_rows = frozenset()
        for item in self._hatches:
            item.setVisible(False)
        self.image.clear()
        self.marker.setVisible(False)
        self._selected = None
        self._show_empty()

    def show_message(self, text: str) -> None:
        """No data: ``text`` instead of a title (e.g. how to get a difference map)."""
        self.clear()
        self.title_item.setText(f"<i>{text}</i>")

    def _show_empty(self) -> None:
        """No result yet: a hint instead of a title and no meaningless axis numbers."""
        self.title_item.setText("<i>Pick a pair and a target, then Run (Ctrl+Enter): the heatmap "
                                "fills in layer by layer.</i>")
        for key, axis in (("yticks", "left"), ("xticks", "bottom")):
            self._drawn.pop(key, None)
            self.plot.getAxis(axis).setTicks([[]])

    @staticmethod
    def make_title(model: str, target_label: str, direction: str, metric: str, scope: str = "") -> str:
        """Two short lines (a long single line would set the window's minimum width)."""
        tail = f" \u00b7 {scope}" if scope else ""
        return (f"{model} \u00b7 {target_label}<br>{DIRECTIONS.get(direction, direction)}"
                f" \u00b7 {metric}{tail}")

    # -- drawing --------------------------------------------------------------------------
    def current_plane(self) -> tuple[np.ndarray, str] | None:
        if self._values is None:
            return None
        pos = self.pos_box.currentData() if self._values.ndim == 3 else ALL_POS
        return plane(self._values, self._axes, ALL_POS if pos is None else pos)

    def flush(self) -> None:
        """Redraw now (tests and exports)."""
        self._dirty = True
        self._redraw()

    @Slot()
    def _redraw(self) -> None:
        if not self._dirty or self._values is None:
            return
        self._dirty = False
        data, xaxis = self.current_plane()
        m = symmetric_limit(data, self._metric)
        self.image.setImage(np.ascontiguousarray(data, dtype=np.float64), autoLevels=False,
                            levels=(-m, m))
        n_layers, n_x = data.shape
        ylab = self._labels.get("layer", [str(i) for i in range(n_layers)])
        xlab = self._labels.get(xaxis, [str(i) for i in range(n_x)])
        if xaxis == "pos":
            xticks = [(i + 0.5, f"{xlab[i]!r}"[1:-1] if xlab[i].strip() != xlab[i] else xlab[i]) for i in range(n_x)]
        else:
            xticks = [(i + 0.5, xlab[i]) for i in range(n_x)]
        # set only what changed: each setter re-lays out or regenerates an axis, and during a
        # sweep only the image (and perhaps the levels) change (keeps event-loop stalls short)
        self._set_once("levels", m, self.colorbar.setLevels, (-m, m))
        self._set_once("cmap", self.cbd.isChecked(), self.colorbar.setColorMap, CMAPS[self.cbd.isChecked()])
        bar_label = METRICS.get(self._metric, self._metric).split(" (")[0]
        self._set_once("bar_label", bar_label, self.colorbar.axis.setLabel, bar_label)
        if self._set_once("shape", (n_layers, n_x), self.image.setRect, QRectF(0, 0, n_x, n_layers)):
            self.plot.setRange(xRange=(0, n_x), yRange=(0, n_layers), padding=0)
        self._draw_hatches(n_x)
        self._draw_fade(n_layers, n_x)
        yticks = [(i + 0.5, ylab[i]) for i in range(n_layers)]
        self._set_once("yticks", yticks, self.plot.getAxis("left").setTicks, [yticks])
        self._set_once("ylabel", "layer", self.plot.getAxis("left").setLabel, "layer")
        self._set_once("xticks", xticks, self.plot.getAxis("bottom").setTicks, [xticks])
        xname = "position (token)" if xaxis == "pos" else xaxis
        self._set_once("xlabel", xname, self.plot.getAxis("bottom").setLabel, xname)
        self._set_once("title", self._title, self.title_item.setText, self._title)

    def _draw_fade(self, n_layers: int, n_x: int) -> None:
        sig = self._significant
        if sig is None or self._values is None or sig.shape != self._values.shape:
            self.fade.setVisible(False)
            return
        pos = self.pos_box.currentData() if self._values.ndim == 3 else ALL_POS
        shown = plane_mask(sig, self._values, self._axes, ALL_POS if pos is None else pos)
        bg = self.palette().color(self.backgroundRole())
        rgba = np.zeros((n_layers, n_x, 4), dtype=np.uint8)
        rgba[..., :3] = (bg.red(), bg.green(), bg.blue())
        rgba[..., 3] = np.where(shown, 0, 185)
        self.fade.setImage(rgba, autoLevels=False, levels=(0, 255))
        self.fade.setRect(QRectF(0, 0, n_x, n_layers))
        self.fade.setVisible(True)

    def _set_once(self, key: str, value, setter, *args) -> bool:
        """Call ``setter(*args)`` when ``value`` differs from the one drawn last; True if called."""
        if key in self._drawn and self._drawn[key] == value:
            return False
        self._drawn[key] = value
        setter(*args)
        return True

    def _set_pos_visible(self, visible: bool) -> None:
        self.pos_box.setVisible(visible)
        self.pos_label.setVisible(visible)

    def _fill_positions(self) -> None:
        three = self._values is not None and self._values.ndim == 3
        self.pos_box.blockSignals(True)
        self.pos_box.clear()
        if three:
            self.pos_box.addItem("All positions (largest |effect|)", ALL_POS)
            for i, tok in enumerate(self._labels.get("pos", [])):
                self.pos_box.addItem(f"{i}: {tok!r}", i)
        self.pos_box.blockSignals(False)
        self._set_pos_visible(three)

    def select_position(self, pos: int) -> None:
        i = self.pos_box.findData(pos)
        if i >= 0:
            self.pos_box.setCurrentIndex(i)

    @Slot(int)
    def _on_pos_changed(self, _i: int) -> None:
        self.marker.setVisible(False)
        self.flush()

    @Slot(bool)
    def _on_cmap_toggled(self, _on: bool) -> None:
        self.flush()

    # -- interaction ----------------------------------------------------------------------
    def cell_at(self, scene_pos: QPointF) -> tuple[int, int] | None:
        """(layer, x) of the plane cell under a scene point, or None."""
        if self._values is None or not self.plot.sceneBoundingRect().contains(scene_pos):
            return None
        p = self.plot.vb.mapSceneToView(scene_pos)
        data, _ = self.current_plane()
        r, c = int(np.floor(p.y())), int(np.floor(p.x()))
        if 0 <= r < data.shape[0] and 0 <= c < data.shape[1]:
            return r, c
        return None

    def full_index(self, layer: int, x: int) -> tuple[int, ...]:
        """Index in the result's axis order of plane cell (layer, x)."""
        if len(self._axes) == 2:
            return (layer, x)
        pos = self.pos_box.currentData()
        if pos is None or pos == ALL_POS:
            p_axis = self._axes.index("pos")
            moved = np.moveaxis(self._values, p_axis, -1)
            col = np.where(np.isfinite(moved[layer, x]), moved[layer, x], 0.0)
            pos = int(np.abs(col).argmax())
        idx = {"layer": layer, "head": x, "pos": pos}
        return tuple(idx[a] for a in self._axes)

    def describe(self, index: tuple[int, ...]) -> str:
        parts = []
        for axis, i in zip(self._axes, index):
            if axis == "pos":
                toks = self._labels.get("pos", [])
                parts.append(f"pos {i} {toks[i]!r}" if i < len(toks) else f"pos {i}")
            elif axis == "head":
                parts.append(f"head L{index[0]}H{i}")
            else:
                parts.append(f"{axis} {i}")
        v = self._values[index] if self._values is not None else np.nan
        value = f"{v:.4g}" if np.isfinite(v) else "not computed yet"
        return f"{', '.join(parts)}: {value}"

    @Slot(object)
    def _on_mouse_moved(self, scene_pos: QPointF) -> None:
        cell = self.cell_at(scene_pos)
        if cell is None:
            self.graphics.setToolTip("")
            return
        text = self.describe(self.full_index(*cell))
        self.hover.setText(text)
        self.graphics.setToolTip(text)

    @Slot(object)
    def _on_mouse_clicked(self, event) -> None:
        cell = self.cell_at(event.scenePos())
        if cell is not None:
            self.select_cell(self.full_index(*cell))
            if event.button() == Qt.RightButton:
                self.cellMenuRequested.emit(self._selected, event.screenPos().toPoint())

    def select_cell(self, index: tuple[int, ...]) -> None:
        """Mark a cell and emit :attr:`cellSelected` (also used by tests)."""
        if self._values is None:
            return
        self._selected = tuple(int(i) for i in index)
        layer = self._selected[0]
        x = self._selected[self._axes.index("head")] if len(self._axes) == 3 else self._selected[1]
        self.marker.setRect(QRectF(x, layer, 1, 1))
        self.marker.setVisible(True)
        self.hover.setText(self.describe(self._selected))
        self.cellSelected.emit(self._selected)

    @property
    def selected(self) -> tuple[int, ...] | None:
        return self._selected

    def cell_scene_pos(self, layer: int, x: int) -> QPointF:
        """Scene point at the centre of a plane cell (for tests)."""
        return self.plot.vb.mapViewToScene(QPointF(x + 0.5, layer + 0.5))
