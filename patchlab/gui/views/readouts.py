"""Readouts: how the model does on the clean, corrupted and patched runs; attention patterns."""

from __future__ import annotations

import html

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QGridLayout, QGroupBox, QLabel, QVBoxLayout, QWidget

TITLES = {"clean": "Clean run", "corrupted": "Corrupted run", "patched": "Patched run"}


def readout_html(r: dict | None, answer: str = "", wrong: str = "", k: int = 5) -> str:
    """P(answer), P(wrong), logit difference and top-k tokens as a small HTML table."""
    if not r:
        return "<span style='color:gray'>\u2013</span>"
    if r.get("n_pairs", 1) > 1:  # a mean over pairs: each pair has its own answer tokens
        rows = [
            f"<tr><td>mean P(answer)</td><td align='right'><b>{r['answer_prob']:.3f}</b></td></tr>",
            f"<tr><td>mean P(wrong)</td><td align='right'>{r['wrong_prob']:.3f}</td></tr>",
            f"<tr><td>mean logit difference</td><td align='right'>{r['logit_diff']:+.3f}</td></tr>",
        ]
        return "<table cellspacing='0' cellpadding='1'>" + "".join(rows) + "</table>"
    rows = [
        f"<tr><td>P(answer {html.escape(repr(answer))})</td><td align='right'><b>{r['answer_prob']:.3f}</b></td></tr>",
        f"<tr><td>P(wrong {html.escape(repr(wrong))})</td><td align='right'>{r['wrong_prob']:.3f}</td></tr>",
        f"<tr><td>logit difference</td><td align='right'>{r['logit_diff']:+.3f}</td></tr>",
    ]
    top = r.get("top_k") or []
    if top:
        rows.append("<tr><td colspan='2' style='color:gray'>top next tokens</td></tr>")
        for tok, p in top[:k]:
            rows.append(f"<tr><td>&nbsp;&nbsp;{html.escape(repr(tok))}</td><td align='right'>{p:.3f}</td></tr>")
    return "<table cellspacing='0' cellpadding='1'>" + "".join(rows) + "</table>"


class ReadoutPanel(QWidget):
    """Clean and corrupted always visible; the selected cell's patched run; head patterns."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.labels: dict[str, QLabel] = {}
        self.boxes: dict[str, QGroupBox] = {}
        grid = QGridLayout()
        for col, key in enumerate(TITLES):
            box = QGroupBox(TITLES[key])
            label = QLabel()
            label.setTextFormat(Qt.RichText)
            label.setTextInteractionFlags(Qt.TextSelectableByMouse)
            label.setAlignment(Qt.AlignTop | Qt.AlignLeft)
            QVBoxLayout(box).addWidget(label)
            grid.addWidget(box, 0, col)
            self.labels[key], self.boxes[key] = label, box
        self.attention = pg.GraphicsLayoutWidget()
        self.attention.setBackground(None)
        self.attention.setMinimumHeight(240)
        self.att_title = self.attention.addLabel("Click a head cell to see its attention pattern",
                                                 row=0, col=0, colspan=2)
        self.att_plots = {}
        self.att_images = {}
        for col, which in enumerate(("clean", "corrupted")):
            plot = self.attention.addPlot(row=1, col=col, title=which)
            plot.invertY(True)
            plot.setMouseEnabled(x=False, y=False)
            plot.hideButtons()
            # the first column's label sticks out past the plot edge: keep it anyway
            plot.getAxis("bottom").setStyle(hideOverlappingLabels=False)
            img = pg.ImageItem(axisOrder="row-major")
            img.setColorMap(pg.colormap.get("CET-L17"))  # sequential: attention is in [0, 1]
            plot.addItem(img)
            self.att_plots[which], self.att_images[which] = plot, img
        self.attention.setVisible(False)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(grid)
        lay.addWidget(self.attention, 1)
        self.clear()

    def clear(self) -> None:
        for key in TITLES:
            self.labels[key].setText(readout_html(None))
        self.boxes["patched"].setTitle("Patched run (click a cell)")
        self.attention.setVisible(False)

    def title(self, key: str) -> str:
        """The title of readout ``key`` ("clean", "corrupted", "patched")."""
        return self.boxes[key].title()

    @property
    def attention_title(self) -> str:
        return self.att_title.text

    def set_runs_pending(self, scope: str) -> None:
        for key in ("clean", "corrupted"):
            self.boxes[key].setTitle(f"{TITLES[key]} \u00b7 {scope}")
            self.labels[key].setText("<span style='color:gray'>computing\u2026</span>")

    def set_runs(self, runs: dict, answer: str, wrong: str, scope: str = "") -> None:
        for key in ("clean", "corrupted"):
            self.boxes[key].setTitle(f"{TITLES[key]} \u00b7 {scope}" if scope else TITLES[key])
            self.labels[key].setText(readout_html(runs.get(key), answer, wrong))

    def set_runs_error(self, message: str, scope: str = "") -> None:
        """The clean/corrupted readout failed: say so instead of showing the last pair's."""
        for key in ("clean", "corrupted"):
            self.boxes[key].setTitle(f"{TITLES[key]} \u00b7 {scope}" if scope else TITLES[key])
            self.labels[key].setText(f"<span style='color:#b00020'>failed: {html.escape(message)}</span>")

    def set_patched(self, r: dict | None, cell: str, answer: str, wrong: str, scope: str = "") -> None:
        title = f"Patched run: {cell}" if cell else "Patched run (click a cell)"
        self.boxes["patched"].setTitle(f"{title} \u00b7 {scope}" if scope else title)
        self.labels["patched"].setText(readout_html(r, answer, wrong))

    def set_patched_pending(self, cell: str, scope: str = "") -> None:
        self.boxes["patched"].setTitle(f"Patched run: {cell}" + (f" \u00b7 {scope}" if scope else ""))
        self.labels["patched"].setText("<span style='color:gray'>computing\u2026</span>")

    def clear_attention(self) -> None:
        self.attention.setVisible(False)

    def set_attention_message(self, text: str) -> None:
        self.att_title.setText(text)
        for img in self.att_images.values():
            img.clear()
        self.attention.setVisible(True)

    def set_attention(self, layer: int, head: int, data: dict, scope: str = "") -> None:
        where = f" \u00b7 {scope}" if scope else ""
        self.att_title.setText(f"Attention pattern of head L{layer}H{head}{where} (rows: destination, "
                               "columns: source)")
        for which in ("clean", "corrupted"):
            pattern = np.asarray(data[which], dtype=np.float64)
            self.att_images[which].setImage(pattern, levels=(0.0, 1.0), autoLevels=False)
            toks = data.get(f"{which}_tokens", [])
            step = max(1, len(toks) // 12)  # fewer labels than rows keeps them readable
            ticks = [(i + 0.5, t) for i, t in enumerate(toks) if i % step == 0]
            plot = self.att_plots[which]
            plot.getAxis("left").setTicks([ticks])
            plot.getAxis("bottom").setTicks([ticks])
            plot.setRange(xRange=(0, pattern.shape[1]), yRange=(0, pattern.shape[0]), padding=0)
        self.attention.setVisible(True)
