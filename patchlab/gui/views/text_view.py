"""Text tab view: documents as coloured token spans (hover for the value), a ranked list of tokens
or top examples, and a histogram. Passive: data in through setters, picks out through signals."""

from __future__ import annotations

import html
import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QUrl, Signal, Slot
from PySide6.QtWidgets import (
    QLabel,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTextBrowser,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

from patchlab.core.text_result import TokenHit, TokenScores, TopExamples, span_colour

MAX_DOCS = 200  # documents rendered at once (the result keeps them all)


def _scale(rows) -> float:
    finite = [abs(v) for _, _, vals in rows for v in np.asarray(vals, float) if math.isfinite(v)]
    return float(np.percentile(finite, 99)) if finite else 1.0


class TextView(QWidget):
    """Shows a :class:`TokenScores` (loss, model difference, ablation drill-down, token ablation)
    or :class:`TopExamples`.

    Signals
    -------
    tokenHovered(doc, pos, value)
        The token under the mouse (``doc`` is the document's number in the corpus).
    tokenClicked(doc, pos)
        A token clicked in the text or picked in the ranked list.
    """

    tokenHovered = Signal(int, int, float)
    tokenClicked = Signal(int, int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._values: dict[tuple[int, int], tuple[str, float]] = {}
        self._hits: list[tuple[int, int]] = []
        self.title = QLabel("")
        self.title.setWordWrap(True)
        self.browser = QTextBrowser()
        self.browser.setOpenLinks(False)
        self.browser.highlighted.connect(self._on_highlighted)
        self.browser.anchorClicked.connect(self._on_anchor)
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["value", "doc", "pos", "context"])
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectRows)
        self.table.cellClicked.connect(self._on_row)
        self.hist = pg.PlotWidget()
        self.hist.setBackground(None)
        self.hist.setMaximumHeight(140)
        self.hist.setMenuEnabled(False)
        split = QSplitter()
        split.addWidget(self.browser)
        right = QSplitter()
        right.setOrientation(Qt.Vertical)
        right.addWidget(self.table)
        right.addWidget(self.hist)
        split.addWidget(right)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(split, 1)  # the text and tables take the height, not the title

    # -- setters ---------------------------------------------------------------------
    def set_scores(self, res: TokenScores, top: int = 50, largest: bool = True) -> None:
        """Render the documents, the ``top`` tokens and the histogram of ``res``."""
        rows = [(d.index, d.tokens, d.values) for d in res.docs[:MAX_DOCS]]
        note = f" (first {MAX_DOCS} of {len(res.docs)} documents shown)" if len(res.docs) > MAX_DOCS else ""
        self.title.setText(f"{res.value_label}{note}")
        self._render(rows, focus=None)
        self.set_hits(res.top(top, largest=largest))
        counts, edges = res.histogram(40)
        self.set_histogram(counts, edges)

    def set_top_examples(self, res: TopExamples) -> None:
        """Render each top example's context (its token outlined) and list them."""
        self.title.setText(f"top {len(res.examples)} positions of {res.meta.get('unit', '')} ({res.value_label})")
        rows = [(e.doc, e.tokens, e.values) for e in res.examples]
        starts = [e.pos - e.focus for e in res.examples]
        self._render(rows, focus=[e.focus for e in res.examples], offsets=starts)
        self.set_hits([TokenHit(e.value, e.doc, e.pos, e.token, e.tokens[:e.focus], e.tokens[e.focus + 1:], e.line)
                       for e in res.examples])
        self.set_histogram(*np.histogram([e.value for e in res.examples] or [0.0], bins=10))

    def set_hits(self, hits: list[TokenHit]) -> None:
        """Fill the ranked list (largest first)."""
        self._hits = [(h.doc, h.pos) for h in hits]
        self.table.setRowCount(len(hits))
        for r, h in enumerate(hits):
            for c, text in enumerate((f"{h.value:+.4g}", str(h.doc), str(h.pos), h.context)):
                self.table.setItem(r, c, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()

    def set_histogram(self, counts, edges) -> None:
        self.hist.clear()
        edges = np.asarray(edges, float)
        if len(edges) > 1:
            self.hist.addItem(pg.BarGraphItem(x0=edges[:-1], x1=edges[1:], height=np.asarray(counts, float),
                                              brush=(120, 120, 200)))

    # -- rendering -------------------------------------------------------------------
    def _render(self, rows, focus, offsets=None) -> None:
        scale = _scale(rows)
        self._values = {}
        parts = []
        for r, (doc, tokens, values) in enumerate(rows):
            off = offsets[r] if offsets else 0
            spans = []
            for i, (t, v) in enumerate(zip(tokens, np.asarray(values, float))):
                pos = off + i
                self._values[(doc, pos)] = (t, float(v))
                border = "border:2px solid black;" if focus is not None and focus[r] == i else ""
                spans.append(f"<a href='tok:{doc}:{pos}' style='color:black;text-decoration:none'>"
                             f"<span style='background:{span_colour(float(v), scale)};{border}'>"
                             f"{html.escape(t)}</span></a>")
            sep = " " if tokens and not any(t[:1].isspace() for t in tokens[1:]) else ""
            parts.append(f"<p><b>doc {doc}</b><br>{sep.join(spans)}</p>")
        self.browser.setHtml("".join(parts))

    def token_value(self, doc: int, pos: int) -> float:
        return self._values.get((doc, pos), ("", float("nan")))[1]

    # -- slots -----------------------------------------------------------------------
    @staticmethod
    def _parse(url: QUrl) -> tuple[int, int] | None:
        s = url.toString()
        if not s.startswith("tok:"):
            return None
        _, doc, pos = s.split(":")
        return int(doc), int(pos)

    @Slot(QUrl)
    def _on_highlighted(self, url: QUrl) -> None:
        key = self._parse(url)
        if key is None:
            QToolTip.hideText()
            return
        token, value = self._values.get(key, ("", float("nan")))
        QToolTip.showText(self.cursor().pos(), f"{token!r} doc {key[0]} pos {key[1]}: {value:+.4g}", self.browser)
        self.tokenHovered.emit(key[0], key[1], value)

    @Slot(QUrl)
    def _on_anchor(self, url: QUrl) -> None:
        key = self._parse(url)
        if key is not None:
            self.tokenClicked.emit(*key)

    @Slot(int, int)
    def _on_row(self, row: int, col: int) -> None:
        if 0 <= row < len(self._hits):
            self.tokenClicked.emit(*self._hits[row])
