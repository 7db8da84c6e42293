"""Model picker: embedded models with their cards, recent models, Open model..., device, dtype."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

OPEN_ITEM = "__open__"
MAX_RECENT = 8


class ModelPanel(QWidget):
    """Emits :attr:`loadRequested` (name, device, dtype, processing); never loads itself."""

    loadRequested = Signal(str, str, str, str)

    def __init__(self, cards: list[dict], devices: list[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._cards = {c["name"]: c for c in cards}
        self._recent: list[str] = []
        self.picker = QComboBox()
        self.picker.setMinimumContentsLength(14)
        self.picker.activated.connect(self._on_activated)
        self.device = QComboBox()
        for d in ["auto", *devices]:
            self.device.addItem(d)
        self.dtype = QComboBox()
        self.dtype.addItems(["float32", "bfloat16", "float16"])
        self.processing = QComboBox()
        self.processing.addItem("compat", "compat")
        self.processing.addItem("raw", "raw")
        self.processing.setToolTip("compat: TransformerLens processing (folded LayerNorm, centred "
                                   "weights); changes direct logit attribution, not patching")
        self.load_btn = QPushButton("Load")
        self.load_btn.clicked.connect(self._on_load)
        self.card_btn = QPushButton("Card")
        self.card_btn.setToolTip("Show the model card of an embedded model")
        self.card_btn.clicked.connect(self._on_card)
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)  # indeterminate: a busy indicator
        self.busy.setMaximumHeight(8)
        self.busy.setTextVisible(False)
        self.busy.setVisible(False)
        self.status = QLabel("No model loaded")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextSelectableByMouse)

        row1 = QHBoxLayout()
        row1.addWidget(self.picker, 1)
        row1.addWidget(self.card_btn)
        row2 = QHBoxLayout()
        for label, w in (("De&vice", self.device), ("dt&ype", self.dtype), ("", self.processing)):
            if label:
                buddy = QLabel(label)  # mnemonic + buddy (keyboard reach)
                buddy.setBuddy(w)
                row2.addWidget(buddy)
                w.setAccessibleName(label.replace("&", ""))
            row2.addWidget(w)
        self.processing.setAccessibleName("processing")
        self.picker.setAccessibleName("model")
        row2.addWidget(self.load_btn)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(row1)
        lay.addLayout(row2)
        lay.addWidget(self.busy)
        lay.addWidget(self.status)
        self._fill()

    # -- picker contents --------------------------------------------------------------------
    def set_recent(self, recent: list[str]) -> None:
        self._recent = [r for r in recent if r and r not in self._cards][:MAX_RECENT]
        self._fill()

    def recent(self) -> list[str]:
        return list(self._recent)

    def add_recent(self, name: str) -> None:
        if name in self._cards:
            return
        self._recent = [name] + [r for r in self._recent if r != name][: MAX_RECENT - 1]
        self._fill(name)

    def _fill(self, select: str | None = None) -> None:
        current = select or self.picker.currentData()
        self.picker.blockSignals(True)
        self.picker.clear()
        for name, card in self._cards.items():
            self.picker.addItem(f"{name} (embedded)", name)
            self.picker.setItemData(self.picker.count() - 1, card.get("description", ""),
                                    Qt.ToolTipRole)
        for name in self._recent:
            self.picker.addItem(name, name)
        self.picker.addItem("Open model\u2026", OPEN_ITEM)
        i = self.picker.findData(current)
        self.picker.setCurrentIndex(max(0, i))
        self.picker.blockSignals(False)
        self.card_btn.setEnabled(self.picker.currentData() in self._cards)

    def select(self, name: str) -> None:
        if self.picker.findData(name) < 0:
            self.add_recent(name)
        self.picker.setCurrentIndex(max(0, self.picker.findData(name)))
        self.card_btn.setEnabled(name in self._cards)

    def current_name(self) -> str:
        data = self.picker.currentData()
        return "" if data in (None, OPEN_ITEM) else data

    # -- state shown ------------------------------------------------------------------------
    def set_busy(self, busy: bool, text: str = "") -> None:
        self.busy.setVisible(busy)
        self.load_btn.setEnabled(not busy)
        if text:
            self.status.setText(text)

    def request(self, name: str) -> None:
        self.loadRequested.emit(name, self.device.currentText(), self.dtype.currentText(),
                                self.processing.currentData())

    # -- slots ------------------------------------------------------------------------------
    @Slot(int)
    def _on_activated(self, _i: int) -> None:
        if self.picker.currentData() == OPEN_ITEM:
            self.open_model_dialog()
        self.card_btn.setEnabled(self.picker.currentData() in self._cards)

    @Slot()
    def _on_load(self) -> None:
        name = self.current_name()
        if name:
            self.request(name)

    def open_model_dialog(self) -> None:
        box = QMessageBox(self)
        box.setWindowTitle("Open model")
        box.setText("Open a Hugging Face Hub model id (uses your cache; downloads need network) "
                    "or a local folder in Hugging Face format?")
        hub = box.addButton("Hub model id\u2026", QMessageBox.AcceptRole)
        folder = box.addButton("Local folder\u2026", QMessageBox.AcceptRole)
        box.addButton(QMessageBox.Cancel)
        box.exec()
        name = ""
        if box.clickedButton() is hub:
            name, ok = QInputDialog.getText(self, "Hub model id", "Model id (e.g. gpt2):")
            name = name.strip() if ok else ""
        elif box.clickedButton() is folder:
            name = QFileDialog.getExistingDirectory(self, "Model folder (with config.json)")
        if name:
            self.add_recent(name)
            self.request(name)
        else:
            self._fill()

    @Slot()
    def _on_card(self) -> None:
        from patchlab.engine.embedded import format_card

        card = self._cards.get(self.picker.currentData())
        if card is None:
            return
        box = QMessageBox(self)
        box.setWindowTitle(f"Model card: {card['name']}")
        box.setText(f"<pre>{html.escape(format_card(card))}</pre>")
        box.exec()
