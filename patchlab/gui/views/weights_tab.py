"""The Weights tab: controls over two :class:`WeightsView` (a token/position matrix and the
composition scores). Passive: the presenter reads the controls and fills the views."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from patchlab.gui.views.weights_view import WeightsView

CIRCUITS = (("direct", "Direct path W_E W_U"), ("ov", "OV circuit of a head"), ("qk", "QK circuit of a head"),
            ("pos_qk", "Positional QK of a head"))


class WeightsTab(QWidget):
    """Signals: ``showRequested`` (the Show button or a control changed)."""

    showRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.circuit = QComboBox()
        for key, text in CIRCUITS:
            self.circuit.addItem(text, key)
        self.head = QComboBox()
        self.head.setToolTip("The head whose OV / QK circuit to show (also: click a head in the composition view)")
        self.tokens = QLineEdit()
        self.tokens.setPlaceholderText("tokens, comma-separated (e.g.  Mary, John, the)")
        self.tokens.setToolTip("Token axes: the tokens of the current pairs (if ticked) and these. On toy "
                               "models with neither, the whole vocabulary grouped by word class.")
        self.use_pairs = QCheckBox("tokens of the current pairs")
        self.mode = QComboBox()
        for m in ("k", "q", "v"):
            self.mode.addItem(f"{m.upper()}-composition", m)
        self.show_btn = QPushButton("Show")
        self.show_btn.clicked.connect(self.showRequested)
        for box in (self.circuit, self.head, self.mode):
            box.activated.connect(self.showRequested)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        bar = QHBoxLayout()
        for w in (self.circuit, self.head, self.tokens, self.use_pairs, self.mode, self.show_btn):
            bar.addWidget(w, 1 if w is self.tokens else 0)
        self.matrix = WeightsView()
        self.composition = WeightsView()
        self.composition.ranked.setMaximumWidth(260)  # leave the score heatmap room on small screens
        self.composition.ranked.horizontalHeader().setStretchLastSection(True)
        split = QSplitter()
        split.addWidget(self.matrix)
        split.addWidget(self.composition)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 1)
        lay = QVBoxLayout(self)
        lay.addLayout(bar)
        lay.addWidget(self.status)
        lay.addWidget(split, 1)

    def set_heads(self, n_layers: int, n_heads: int) -> None:
        current = self.head.currentData()
        self.head.clear()
        for layer in range(n_layers):
            for h in range(n_heads):
                self.head.addItem(f"L{layer}H{h}", (layer, h))
        i = self.head.findData(current)
        self.head.setCurrentIndex(max(i, 0))

    def select_head(self, layer: int, head: int) -> None:
        i = self.head.findData((layer, head))
        if i >= 0:
            self.head.setCurrentIndex(i)

    def token_list(self) -> list[str]:
        """The typed tokens; a leading space is kept (`` Mary``), empty items dropped."""
        return [t for t in (s.rstrip() for s in self.tokens.text().split(",")) if t.strip()]
