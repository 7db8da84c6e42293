"""Decompose tab: logit lens, per-component and per-head direct logit attribution."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from patchlab.gui.views.heatmap import CMAPS

COLOURS = {"clean": (0, 114, 178), "corrupted": (213, 94, 0)}  # Okabe-Ito: colour-blind safe


class DecomposeView(QWidget):
    """Draws a :class:`~patchlab.core.decomposition.DecomposeResult`."""

    runRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.result = None
        self.run_btn = QPushButton("Decompose current pair")
        self.run_btn.clicked.connect(self.runRequested)
        self.head_run = QComboBox()
        self.head_run.addItem("Per-head attribution: clean run", 0)
        self.head_run.addItem("Per-head attribution: corrupted run", 1)
        self.head_run.addItem("Per-head attribution: clean \u2212 corrupted", 2)
        self.head_run.currentIndexChanged.connect(self._on_head_run)
        self.note = QLabel("Press \u201cDecompose current pair\u201d (or open this tab with a "
                           "model loaded) to see the logit lens and direct logit attribution.")
        self.note.setWordWrap(True)
        self.stale = ""
        bar = QHBoxLayout()
        bar.addWidget(self.run_btn)
        bar.addWidget(self.head_run)
        bar.addStretch(1)
        bar.addWidget(self.note)

        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground(None)
        self.title_item = self.graphics.addLabel("", row=0, col=0, colspan=3, size="11pt")
        self.lens = self.graphics.addPlot(row=1, col=0, title="Logit lens: logit difference of the accumulated residual")
        self.lens.addLegend(offset=(10, 10))
        self.lens.showGrid(y=True, alpha=0.3)
        self.bars = self.graphics.addPlot(row=2, col=0, colspan=3, title=(
            "Direct logit attribution per component (blue: clean, orange: corrupted)"))
        self.bars.showGrid(y=True, alpha=0.3)
        self.heads = self.graphics.addPlot(row=1, col=1, title="Direct logit attribution per head")
        self.heads.invertY(True)
        self.heads.setMouseEnabled(x=False, y=False)
        self.head_img = pg.ImageItem(axisOrder="row-major")
        self.heads.addItem(self.head_img)
        self.head_bar = pg.ColorBarItem(values=(-1, 1), colorMap=CMAPS[False], interactive=False,
                                        width=15, label="logit difference")
        self.head_bar.setImageItem(self.head_img)
        self.graphics.addItem(self.head_bar, row=1, col=2)
        self.head_bar.axis.enableAutoSIPrefix(False)
        for p in (self.lens, self.bars, self.heads):
            p.hideButtons()
            p.setMenuEnabled(False)
            p.getAxis("left").enableAutoSIPrefix(False)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(bar)
        lay.addWidget(self.graphics, 1)

    def set_stale(self, reason: str) -> None:
        """Dim the plots when the pairs changed since the decomposition (``""``: current)."""
        if reason == self.stale:
            return
        self.stale = reason
        for item in (self.lens, self.bars, self.heads):
            item.setOpacity(0.35 if reason else 1.0)
        if reason:
            self.note.setText(f"<b>inputs changed: run again</b> ({reason} changed since this decomposition)")

    def set_colour_blind(self, on: bool) -> None:
        self.head_bar.setColorMap(CMAPS[on])

    def set_result(self, result, title: str = "") -> None:
        self.result = result
        self.title_item.setText(title)
        self.lens.clear()
        x = np.arange(len(result.lens_labels))
        for r, run in enumerate(("clean", "corrupted")):
            self.lens.plot(x, result.logit_lens[r], pen=pg.mkPen(COLOURS[run], width=2),
                           symbol="o", symbolSize=5, symbolBrush=COLOURS[run], name=run)
        step = max(1, len(x) // 12)
        self.lens.getAxis("bottom").setTicks([[(i, result.lens_labels[i]) for i in range(0, len(x), step)]])
        self.lens.setLabel("left", "logit difference")
        self.lens.setXRange(-0.5, len(x) - 0.5, padding=0)

        self.bars.clear()
        n = len(result.component_labels)
        xs = np.arange(n)
        for r, run in enumerate(("clean", "corrupted")):
            self.bars.addItem(pg.BarGraphItem(x=xs + (r - 0.5) * 0.4, height=result.components[r],
                                              width=0.4, brush=COLOURS[run], name=run))
        step = max(1, n // 14)
        self.bars.getAxis("bottom").setTicks([[(i, lab) for i, lab in enumerate(result.component_labels)
                                               if i % step == 0 or i == n - 1]])
        self.bars.setLabel("left", "logit difference")
        self.note.setText(f"clean total {result.total[0]:+.3f}, corrupted total {result.total[1]:+.3f}")
        self._draw_heads()

    @Slot(int)
    def _on_head_run(self, _i: int) -> None:
        if self.result is not None:
            self._draw_heads()

    def _draw_heads(self) -> None:
        sel = self.head_run.currentData()
        heads = self.result.heads
        data = heads[0] - heads[1] if sel == 2 else heads[sel]
        finite = np.abs(data[np.isfinite(data)])
        m = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
        self.head_img.setImage(np.ascontiguousarray(data, dtype=np.float64), autoLevels=False, levels=(-m, m))
        self.head_bar.setLevels((-m, m))
        n_layers, n_heads = data.shape
        self.heads.getAxis("left").setTicks([[(i + 0.5, f"L{i}") for i in range(n_layers)]])
        self.heads.getAxis("bottom").setTicks([[(h + 0.5, f"H{h}") for h in range(n_heads)]])
        self.heads.setRange(xRange=(0, n_heads), yRange=(0, n_layers), padding=0)
