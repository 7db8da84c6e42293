"""Weights tab view: a token x token heatmap grouped by word class, and composition scores
(source x destination heatmap plus a ranked list). Passive: data in through setters, clicks
out through signals; it never computes."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from patchlab.core.weights_result import CompositionResult, WeightMatrix

CMAP = "CET-D1"


def _limit(values: np.ndarray) -> float:
    finite = np.abs(values[np.isfinite(values)])
    m = float(finite.max()) if finite.size else 0.0
    return m if m > 0 else 1.0


def _ticks(labels: list[str], groups: list[str], spans) -> list[tuple[float, str]]:
    """Group names at the middle of each group (many tokens), else every token's label."""
    if len(labels) <= 40 or len(spans) <= 1:
        return [(i + 0.5, lab) for i, lab in enumerate(labels)]
    return [((a + b) / 2, g) for g, a, b in spans]


class WeightsView(QWidget):
    """Shows a :class:`WeightMatrix` or a :class:`CompositionResult`.

    Signals
    -------
    cellSelected(row_label, col_label)
        A clicked matrix cell.
    headSelected(layer, head)
        A head picked in the composition view (heatmap or list): e.g. to show its OV/QK.
    switchProcessingRequested()
        The user accepted the offer to reload the model with folded LayerNorm.
    """

    cellSelected = Signal(str, str)
    headSelected = Signal(int, int)
    switchProcessingRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._values: np.ndarray | None = None
        self._rows: list[str] = []
        self._cols: list[str] = []
        self._comp: CompositionResult | None = None
        self.banner = QLabel()
        self.banner.setWordWrap(True)
        self.switch_button = QPushButton("Reload with folded LayerNorm (compat)")
        self.switch_button.clicked.connect(self._on_switch)
        banner_row = QHBoxLayout()
        banner_row.addWidget(self.banner, 1)
        banner_row.addWidget(self.switch_button)
        self.banner_box = QWidget()
        self.banner_box.setLayout(banner_row)
        self.banner_box.hide()

        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground(None)
        self.title_item = self.graphics.addLabel("", row=0, col=0, size="11pt")
        self.plot = self.graphics.addPlot(row=1, col=0)
        self.plot.invertY(True)
        self.plot.setMenuEnabled(False)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setColorMap(pg.colormap.get(CMAP))
        self.plot.addItem(self.image)
        self._lines: list[pg.InfiniteLine] = []
        self.hover = QLabel(" ")
        self.baseline = QLabel("")
        self.ranked = QTableWidget(0, 3)
        self.ranked.setHorizontalHeaderLabels(["source", "destination", "score"])
        self.ranked.setEditTriggers(QTableWidget.NoEditTriggers)
        self.ranked.setSelectionBehavior(QTableWidget.SelectRows)
        self.ranked.cellClicked.connect(self._on_ranked_clicked)
        side = QVBoxLayout()
        side.addWidget(self.baseline)
        side.addWidget(self.ranked)
        self.side = QWidget()
        self.side.setLayout(side)
        self.side.hide()
        body = QHBoxLayout()
        body.addWidget(self.graphics, 3)
        body.addWidget(self.side, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.banner_box)
        layout.addLayout(body)
        layout.addWidget(self.hover)
        self.plot.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.image.mouseClickEvent = self._on_click  # type: ignore[method-assign]

    # -- setters ---------------------------------------------------------------------
    def set_processing_warning(self, text: str | None) -> None:
        """Show (text) or hide (None) the 'weight views need folded LayerNorm' offer."""
        self.banner.setText(text or "")
        self.banner_box.setVisible(bool(text))

    def set_matrix(self, m: WeightMatrix) -> None:
        """Draw a token x token (or position x position) matrix, grouped by word class."""
        self._comp = None
        self.side.hide()
        self._draw(m.values, m.row_labels, m.col_labels, m.title,
                   m.group_spans("row"), m.group_spans("col"), m.row_groups, m.col_groups,
                   m.meta.get("row_axis", ""), m.meta.get("col_axis", ""))

    def set_composition(self, c: CompositionResult, top: int = 30) -> None:
        """Draw the source x destination score matrix and the ranked list (above p99 marked)."""
        labels = c.head_labels
        n_h = c.values.shape[1]
        spans = [(f"L{i}", i * n_h, (i + 1) * n_h) for i in range(c.values.shape[0])]
        groups = [lab.split("H")[0] for lab in labels]
        self._draw(c.matrix(), labels, labels, f"{c.mode.upper()}-composition", spans, spans, groups, groups,
                   "source head", "destination head")
        self._comp = c
        self.baseline.setText(f"random baseline: mean {c.baseline_mean:.3f}, 99th percentile {c.baseline_p99:.3f}")
        rows = c.ranked(top)
        self.ranked.setRowCount(len(rows))
        for r, (s, d, v) in enumerate(rows):
            mark = " *" if v > c.baseline_p99 else ""
            for col, text in enumerate((s, d, f"{v:.3f}{mark}")):
                item = QTableWidgetItem(text)
                if mark:
                    f = item.font()
                    f.setBold(True)
                    item.setFont(f)
                self.ranked.setItem(r, col, item)
        self.side.show()

    # -- drawing ---------------------------------------------------------------------
    def _draw(self, values, rows, cols, title, row_spans, col_spans, row_groups, col_groups, y_name, x_name):
        self._values, self._rows, self._cols = np.asarray(values, float), list(rows), list(cols)
        m = _limit(self._values)
        self.image.setImage(np.nan_to_num(self._values, nan=0.0), levels=(-m, m), autoLevels=False)
        self.title_item.setText(title)
        for line in self._lines:
            self.plot.removeItem(line)
        self._lines = []
        pen = pg.mkPen((60, 60, 60), width=1)
        for _, a, _ in row_spans[1:]:
            self._lines.append(pg.InfiniteLine(a, angle=0, pen=pen))
        for _, a, _ in col_spans[1:]:
            self._lines.append(pg.InfiniteLine(a, angle=90, pen=pen))
        for line in self._lines:
            self.plot.addItem(line)
        self.plot.getAxis("left").setTicks([_ticks(self._rows, row_groups, row_spans)])
        self.plot.getAxis("bottom").setTicks([_ticks(self._cols, col_groups, col_spans)])
        self.plot.setLabel("left", y_name)
        self.plot.setLabel("bottom", x_name)

    def cell_at(self, x: float, y: float) -> tuple[int, int] | None:
        if self._values is None:
            return None
        r, c = int(np.floor(y)), int(np.floor(x))
        if 0 <= r < self._values.shape[0] and 0 <= c < self._values.shape[1]:
            return r, c
        return None

    def describe(self, r: int, c: int) -> str:
        v = self._values[r, c] if self._values is not None else np.nan
        val = f"{v:+.4g}" if np.isfinite(v) else "n/a"
        return f"{self._rows[r]!r} x {self._cols[c]!r}: {val}"

    # -- slots -----------------------------------------------------------------------
    @Slot(object)
    def _on_mouse_moved(self, pos) -> None:
        p = self.plot.vb.mapSceneToView(pos)
        cell = self.cell_at(p.x(), p.y())
        self.hover.setText(self.describe(*cell) if cell else " ")

    def _on_click(self, ev) -> None:
        p: QPointF = ev.pos()
        cell = self.cell_at(p.x(), p.y())
        if cell is None or ev.button() != Qt.LeftButton:
            return
        ev.accept()
        self.select(*cell)

    def select(self, r: int, c: int) -> None:
        """Act as if cell (row ``r``, column ``c``) were clicked."""
        self.cellSelected.emit(self._rows[r], self._cols[c])
        if self._comp is not None:
            n_h = self._comp.values.shape[1]
            self.headSelected.emit(c // n_h, c % n_h)

    @Slot(int, int)
    def _on_ranked_clicked(self, row: int, col: int) -> None:
        item = self.ranked.item(row, 1 if col == 1 else 0)
        if item is None:
            return
        layer, head = item.text()[1:].split("H")
        self.headSelected.emit(int(layer), int(head))

    @Slot()
    def _on_switch(self) -> None:
        self.switchProcessingRequested.emit()
