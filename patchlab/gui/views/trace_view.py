"""Passive views of the Trace analysis: effect bars, the receiver map and the neuron table.

They draw what they are given (numpy arrays and labels through setters) and report clicks
through signals; the presenter runs the jobs (``patchlab.engine.effects`` / ``paths`` /
``neurons``) and feeds them. Every figure carries a title naming sender, receiver, direction
and pairs, set by the caller.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

# Okabe-Ito, colour-blind safe: total, direct, indirect
EFFECT_COLOURS = ((0, 114, 178), (230, 159, 0), (0, 158, 115))
EFFECTS = ("total", "direct", "indirect")


def _finite_max(a: np.ndarray) -> float:
    f = np.abs(a[np.isfinite(a)])
    return float(f.max()) if f.size else 1.0


class EffectBars(QWidget):
    """Grouped bars: total / direct / indirect per component (``values`` shaped ``(3, n)``)."""

    componentClicked = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.values: np.ndarray | None = None
        self.labels: list[str] = []
        self.title = QLabel("Effects: run Trace on a head or MLP.")
        self.title.setWordWrap(True)
        self.plot = pg.PlotWidget()
        self.plot.setBackground(None)
        self.plot.showGrid(y=True, alpha=0.25)
        self.plot.addLegend(offset=(10, 10))
        self.plot.scene().sigMouseClicked.connect(self._on_click)
        self.bars: list[pg.BarGraphItem] = []
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.title)
        lay.addWidget(self.plot, 1)

    def set_effects(self, values: np.ndarray, labels: list[str], title: str = "", metric_label: str = "") -> None:
        """``values[0..2]`` = total, direct, indirect per component; ``labels`` name components."""
        values = np.asarray(values, dtype=float)
        if values.shape != (3, len(labels)):
            raise ValueError(f"effects must be (3, {len(labels)}), got {values.shape}")
        self.values, self.labels = values, list(labels)
        for item in self.bars:
            self.plot.removeItem(item)
        self.bars = []
        x = np.arange(len(labels), dtype=float)
        width = 0.27
        for k, (name, colour) in enumerate(zip(EFFECTS, EFFECT_COLOURS)):
            heights = np.nan_to_num(values[k])
            item = pg.BarGraphItem(x=x + (k - 1) * width, height=heights, width=width,
                                   brush=pg.mkBrush(*colour), pen=pg.mkPen(None), name=name)
            self.plot.addItem(item)
            self.bars.append(item)
        self.plot.getAxis("bottom").setTicks([list(zip(x, labels))])
        self.plot.getAxis("left").setLabel(metric_label)
        self.title.setText(title or "Total, direct and indirect effect per component")

    def index_at(self, x: float) -> int | None:
        """Component under scene-x coordinate ``x`` (view units), or None."""
        i = int(round(x))
        return i if 0 <= i < len(self.labels) else None

    @Slot(object)
    def _on_click(self, event) -> None:
        pos = self.plot.getPlotItem().vb.mapSceneToView(event.scenePos())
        i = self.index_at(pos.x())
        if i is not None:
            self.componentClicked.emit(self.labels[i])


class ReceiverMap(QWidget):
    """Heatmap of one sender's path effect into every receiver (``[layer, head]`` or ``[layer]``).

    NaN cells (receivers at or before the sender) are drawn blank.
    """

    receiverClicked = Signal(int, int)  # layer, head (-1 for an MLP receiver)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.values: np.ndarray | None = None
        self.layer_labels: list[str] = []
        self.head_labels: list[str] = []
        self.title = QLabel("Receivers: choose a sender.")
        self.title.setWordWrap(True)
        self.plot = pg.PlotWidget()
        self.plot.setBackground(None)
        self.plot.invertY(True)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setColorMap(pg.colormap.get("CET-D1"))
        self.image.mouseClickEvent = self._on_click
        self.plot.addItem(self.image)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.title)
        lay.addWidget(self.plot, 1)

    def set_receivers(self, values: np.ndarray, layer_labels: list[str], head_labels: list[str] | None = None,
                      title: str = "", centre: float = 0.0) -> None:
        """``values`` ``(n_layers, n_heads)`` or ``(n_layers,)``; colours centred on ``centre``
        (the metric's no-effect value)."""
        values = np.asarray(values, dtype=float)
        grid = values[:, None] if values.ndim == 1 else values
        self.values = grid
        self.layer_labels = list(layer_labels)
        self.head_labels = list(head_labels) if head_labels else ["MLP"]
        m = _finite_max(grid - centre) or 1.0
        self.image.setImage(np.where(np.isfinite(grid), grid, centre), levels=(centre - m, centre + m))
        self.plot.getAxis("left").setTicks([[(i + 0.5, lab) for i, lab in enumerate(self.layer_labels)]])
        self.plot.getAxis("bottom").setTicks([[(j + 0.5, lab) for j, lab in enumerate(self.head_labels)]])
        self.title.setText(title or "Path effect per receiver")

    def _on_click(self, event) -> None:
        p = event.pos()
        self.click_cell(int(p.y()), int(p.x()))

    def click_cell(self, row: int, col: int) -> None:
        """Report the receiver at ``(row, col)`` unless it is outside the map or NaN."""
        if self.values is None or not (0 <= row < self.values.shape[0] and 0 <= col < self.values.shape[1]):
            return
        if not np.isfinite(self.values[row, col]):
            return
        self.receiverClicked.emit(row, col if self.values.shape[1] > 1 or self.head_labels != ["MLP"] else -1)


class _NumItem(QTableWidgetItem):
    """Sorts by value (NaN last), shows 4 decimals."""

    def __init__(self, value: float) -> None:
        super().__init__("" if not np.isfinite(value) else f"{value:+.4f}")
        self.value = float(value) if np.isfinite(value) else float("inf")
        self.setData(Qt.UserRole, self.value)

    def __lt__(self, other: QTableWidgetItem) -> bool:
        if isinstance(other, _NumItem):
            return self.value < other.value
        return super().__lt__(other)


class NeuronTable(QWidget):
    """Sortable table of one MLP layer's neurons; double-click a row to patch that neuron alone."""

    COLUMNS = ("neuron", "DLA", "estimate", "exact", "promotes", "suppresses")
    neuronActivated = Signal(int, int)  # layer, neuron
    exportRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.layer = -1
        self.title = QLabel("Neurons: Trace an MLP layer.")
        self.title.setWordWrap(True)
        self.table = QTableWidget(0, len(self.COLUMNS))
        self.table.setHorizontalHeaderLabels(list(self.COLUMNS))
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSortingEnabled(True)
        self.table.cellDoubleClicked.connect(self._on_double_click)
        self.export = QPushButton("Export CSV…")
        self.export.clicked.connect(self.exportRequested)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.title)
        lay.addWidget(self.table, 1)
        lay.addWidget(self.export)

    def set_neurons(self, layer: int, neurons: list[int], dla: np.ndarray, estimate: np.ndarray,
                    exact: np.ndarray, tokens: dict[str, dict[str, list]] | None = None, title: str = "") -> None:
        """One row per index in ``neurons`` (arrays are indexed by neuron, shape ``(d_mlp,)``)."""
        self.layer = int(layer)
        tokens = tokens or {}
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(neurons))
        for r, n in enumerate(neurons):
            label = QTableWidgetItem(f"L{layer}N{n}")
            label.setData(Qt.UserRole, int(n))
            self.table.setItem(r, 0, label)
            for c, arr in enumerate((dla, estimate, exact), start=1):
                self.table.setItem(r, c, _NumItem(float(arr[n])))
            toks = tokens.get(str(n), {})
            for c, key in ((4, "promoted"), (5, "suppressed")):
                self.table.setItem(r, c, QTableWidgetItem(" ".join(str(t).strip() or repr(t) for t, _ in toks.get(key, []))))
        self.table.setSortingEnabled(True)
        self.title.setText(title or f"MLP {layer} neurons")

    def neuron_at(self, row: int) -> int:
        return int(self.table.item(row, 0).data(Qt.UserRole))

    @Slot(int, int)
    def _on_double_click(self, row: int, _col: int) -> None:
        self.neuronActivated.emit(self.layer, self.neuron_at(row))


