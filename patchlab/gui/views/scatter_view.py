"""Attribution estimate (x) against exact value (y) per cell, with the y = x line."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Slot
from PySide6.QtWidgets import QGraphicsItem, QLabel, QVBoxLayout, QWidget

from patchlab.gui.preview import agreement, agreement_text

POINT = (0, 114, 178)  # Okabe-Ito blue
NOTE = "Run an exact sweep with the attribution preview on to compare."

#: Cell labels: a list in C order, or ``label(index_tuple)`` (e.g. ``PatchResult.cell_label``).
Labels = Sequence[str] | Callable[[tuple[int, ...]], str]


class ScatterView(QWidget):
    """Draws two same-shape arrays (estimate, exact) as points; never computes them.

    Redraws are throttled (~10 Hz) like the heatmap's and skipped while the view is hidden
    (another tab is shown; it draws when shown); the data is always the latest. A redraw
    passes the points as two float arrays, nothing per point: labels are made only for the
    point under the mouse (a 512-token sweep has 6144 cells).
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.estimate: np.ndarray | None = None
        self.exact: np.ndarray | None = None
        self.labels: Labels = []
        self.metric_label = ""
        self.subtitle = ""
        self.centre = 0.0
        self.stats: dict | None = None
        self._dirty = False
        self._shown = np.empty(0, dtype=np.intp)  # flat cell index of each point drawn
        self._xy = (np.empty(0), np.empty(0))  # the points drawn (estimate, exact)
        self._drawn: dict[str, object] = {}  # what the last redraw set (axis labels, range)

        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground(None)
        self.title_item = self.graphics.addLabel("", row=0, col=0, size="11pt")
        self.plot = self.graphics.addPlot(row=1, col=0)
        self.plot.hideButtons()
        self.plot.setMenuEnabled(False)
        self.plot.showGrid(x=True, y=True, alpha=0.25)
        for side in ("left", "bottom"):
            self.plot.getAxis(side).enableAutoSIPrefix(False)
            # the axes draw the grid over the whole plot; kept as a pixmap until the range
            # changes, so a redraw of the points does not replay the grid and tick text
            self.plot.getAxis(side).setCacheMode(QGraphicsItem.DeviceCoordinateCache)
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
        self.note = QLabel(NOTE)
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
        if self._drawn.get("unit") == unit:
            return  # an axis label change re-lays out the plot: only when it changes
        self._drawn["unit"] = unit
        self.plot.getAxis("bottom").setLabel(f"attribution estimate{unit}")
        self.plot.getAxis("left").setLabel(f"exact patching{unit}")

    # -- data in --------------------------------------------------------------------------
    def set_data(self, estimate: np.ndarray | None, exact: np.ndarray | None, labels: Labels,
                 metric_label: str = "", subtitle: str = "", centre: float = 0.0) -> None:
        """Cheap; the redraw happens on a timer. Arrays are kept, never modified.

        ``labels`` names the cells (hover text): a list in C order or a function of the
        index tuple. ``centre``: the metric's no-effect value; top-k agreement ranks by the
        change from it.
        """
        self.estimate, self.exact, self.labels = estimate, exact, labels
        self.centre = centre
        self.metric_label, self.subtitle = metric_label, subtitle
        self._dirty = True

    def clear(self) -> None:
        # the axis labels stay: a label change regenerates the axes (and their grid)
        self.set_data(None, None, [], self.metric_label)
        self.flush(force=False)

    def flush(self, force: bool = True) -> None:
        """Redraw now; while hidden only with ``force`` (exports and tests)."""
        self._dirty = True
        self._redraw(force=force)

    def label(self, flat: int) -> str:
        """The label of cell ``flat`` (C-order index)."""
        if callable(self.labels):
            return self.labels(tuple(int(i) for i in np.unravel_index(flat, self.estimate.shape)))
        return self.labels[flat] if flat < len(self.labels) else str(flat)

    def _both(self) -> np.ndarray:
        if self.estimate is None or self.exact is None:
            return np.empty(0, dtype=np.intp)
        return np.flatnonzero(np.isfinite(self.estimate.ravel()) & np.isfinite(self.exact.ravel()))

    def pairs(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(estimate, exact, labels) of the cells drawn: both values finite."""
        both = self._both()
        if not both.size:
            return np.empty(0), np.empty(0), []
        return self.estimate.ravel()[both], self.exact.ravel()[both], [self.label(i) for i in both]

    def showEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().showEvent(event)
        self._redraw()  # changes that arrived while another tab was shown

    @Slot()
    def _redraw(self, force: bool = False) -> None:
        if not self._dirty or not (force or self.isVisible()):
            return
        self._dirty = False
        self._set_axis_labels()
        both = self._both()
        if self.estimate is None:
            self._set_points(both, np.empty(0), np.empty(0))
            self.stats = None
            # two lines like a run's title: a height change would re-lay out the plot
            self._set_title("Attribution estimate vs exact patching<br><i>no data yet</i>")
            self.note.setText(NOTE)
            return
        e = self.estimate.ravel()[both]
        x = self.exact.ravel()[both] if self.exact is not None else e
        self._set_points(both, e, x)
        self.note.setText(" ")  # emptied, not hidden: hiding re-lays out the plot each run
        self.stats = agreement(self.estimate, self.exact if self.exact is not None
                               else np.full_like(self.estimate, np.nan), centre=self.centre)
        total = self.estimate.size
        head = f"{self.subtitle}<br>" if self.subtitle else ""  # two lines: no wide minimum
        title = (f"{head}estimate vs exact \u00b7 {agreement_text(self.stats)}"
                 f" \u00b7 {self.stats['n']}/{total} cells exact")
        self._set_title(title)
        if e.size:
            self._fit_range(float(min(e.min(), x.min())), float(max(e.max(), x.max())))

    def _fit_range(self, lo: float, hi: float) -> None:
        """Show ``[lo, hi]`` (both axes), changing the range only when the points leave it or
        fill less than half of it: a new range regenerates both axes and their grid, which
        would otherwise happen with every exact row."""
        cur = self._drawn.get("range")
        if cur is not None and cur[0] <= lo and hi <= cur[1] and (hi - lo) >= 0.5 * (cur[1] - cur[0]):
            return
        pad = 0.05 * (hi - lo or 1.0)
        self._drawn["range"] = rng = (lo - pad, hi + pad)
        self.plot.setRange(xRange=rng, yRange=rng, padding=0)

    def _set_points(self, cells: np.ndarray, e: np.ndarray, x: np.ndarray) -> None:
        """Draw points ``(e, x)`` of flat ``cells``; only the new ones when the points drawn
        are their unchanged start (exact rows arrive in layer order: each adds points, and
        pyqtgraph's per-point style work then covers one row, not all 6144 cells)."""
        n = self._shown.size
        old_e, old_x = self._xy
        if (0 < n < cells.size and np.array_equal(cells[:n], self._shown)
                and np.array_equal(e[:n], old_e) and np.array_equal(x[:n], old_x)):
            self.points.addPoints(x=e[n:], y=x[n:])
        elif not (n == cells.size and np.array_equal(cells, self._shown)
                  and np.array_equal(e, old_e) and np.array_equal(x, old_x)):
            self.points.setData(x=e, y=x)
        self._shown, self._xy = cells, (e, x)

    def _set_title(self, text: str) -> None:
        if self._drawn.get("title") != text:  # a new title re-lays out the plot
            self._drawn["title"] = text
            self.title_item.setText(text)

    @Slot(object, object, object)
    def _on_hovered(self, _item, points, _event) -> None:
        if len(points):
            p = points[0]
            i = p.index()
            name = self.label(int(self._shown[i])) if 0 <= i < self._shown.size else ""
            text = f"{name}: estimate {p.pos().x():.4g}, exact {p.pos().y():.4g}"
            self.hover.setText(text)
            self.graphics.setToolTip(text)
        else:
            self.graphics.setToolTip("")
