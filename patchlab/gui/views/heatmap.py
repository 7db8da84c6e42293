"""Heatmap of a patching result (pyqtgraph): live fill, symmetric diverging colours, hover, click."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from patchlab.gui.views.heatmap_data import (  # noqa: F401 - re-exported for callers and tests
    ALL_POS,
    CMAPS,
    MAX_TICKS,
    axis_ticks,
    colour_bar_label,
    describe_cell,
    fade_rgba,
    full_index,
    make_title,
    plane,
    plane_cell,
    plane_mask,
    step_cell,
    symmetric_limit,
    thin_ticks,
)
from patchlab.gui.views.heatmap_items import MOVES, PositionBox, RowHatches, cell_marker


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
        self._centre = 0.0  # the no-effect value the diverging colours are centred on
        self._title = ""
        self._dirty = False
        self._selected: tuple[int, ...] | None = None
        self._estimate_rows: frozenset[int] = frozenset()
        self._significant: np.ndarray | None = None  # cells drawn at full strength
        self._drawn: dict[str, object] = {}  # what the last redraw set (see _set_once)
        self._ticks: dict[str, list] | None = None  # tick lists for the labels shown (built once)

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
        self.marker = cell_marker()
        self.plot.addItem(self.marker)
        self.hatches = RowHatches(self.plot)

        self.pos_box = PositionBox()
        self.pos_box.currentIndexChanged.connect(self._on_pos_changed)
        self.cbd = QCheckBox("Colour-blind-safe colours")
        self.cbd.toggled.connect(self._on_cmap_toggled)
        self.stale_label = QLabel("")
        self.stale_label.setStyleSheet("color: #b35900")
        self.stale_label.setVisible(False)
        self.legend = QLabel("")
        self.legend.setWordWrap(True)
        self.hover = QLabel(" ")
        self.hover.setTextInteractionFlags(Qt.TextSelectableByMouse)
        bar = QHBoxLayout()
        self.pos_label = QLabel("Position:")
        bar.addWidget(self.pos_label)
        bar.addWidget(self.pos_box)
        bar.addStretch(1)
        bar.addWidget(self.stale_label)
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

        # keyboard (issue 11 item 8): the view takes focus; arrows move a cursor over the
        # cells, Enter/Return selects the cell under it (the patched readout follows)
        self._cursor: tuple[int, int] | None = None
        self.setFocusPolicy(Qt.StrongFocus)
        self.graphics.setFocusPolicy(Qt.NoFocus)
        self.setAccessibleName("patching heatmap")
        self.setAccessibleDescription("Arrow keys move over the cells; Enter shows the patched run")
        self.graphics.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.graphics.scene().sigMouseClicked.connect(self._on_mouse_clicked)
        self._timer = QTimer(self)
        self._timer.setInterval(33)  # redraws are throttled to ~30 Hz, data never is
        self._timer.timeout.connect(self._redraw)
        self._timer.start()

    # -- data in --------------------------------------------------------------------------
    def set_data(self, values: np.ndarray, axes: tuple[str, ...], labels: dict[str, list[str]],
                 *, metric: str, title: str, centre: float = 0.0) -> None:
        """Show ``values`` (NaN = not computed yet); cheap, the redraw happens on a timer.

        ``centre`` is the value drawn white: the metric's no-effect value (issue 11 item 7; 0
        for ``logit_diff_recovered``, the unpatched run's value for the raw metrics).
        """
        self._centre = float(centre) if np.isfinite(centre) else 0.0
        new_shape = self._values is None or self._values.shape != values.shape or self._axes != tuple(axes)
        new_pos = labels.get("pos") != self._labels.get("pos")
        if new_shape or labels != self._labels:
            self._ticks = None  # the presenter sends equal labels with every row: keep the ticks
        self._values = values
        self._axes = tuple(axes)
        self._labels = labels
        self._metric = metric
        self._title = title
        if new_shape:
            self._selected = None
            self._cursor = None
            self.marker.setVisible(False)
            self._fill_positions()
        elif new_pos:  # the same grid for another pair: keep the chosen position
            self._fill_positions(keep=True)
        self._dirty = True

    def set_stale(self, reason: str) -> None:
        """Dim the map and say "inputs changed: run again" (``reason`` "" = current)."""
        if reason == getattr(self, "_stale", ""):
            return
        self._stale = reason
        self.image.setOpacity(0.35 if reason else 1.0)
        self.stale_label.setText(f"<b>inputs changed: run again</b> ({reason} changed since this run)" if reason else "")
        self.stale_label.setVisible(bool(reason))

    @property
    def stale(self) -> str:
        return getattr(self, "_stale", "")

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

    def clear(self) -> None:
        self._values = None
        self.set_significance(None)
        self._drawn.pop("title", None)
        self._drawn.pop("shape", None)
        self._estimate_rows = frozenset()
        self.hatches.hide()
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

    make_title = staticmethod(make_title)

    # -- drawing --------------------------------------------------------------------------
    def current_plane(self) -> tuple[np.ndarray, str] | None:
        if self._values is None:
            return None
        pos = self.pos_box.position() if self._values.ndim == 3 else ALL_POS
        return plane(self._values, self._axes, pos)

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
        c = self._centre
        m = symmetric_limit(data, self._metric, c)
        levels = (c - m, c + m)
        self.image.setImage(np.ascontiguousarray(data, dtype=np.float64), autoLevels=False,
                            levels=levels)
        n_layers, n_x = data.shape
        if self._ticks is None or self._ticks["key"] != (xaxis, n_layers, n_x):
            # thinned and formatted once per label set (hover and the selector name every cell)
            self._ticks = {"key": (xaxis, n_layers, n_x),
                           "x": axis_ticks(self._labels.get(xaxis), n_x, xaxis),
                           "y": axis_ticks(self._labels.get("layer"), n_layers, "layer")}
        xticks, yticks = self._ticks["x"], self._ticks["y"]
        # set only what changed: each setter re-lays out or regenerates an axis, and during a
        # sweep only the image (and perhaps the levels) change (keeps event-loop stalls short)
        self._set_once("levels", levels, self.colorbar.setLevels, levels)
        self._set_once("cmap", self.cbd.isChecked(), self.colorbar.setColorMap, CMAPS[self.cbd.isChecked()])
        bar_label = colour_bar_label(self._metric, c)
        self._set_once("bar_label", bar_label, self.colorbar.axis.setLabel, bar_label)
        if self._set_once("shape", (n_layers, n_x), self.image.setRect, QRectF(0, 0, n_x, n_layers)):
            self.plot.setRange(xRange=(0, n_x), yRange=(0, n_layers), padding=0)
        self.hatches.draw(self._estimate_rows, n_x)
        self._draw_fade(n_layers, n_x)
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
        pos = self.pos_box.position() if self._values.ndim == 3 else ALL_POS
        shown = plane_mask(sig, self._values, self._axes, pos)
        bg = self.palette().color(self.backgroundRole())
        self.fade.setImage(fade_rgba(shown, (bg.red(), bg.green(), bg.blue())), autoLevels=False,
                           levels=(0, 255))
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

    def _fill_positions(self, keep: bool = False) -> None:
        three = self._values is not None and self._values.ndim == 3
        self.pos_box.fill(self._labels.get("pos", []), three, keep=keep)
        self._set_pos_visible(three)

    def select_position(self, pos: int) -> None:
        self.pos_box.select(pos)

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
        return full_index(self._values, self._axes, layer, x, self.pos_box.position())

    def describe(self, index: tuple[int, ...]) -> str:
        """Hover text of a cell: its axes (with the token at a position) and value."""
        return describe_cell(self._values, self._axes, self._labels, index)

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
            self.setFocus(Qt.MouseFocusReason)
            self._cursor = cell
            self.select_cell(self.full_index(*cell))
            if event.button() == Qt.RightButton:
                self.cellMenuRequested.emit(self._selected, event.screenPos().toPoint())

    @property
    def cursor_cell(self) -> tuple[int, int] | None:
        """(layer, x) of the keyboard cursor, or None."""
        return self._cursor

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt API
        key = event.key()
        if self._values is None or (key not in MOVES and key not in (Qt.Key_Return, Qt.Key_Enter)):
            super().keyPressEvent(event)
            return
        delta = MOVES.get(key, (0, 0))
        if self._cursor is None:  # start from the selected cell, else the top-left one
            self._cursor = plane_cell(self._selected, self._axes) if self._selected else (0, 0)
            delta = (0, 0)  # the first arrow shows the cursor in place
        if key in MOVES:
            layer, x = self._cursor = step_cell(self._cursor, delta, self.current_plane()[0].shape)
            self.marker.setRect(QRectF(x, layer, 1, 1))
            self.marker.setVisible(True)
            self.hover.setText(self.describe(self.full_index(layer, x)) + "  (Enter: patched run)")
        else:
            self.select_cell(self.full_index(*self._cursor))
        event.accept()

    def select_cell(self, index: tuple[int, ...]) -> None:
        """Mark a cell and emit :attr:`cellSelected` (also used by tests)."""
        if self._values is None:
            return
        self._selected = tuple(int(i) for i in index)
        layer, x = plane_cell(self._selected, self._axes)
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
