"""Attribution estimate (x) against exact value (y) per cell, with the y = x line."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Slot
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from patchlab.gui.preview import agreement, agreement_text

POINT = (0, 114, 178)  # Okabe-Ito blue


class ScatterView(QWidget):
    """Draws two same-shape arrays (estimate, exact) as points; never computes them.

    Redraws are throttled (~10 Hz) like the heatmap's; the data is always the latest.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.estimate: np.ndarray | None = None
        self.exact: np.ndarray | None = None
        self.labels: list[str] = []
        self.metric_label = ""
        self.subtitle = ""
        self.stats: dict | None = None
        self._dirty = False

        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground(None)
        self.title_item = self.graphics.addLabel("", row=0, col=0, size="11pt")
        self.plot = self.graphics.addPlot(row=1, col=0)
        self.plot.hideButtons()
        self.plot.setMenuEnabled(False)
        self.plot.showGrid(x=True, y=True, alpha=0.25)
        for side in ("left", "bottom"):
            self.plot.getAxis(side).enableAutoSIPrefix(False)
        self.diagonal = pg.InfiniteLine(pos=(0, 0), angle=45, pen=pg.mkPen((150, 150, 150), width=1,
                                                                           style=Qt.DashLine))
        self.plot.addItem(self.diagonal, ignoreBounds=True)
        self.points = pg.ScatterPlotItem(size=7, pen=pg.mkPen(None), brush=pg.mkBrush(*POINT, 170),
                                         hoverable=True, hoverSize=11,
                                         hoverBrush=pg.mkBrush(230, 159, 0))
        self.points.sigHovered.connect(self._on_hovered)
        self.plot.addItem(self.points)
        self.hover = QLabel(" ")
        self.hover.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.note = QLabel("Run an exact sweep with the attribution preview on to compare.")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.note)
        lay.addWidget(self.graphics, 1)
        lay.addWidget(self.hover)
        self._timer = QTimer(self)
        self._timer.setInterval(100)
        self._timer.timeout.connect(self._redraw)
        self._timer.start()
        self._set_axis_labels()

    def _set_axis_labels(self) -> None:
        unit = f" ({self.metric_label})" if self.metric_label else ""
        self.plot.getAxis("bottom").setLabel(f"attribution estimate{unit}")
        self.plot.getAxis("left").setLabel(f"exact patching{unit}")

    # -- data in --------------------------------------------------------------------------
    def set_data(self, estimate: np.ndarray | None, exact: np.ndarray | None, labels: list[str],
                 metric_label: str = "", subtitle: str = "", centre: float = 0.0) -> None:
        """Cheap; the redraw happens on a timer. Arrays are kept, never modified.

        ``centre``: the metric's no-effect value; top-k agreement ranks by the change from it.
        """
        self.estimate, self.exact, self.labels = estimate, exact, labels
        self.centre = centre
        self.metric_label, self.subtitle = metric_label, subtitle
        self._dirty = True

    def clear(self) -> None:
        self.set_data(None, None, [])
        self.flush()

    def flush(self) -> None:
        self._dirty = True
        self._redraw()

    def pairs(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(estimate, exact, labels) of the cells drawn: both values finite."""
        if self.estimate is None or self.exact is None:
            return np.empty(0), np.empty(0), []
        e, x = self.estimate.ravel(), self.exact.ravel()
        both = np.flatnonzero(np.isfinite(e) & np.isfinite(x))
        return e[both], x[both], [self.labels[i] for i in both if i < len(self.labels)]

    @Slot()
    def _redraw(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        self._set_axis_labels()
        e, x, labels = self.pairs()
        self.points.setData(x=e, y=x, data=labels)
        if self.estimate is None:
            self.stats = None
            self.title_item.setText("Attribution estimate vs exact patching")
            self.note.setVisible(True)
            return
        self.note.setVisible(False)
        self.stats = agreement(self.estimate, self.exact if self.exact is not None
                               else np.full_like(self.estimate, np.nan), centre=getattr(self, "centre", 0.0))
        total = self.estimate.size
        head = f"{self.subtitle}<br>" if self.subtitle else ""  # two lines: no wide minimum
        self.title_item.setText(f"{head}estimate vs exact \u00b7 {agreement_text(self.stats)}"
                                f" \u00b7 {self.stats['n']}/{total} cells exact")
        if e.size:
            lo = float(min(e.min(), x.min()))
            hi = float(max(e.max(), x.max()))
            pad = 0.05 * (hi - lo or 1.0)
            self.plot.setRange(xRange=(lo - pad, hi + pad), yRange=(lo - pad, hi + pad), padding=0)

    @Slot(object, object, object)
    def _on_hovered(self, _item, points, _event) -> None:
        if len(points):
            p = points[0]
            text = f"{p.data()}: estimate {p.pos().x():.4g}, exact {p.pos().y():.4g}"
            self.hover.setText(text)
            self.graphics.setToolTip(text)
        else:
            self.graphics.setToolTip("")
