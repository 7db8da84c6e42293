"""Per-pair view of one cell (one point per pair, the map's value and its CI) and the
ranked table of top cells. Passive: data through setters, clicks through signals."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

POINT = (0, 114, 178)
SELECTED = (230, 159, 0)
TOP_COLUMNS = ("cell", "value", "CI low", "CI high", "p", "q")


def _fmt(v: float) -> str:
    return f"{v:.3g}" if np.isfinite(v) else "n/a"


class CellPairsView(QWidget):
    """Signals: ``pairClicked(int)`` (0-based pair), ``cellClicked(object)`` (a ranked cell),
    ``exportRequested()`` (the ranked table as CSV)."""

    pairClicked = Signal(int)
    cellClicked = Signal(object)
    exportRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.values = np.empty(0)
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground(None)
        self.title_item = self.graphics.addLabel("Click a heatmap cell to see its value for each pair",
                                                 row=0, col=0, size="11pt")
        self.plot = self.graphics.addPlot(row=1, col=0)
        self.plot.hideButtons()
        self.plot.setMenuEnabled(False)
        self.plot.showGrid(y=True, alpha=0.25)
        self.plot.setLabel("bottom", "pair")
        self.points = pg.ScatterPlotItem(size=9, pen=pg.mkPen(None), brush=pg.mkBrush(*POINT, 200),
                                         hoverable=True, hoverSize=12)
        self.points.sigClicked.connect(self._on_clicked)
        self.plot.addItem(self.points)
        self.mean_line = pg.InfiniteLine(angle=0, pen=pg.mkPen((200, 60, 60), width=2))
        self.ci = pg.LinearRegionItem(orientation="horizontal", movable=False,
                                      brush=pg.mkBrush(200, 60, 60, 40), pen=pg.mkPen(None))
        self.zero = pg.InfiniteLine(angle=0, pen=pg.mkPen((150, 150, 150), style=Qt.DashLine))
        for item in (self.ci, self.mean_line, self.zero):
            self.plot.addItem(item, ignoreBounds=True)
            item.setVisible(False)
        self.table = QTableWidget(0, len(TOP_COLUMNS))
        self.table.setHorizontalHeaderLabels(TOP_COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectRows)
        self.table.cellClicked.connect(self._on_row)
        self.table_note = QLabel("Top cells (run a sweep over several pairs)")
        self.export_btn = QPushButton("Export CSV\u2026")
        self.export_btn.clicked.connect(self.exportRequested)
        self._cells: list[tuple[int, ...]] = []
        box = QWidget()
        blay = QVBoxLayout(box)
        blay.setContentsMargins(0, 0, 0, 0)
        head = QHBoxLayout()
        head.addWidget(self.table_note, 1)
        head.addWidget(self.export_btn)
        blay.addLayout(head)
        blay.addWidget(self.table, 1)
        split = QSplitter(Qt.Vertical)
        split.addWidget(self.graphics)
        split.addWidget(box)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(split)

    # -- per-pair points ------------------------------------------------------------------
    def set_cell(self, title: str, values: np.ndarray, value: float, ci: tuple[float, float] | None,
                 no_effect: float, selected: int | None) -> None:
        """One point per pair (x: pair number), the map's ``value`` and its CI band."""
        self.values = np.asarray(values, dtype=float)
        x = np.arange(1, self.values.size + 1)
        brushes = [pg.mkBrush(*(SELECTED if i == selected else POINT), 220) for i in range(x.size)]
        self.points.setData(x=x, y=self.values, data=list(range(x.size)), brush=brushes)
        self.title_item.setText(title)
        self.mean_line.setPos(value)
        self.mean_line.setVisible(bool(np.isfinite(value)))
        ok = ci is not None and all(np.isfinite(ci))
        if ok:
            self.ci.setRegion(ci)
        self.ci.setVisible(ok)
        self.zero.setPos(no_effect if np.isfinite(no_effect) else 0.0)
        self.zero.setVisible(True)
        self.plot.setXRange(0.5, max(1, x.size) + 0.5, padding=0)

    def point_pos(self, pair: int):
        """Scene position of pair ``pair``'s point (tests click it)."""
        return self.plot.vb.mapViewToScene(pg.Point(pair + 1, self.values[pair]))

    @Slot(object, object, object)
    def _on_clicked(self, _item, points, _event=None) -> None:
        if len(points):
            self.pairClicked.emit(int(points[0].data()))

    # -- ranked cells ---------------------------------------------------------------------
    def set_top(self, rows: list[tuple[tuple[int, ...], str, float, float, float, float, float]],
                note: str) -> None:
        """Rows of (index, label, value, ci_low, ci_high, p, q); a few dozen at most."""
        self.table_note.setText(note)
        self._cells = [r[0] for r in rows]
        self.table.setRowCount(len(rows))
        for i, (_, label, *nums) in enumerate(rows):
            self.table.setItem(i, 0, QTableWidgetItem(label))
            for j, v in enumerate(nums, 1):
                self.table.setItem(i, j, QTableWidgetItem(_fmt(v)))
        self.export_btn.setEnabled(bool(rows))

    def top_text(self, row: int, col: int) -> str:
        item = self.table.item(row, col)
        return item.text() if item is not None else ""

    @Slot(int, int)
    def _on_row(self, row: int, _col: int) -> None:
        if 0 <= row < len(self._cells):
            self.cellClicked.emit(self._cells[row])
