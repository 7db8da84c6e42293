"""The Text tab: where the text comes from, which analysis, its options, progress and exports,
over a :class:`TextView` and a component table (ablation). Passive: the presenter reads it."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from patchlab.gui.views.text_view import TextView

SOURCES = (("toy", "Sampled toy documents"), ("paste", "Pasted text"), ("file", "Text file (.txt / .jsonl)"))
ANALYSES = (("losses", "Token losses"), ("compare", "Compare with model B"), ("ablate", "Head / MLP ablation"),
            ("token", "Token ablation"), ("top", "Top examples"))


def _combo(items) -> QComboBox:
    box = QComboBox()
    for key, text in items:
        box.addItem(text, key)
    return box


class TextTab(QWidget):
    """Signals: ``runRequested``, ``cancelRequested``, ``exportRequested(fmt)`` (csv/json/html),
    ``componentPicked(label)`` (a row of the ablation table)."""

    runRequested = Signal()
    cancelRequested = Signal()
    exportRequested = Signal(str)
    componentPicked = Signal(str)

    def __init__(self, models_b: list[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.source = _combo(SOURCES)
        self.n_docs = QSpinBox()
        self.n_docs.setRange(1, 100000)
        self.n_docs.setValue(50)
        self.n_docs.setToolTip("How many toy documents to sample")
        self.path = QLineEdit()
        self.path.setPlaceholderText("path to a .txt (one document per line) or .jsonl file")
        browse = QPushButton("Browse\u2026")
        browse.clicked.connect(self._browse)
        self.paste = QPlainTextEdit()
        self.paste.setPlaceholderText("Paste text here (one document)")
        self.paste.setMaximumHeight(56)
        src_pages = QStackedWidget()
        toy_w = QWidget()
        tw = QHBoxLayout(toy_w)
        tw.setContentsMargins(0, 0, 0, 0)
        tw.addWidget(QLabel("documents:"))
        tw.addWidget(self.n_docs)
        tw.addStretch(1)
        file_w = QWidget()
        fl = QHBoxLayout(file_w)
        fl.setContentsMargins(0, 0, 0, 0)
        fl.addWidget(self.path, 1)
        fl.addWidget(browse)
        for w in (toy_w, self.paste, file_w):
            src_pages.addWidget(w)
        self.source.currentIndexChanged.connect(src_pages.setCurrentIndex)
        src_pages.setMaximumHeight(56)

        self.analysis = _combo(ANALYSES)
        self.model_b = QComboBox()
        self.model_b.addItems(models_b)
        self.model_b.setToolTip("Model B (loaded on the worker); tokens where B beats the loaded model rank first")
        self.components = _combo((("heads", "heads"), ("mlps", "MLPs"), ("all", "heads and MLPs")))
        self.method = _combo((("mean", "mean"), ("zero", "zero"), ("resample", "resample")))
        self.position = QSpinBox()
        self.position.setRange(-10000, 10000)
        self.position.setValue(-1)
        self.position.setToolTip("Token position in the first document (BOS = 0; -1 = last)")
        self.target = QLineEdit("logprob: ")
        self.target.setToolTip("logprob: TOKEN, logit: TOKEN, head: L1H3 or neuron: L0N12")
        self.unit = QLineEdit("L1H3")
        self.unit.setToolTip("A head (L1H3) or a neuron (L0N12)")
        opts = QStackedWidget()
        pages = [QLabel(""), self.model_b, None, None, self.unit]
        abl = QWidget()
        al = QHBoxLayout(abl)
        al.setContentsMargins(0, 0, 0, 0)
        al.addWidget(self.components)
        al.addWidget(self.method)
        tok = QWidget()
        tl = QHBoxLayout(tok)
        tl.setContentsMargins(0, 0, 0, 0)
        tl.addWidget(QLabel("position"))
        tl.addWidget(self.position)
        tl.addWidget(self.target, 1)
        pages[2], pages[3] = abl, tok
        for w in pages:
            opts.addWidget(w)
        self.analysis.currentIndexChanged.connect(opts.setCurrentIndex)
        opts.setMaximumHeight(34)

        self.run_btn = QPushButton("Run")
        self.run_btn.clicked.connect(self.runRequested)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.cancel_btn.clicked.connect(self.cancelRequested)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        exports = QHBoxLayout()
        for fmt in ("csv", "json", "html"):
            b = QPushButton(f"Export {fmt.upper()}\u2026")
            b.clicked.connect(lambda _=False, f=fmt: self.exportRequested.emit(f))
            exports.addWidget(b)
        exports.addStretch(1)

        top = QHBoxLayout()
        top.addWidget(self.source)
        top.addWidget(src_pages, 1)
        row2 = QHBoxLayout()
        row2.addWidget(self.analysis)
        row2.addWidget(opts, 1)
        row2.addWidget(self.run_btn)
        row2.addWidget(self.cancel_btn)
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["component", "loss change", "CI low", "CI high"])
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectRows)
        self.table.cellClicked.connect(lambda r, _c: self.componentPicked.emit(self.table.item(r, 0).text()))
        self.table.setVisible(False)
        self.view = TextView()
        body = QSplitter()
        body.addWidget(self.table)
        body.addWidget(self.view)
        body.setStretchFactor(1, 3)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addLayout(row2)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        lay.addWidget(body, 1)
        lay.addLayout(exports)

    def set_running(self, running: bool, text: str = "") -> None:
        self.run_btn.setEnabled(not running)
        self.cancel_btn.setEnabled(running)
        if text:
            self.status.setText(text)

    def set_components(self, ranked: list[tuple[str, float, float, float]] | None) -> None:
        """The ablation table (component, mean change, CI); None hides it."""
        self.table.setVisible(ranked is not None)
        ranked = ranked or []
        self.table.setRowCount(len(ranked))
        for r, row in enumerate(ranked):
            for c, v in enumerate(row):
                self.table.setItem(r, c, QTableWidgetItem(v if c == 0 else f"{v:+.4f}"))

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Text file", "", "Text (*.txt *.jsonl *.md)")
        if path:
            self.path.setText(path)