class TraceView(QWidget):
    """The three Trace views stacked under a bar (sender, receiver kind, Trace, Cancel).

    Signals
    -------
    traceRequested()
        The Trace button: trace the selected cell's component.
    cancelRequested()
    receiverChosen(str)
        The receiver kind to show (``q``, ``k``, ``v``, ``mlp``).
    """

    traceRequested = Signal()
    cancelRequested = Signal()
    receiverChosen = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.sender = QLabel("Sender: select a head or MLP cell in the Patching heatmap.")
        self.trace_btn = QPushButton("Trace")
        self.trace_btn.setToolTip("Total / direct / indirect effects, the sender's receivers, and neurons of an MLP")
        self.trace_btn.clicked.connect(self.traceRequested)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.cancel_btn.clicked.connect(self.cancelRequested)
        self.receiver_box = QComboBox()
        self.receiver_box.setToolTip("Which later inputs to show: heads' queries, keys, values, or MLPs")
        self.receiver_box.activated.connect(self._on_receiver)
        self.status = QLabel("")
        bar = QHBoxLayout()
        bar.addWidget(self.sender, 1)
        bar.addWidget(QLabel("Receiver:"))
        bar.addWidget(self.receiver_box)
        bar.addWidget(self.trace_btn)
        bar.addWidget(self.cancel_btn)
        self.effects = EffectBars()
        self.receivers = ReceiverMap()
        self.neurons = NeuronTable()
        self.neuron_readout = QLabel("")
        self.neuron_readout.setWordWrap(True)
        self.neuron_readout.setVisible(False)
        lay = QVBoxLayout(self)
        lay.addLayout(bar)
        lay.addWidget(self.status)
        lay.addWidget(self.effects, 2)
        lay.addWidget(self.receivers, 2)
        lay.addWidget(self.neurons, 3)
        lay.addWidget(self.neuron_readout)

    def set_receiver_kinds(self, kinds: list[str], current: str) -> None:
        self.receiver_box.clear()
        for k in kinds:
            self.receiver_box.addItem(k, k)
        self.receiver_box.setCurrentIndex(max(0, kinds.index(current)) if current in kinds else 0)

    def set_running(self, running: bool, text: str = "") -> None:
        self.cancel_btn.setEnabled(running)
        self.status.setText(text)

    def show_neurons(self, visible: bool) -> None:
        self.neurons.setVisible(visible)
        self.neuron_readout.setVisible(visible and bool(self.neuron_readout.text()))

    @Slot(int)
    def _on_receiver(self, i: int) -> None:
        self.receiverChosen.emit(self.receiver_box.itemData(i))
