"""Qt parts of the heatmap: the searchable position selector and the estimate-row hatching."""

from __future__ import annotations

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QPen
from PySide6.QtWidgets import QComboBox, QCompleter, QGraphicsRectItem

from patchlab.gui.views.heatmap_data import ALL_POS, row_spans

#: Arrow keys -> (layer, x) steps of the heatmap's keyboard cursor.
MOVES = {Qt.Key_Up: (-1, 0), Qt.Key_Down: (1, 0), Qt.Key_Left: (0, -1), Qt.Key_Right: (0, 1)}


class PositionBox(QComboBox):
    """Which position a per-position head target shows; type a token or an index to search.

    Long prompts have hundreds of positions: typing filters the list (substring match)
    instead of scrolling it. Item data is the position index, :data:`ALL_POS` for "all".
    """

    def __init__(self) -> None:
        super().__init__()
        self.setToolTip("Position shown for per-position head targets (type to search)")
        self.setEditable(True)
        self.setInsertPolicy(QComboBox.NoInsert)
        self.completer().setFilterMode(Qt.MatchContains)
        self.completer().setCompletionMode(QCompleter.PopupCompletion)
        self.setMaxVisibleItems(20)
        self.setAccessibleName("position")

    def fill(self, tokens: list[str] | None, enabled: bool, keep: bool = False) -> None:
        """One entry per position (``enabled``), or none; ``keep`` keeps the chosen index.

        Entry ``i + 1`` is position ``i`` (no per-item data: one ``addItems`` call for a
        500-token prompt). Emits no ``currentIndexChanged`` (the caller redraws anyway).
        """
        current = self.currentIndex()
        self.blockSignals(True)
        self.clear()
        if enabled:
            self.addItems(["All positions (largest |effect|)"]
                          + [f"{i}: {tok!r}" for i, tok in enumerate(tokens or [])])
            if keep and 0 <= current < self.count():
                self.setCurrentIndex(current)
        self.blockSignals(False)

    def position(self) -> int:
        """The chosen position (:data:`ALL_POS` for "all", or when there is no choice)."""
        i = self.currentIndex()
        return ALL_POS if i <= 0 else i - 1

    def select(self, pos: int) -> None:
        """Choose position ``pos`` (or :data:`ALL_POS`); ignored when out of range."""
        i = 0 if pos == ALL_POS else pos + 1
        if 0 <= i < self.count():
            self.setCurrentIndex(i)


class RowHatches:
    """Hatched bands over the layer rows that still show the attribution estimate."""

    def __init__(self, plot) -> None:
        self.plot = plot
        self.items: list[QGraphicsRectItem] = []

    def draw(self, rows, n_x: int) -> None:
        spans = row_spans(rows)
        while len(self.items) < len(spans):
            item = QGraphicsRectItem()
            item.setBrush(QBrush(QColor(128, 128, 128, 150), Qt.BDiagPattern))
            pen = QPen(QColor(128, 128, 128))
            pen.setCosmetic(True)
            item.setPen(pen)
            item.setZValue(5)
            self.plot.addItem(item)
            self.items.append(item)
        for i, item in enumerate(self.items):
            if i < len(spans):
                item.setRect(QRectF(0, spans[i][0], n_x, spans[i][1]))
            item.setVisible(i < len(spans))

    def hide(self) -> None:
        for item in self.items:
            item.setVisible(False)


def cell_marker() -> QGraphicsRectItem:
    """The outline of the selected (or keyboard-cursor) cell, hidden until a cell is chosen."""
    marker = QGraphicsRectItem()
    pen = QPen(QColor(255, 200, 0))
    pen.setCosmetic(True)  # width in pixels, whatever the cell size
    pen.setWidth(3)
    marker.setPen(pen)
    marker.setVisible(False)
    marker.setZValue(10)  # above the estimate hatching
    return marker
