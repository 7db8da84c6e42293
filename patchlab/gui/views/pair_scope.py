"""The switch "all pairs (mean) | one pair" with its pair selector (a passive view)."""

from __future__ import annotations

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSpinBox, QWidget

MODES = (("all", "All pairs (mean)"), ("one", "One pair"))


class PairScopeBar(QWidget):
    """Shows and edits which pairs the panels show; the state decides (see ``AppState``).

    Signals
    -------
    modeChanged(str)
        ``"all"`` or ``"one"`` picked by the user.
    indexChanged(int)
        A pair (0-based) picked by the user.
    """

    modeChanged = Signal(str)
    indexChanged = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.mode = QComboBox()
        for key, text in MODES:
            self.mode.addItem(text, key)
        self.mode.setToolTip("What every panel shows: the mean over the pairs or one pair")
        self.pair = QSpinBox()
        self.pair.setMinimum(1)
        self.pair.setToolTip("The pair shown in 'One pair' mode (also the one the editor shows)")
        self.of = QLabel("of 1")
        self.summary = QLabel("")
        label = QLabel("&Show:")
        label.setBuddy(self.mode)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(label)
        lay.addWidget(self.mode)
        lay.addWidget(QLabel("pair"))
        lay.addWidget(self.pair)
        lay.addWidget(self.of)
        lay.addSpacing(12)
        lay.addWidget(self.summary, 1)
        self.mode.currentIndexChanged.connect(self._on_mode)
        self.pair.valueChanged.connect(self._on_pair)

    def set_scope(self, mode: str, index: int, n_pairs: int, text: str) -> None:
        """Show the state's choice (emits nothing)."""
        for w in (self.mode, self.pair):
            w.blockSignals(True)
        self.mode.setCurrentIndex(max(0, self.mode.findData(mode)))
        self.pair.setMaximum(max(1, n_pairs))
        self.pair.setValue(index + 1)
        for w in (self.mode, self.pair):
            w.blockSignals(False)
        self.of.setText(f"of {n_pairs}")
        self.summary.setText(f"<b>Panels show: {text}</b>")

    @Slot(int)
    def _on_mode(self, _i: int) -> None:
        self.modeChanged.emit(self.mode.currentData())

    @Slot(int)
    def _on_pair(self, value: int) -> None:
        self.indexChanged.emit(value - 1)
