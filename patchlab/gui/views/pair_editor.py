"""Prompt pair editor: several pairs, token strip, inline validation, suggestions, examples."""

from __future__ import annotations

import dataclasses
import html

from PySide6.QtCore import QModelIndex, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMenu,
    QPushButton,
    QScrollArea,
    QTableView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from patchlab.core.pairs import PromptPair
from patchlab.gui.views.pairs_table import PairsTableModel, fit_columns, list_text  # noqa: F401 - re-exported

EMPTY = PromptPair("", "", "", "")


def _tok(t: str) -> str:
    """Token text made visible: spaces as a middle dot, newlines as an arrow."""
    return html.escape(t.replace(" ", "\u00b7").replace("\n", "\u21b5")) or "&nbsp;"


#: The unknown-word token of word-level vocabularies (the toy models); BPE vocabularies
#: never produce it, so the flag below only shows where a vocabulary has one.
UNK_TOKEN = "<unk>"


def token_strip_html(clean: list[str], corrupted: list[str], unk: str = UNK_TOKEN) -> str:
    """Both tokenisations aligned by position; differing positions highlighted, and
    unknown words (``unk``) flagged in red with a note above the strip."""
    n = max(len(clean), len(corrupted))
    n_unk = sum(t == unk for t in clean) + sum(t == unk for t in corrupted)
    rows = []
    if n_unk:
        rows.append(f"<div style='color:#c0392b'><b>{n_unk} unknown word(s)</b>: not in the model's "
                    f"vocabulary, read as {html.escape(unk)} (red). Use words the model knows.</div>")
    rows.append("<table cellspacing='0' cellpadding='3' style='border-collapse:collapse'>")
    head = "".join(f"<td align='center' style='color:gray'>{i}</td>" for i in range(n))
    rows.append(f"<tr><td></td>{head}</tr>")
    for name, toks in (("clean", clean), ("corrupted", corrupted)):
        cells = []
        for i in range(n):
            a = clean[i] if i < len(clean) else None
            b = corrupted[i] if i < len(corrupted) else None
            t = toks[i] if i < len(toks) else ""
            style = "background-color:#f6c343;color:black;" if a != b else ""
            if t == unk:
                style = "background-color:#e74c3c;color:white;"
            cells.append(f"<td align='center' style='{style}border:1px solid #999'>{_tok(t)}</td>")
        rows.append(f"<tr><td style='color:gray'>{name}&nbsp;</td>{''.join(cells)}</tr>")
    rows.append("</table>")
    return "".join(rows)


class PairEditor(QWidget):
    """Edits a list of :class:`PromptPair`; validation comes from outside (it needs a model).

    Signals
    -------
    pairsChanged()
        Any text changed or a pair was added/removed (debounced).
    suggestRequested(prompt)
        The user asked for answer suggestions for the clean prompt.
    currentChanged(index)
        The user picked another pair (0-based).
    """

    pairsChanged = Signal()
    suggestRequested = Signal(str)
    currentChanged = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._pairs: list[PromptPair] = [EMPTY]
        self._shown = 0
        self._examples: list = []
        self.table_model = PairsTableModel(self)
        self.table = QTableView()
        self.table.setModel(self.table_model)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.AscendingOrder)
        self.table.setSelectionBehavior(QTableView.SelectRows)
        self.table.setSelectionMode(QTableView.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(20)  # fixed row height: no per-row sizing
        fit_columns(self.table)  # short columns, the prompt stretched, "name" hidden (header menu)
        self.table.setMinimumHeight(130)
        self.table.selectionModel().currentRowChanged.connect(self._on_current_row)
        self.only_right = QCheckBox("Only pairs the model gets right")
        self.only_right.setToolTip("Hide pairs whose clean prompt's top next token is not the answer")
        self.only_right.toggled.connect(self.table_model.set_only_right)
        self.add_btn = QPushButton("Add pair")
        self.add_btn.clicked.connect(self._on_add)
        self.remove_btn = QPushButton("Remove")
        self.remove_btn.clicked.connect(self._on_remove)
        self.examples_btn = QToolButton()
        self.examples_btn.setText("Examples")
        self.examples_btn.setPopupMode(QToolButton.InstantPopup)
        self.examples_menu = QMenu(self)
        self.examples_btn.setMenu(self.examples_menu)
        self.examples_menu.triggered.connect(self._on_example)

        self.clean = QLineEdit()
        self.clean.setPlaceholderText("Prompt the model should solve")
        self.corrupted = QLineEdit()
        self.corrupted.setPlaceholderText("Same prompt with one fact changed")
        self.answer = QComboBox()
        self.answer.setEditable(True)
        self.answer.setToolTip("Correct next token for the clean prompt (mind the leading space)")
        self.wrong = QComboBox()
        self.wrong.setEditable(True)
        self.wrong.setToolTip("Competing token, usually the corrupted prompt's answer")
        self.suggest_btn = QPushButton("Suggest")
        self.suggest_btn.setToolTip("Fill the answer lists with the model's top next tokens")
        self.suggest_btn.clicked.connect(self._on_suggest)

        self.unknown_words = 0  # <unk> tokens in the strip shown
        self.strip = QLabel()
        self.strip.setTextFormat(Qt.RichText)
        scroll = QScrollArea()
        scroll.setWidget(self.strip)
        scroll.setWidgetResizable(True)
        scroll.setMinimumHeight(105)
        scroll.setMaximumHeight(120)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextSelectableByMouse)

        below = QHBoxLayout()  # the buttons under the table: its columns get the panel's full width
        below.addWidget(self.only_right, 1)
        for button in (self.add_btn, self.remove_btn, self.examples_btn):
            below.addWidget(button)
        answers = QHBoxLayout()
        answers.addWidget(self.answer, 1)
        wrong_label = QLabel("vs &wrong")  # mnemonic + buddy: Alt+W reaches the field
        wrong_label.setBuddy(self.wrong)
        answers.addWidget(wrong_label)
        answers.addWidget(self.wrong, 1)
        answers.addWidget(self.suggest_btn)
        form = QFormLayout()
        form.addRow("&Clean", self.clean)  # addRow(text, widget) makes the label's buddy
        form.addRow("Corr&upted", self.corrupted)
        answer_label = QLabel("&Answer")
        answer_label.setBuddy(self.answer)
        form.addRow(answer_label, answers)
        for widget, name in ((self.clean, "clean prompt"), (self.corrupted, "corrupted prompt"),
                             (self.answer, "answer token"), (self.wrong, "wrong answer token")):
            widget.setAccessibleName(name)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.table, 1)
        lay.addLayout(below)
        lay.addLayout(form)
        lay.addWidget(scroll)
        lay.addWidget(self.message)

        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(250)
        self._debounce.timeout.connect(self._emit_changed)
        for edit in (self.clean, self.corrupted):
            edit.textEdited.connect(self._on_edited)
        for box in (self.answer, self.wrong):
            box.editTextChanged.connect(self._on_edited)
        self._refresh_list()
        self._show(0)

    # -- pairs ----------------------------------------------------------------------------
    def pairs(self) -> list[PromptPair]:
        self._store()
        return list(self._pairs)

    def current_index(self) -> int:
        return self._shown

    def current_pair(self) -> PromptPair:
        return self.pairs()[self.current_index()]

    def set_pairs(self, pairs: list[PromptPair], current: int = 0) -> None:
        self._pairs = list(pairs) or [EMPTY]
        self._refresh_list(current)
        self._show(self.current_index())
        self._emit_changed()

    def set_current(self, index: int) -> None:
        """Show pair ``index`` (emits nothing: the caller already knows)."""
        if index == self.current_index() or not 0 <= index < len(self._pairs):
            return
        self._store()
        self._select_row(index)
        self._show(index)

    def set_current_pair(self, pair: PromptPair) -> None:
        """Replace the shown pair's texts (as typing would) and report the change."""
        self._pairs[self.current_index()] = pair
        self._show(self.current_index())
        self.commit()

    def add_pair(self) -> None:
        """Append a copy of the shown pair and show it."""
        self._on_add()

    def has_examples(self) -> bool:
        return bool(self._examples)

    def set_examples(self, examples: list) -> None:
        """Fill the examples menu (objects with name, rule, description, pair)."""
        self._examples = list(examples)
        self.examples_menu.clear()
        for i, ex in enumerate(self._examples):
            act = QAction(f"{ex.name} ({ex.rule})", self.examples_menu)
            act.setToolTip(ex.description)
            act.setData(i)
            self.examples_menu.addAction(act)
        self.examples_btn.setEnabled(bool(self._examples))

    def load_example(self, i: int) -> None:
        """Put example ``i`` into the current pair."""
        self._pairs[self.current_index()] = self._examples[i].pair
        self._refresh_list(self.current_index())
        self._show(self.current_index())
        self._emit_changed()

    # -- validation display (the main window supplies it) ---------------------------------
    def show_tokens(self, clean: list[str], corrupted: list[str]) -> None:
        self.unknown_words = sum(t == UNK_TOKEN for t in (*clean, *corrupted))
        self.strip.setText(token_strip_html(clean, corrupted))

    def show_message(self, text: str, error: bool = True) -> None:
        colour = "#c0392b" if error else "#2e7d32"
        self.message.setText(f"<span style='color:{colour}'>{html.escape(text)}</span>" if text else "")

    def set_suggestions(self, tokens: list[tuple[str, float]]) -> None:
        for box in (self.answer, self.wrong):
            text = box.currentText()
            box.blockSignals(True)
            box.clear()
            for tok, p in tokens:
                box.addItem(tok)
                box.setItemData(box.count() - 1, f"P = {p:.3f}", Qt.ToolTipRole)
            box.setEditText(text)
            box.blockSignals(False)

    # -- internals ------------------------------------------------------------------------
    def _read(self) -> PromptPair:
        """The widgets' texts over the shown pair (its name and group are kept)."""
        old = self._pairs[self._shown] if 0 <= self._shown < len(self._pairs) else EMPTY
        return dataclasses.replace(old, clean=self.clean.text(), corrupted=self.corrupted.text(),
                                   answer=self.answer.currentText(), wrong=self.wrong.currentText())

    def _store(self) -> None:
        i = self._shown  # the pair the widgets hold (the list may already show another row)
        if 0 <= i < len(self._pairs):
            self._pairs[i] = self._read()

    def _show(self, i: int) -> None:
        self._shown = i
        p = self._pairs[i]
        self.clean.setText(p.clean)
        self.corrupted.setText(p.corrupted)
        for box, text in ((self.answer, p.answer), (self.wrong, p.wrong)):
            box.blockSignals(True)
            box.setEditText(text)
            box.blockSignals(False)

    def _refresh_list(self, current: int = 0) -> None:
        self.table_model.set_pairs(self._pairs)
        self._shown = min(current, len(self._pairs) - 1)
        self._select_row(self._shown)
        self.remove_btn.setEnabled(len(self._pairs) > 1)

    def _select_row(self, index: int) -> None:
        """Highlight pair ``index`` in the table without reporting it."""
        row = self.table_model.row_of(index)
        sel = self.table.selectionModel()
        sel.blockSignals(True)
        if row is None:
            sel.clearCurrentIndex()
        else:
            self.table.selectRow(row)
            sel.setCurrentIndex(self.table_model.index(row, 0), sel.SelectionFlag.NoUpdate)
            self.table.scrollTo(self.table_model.index(row, 0))
        sel.blockSignals(False)
        self.table.viewport().update()

    @Slot(str)
    def _on_edited(self, _text: str) -> None:
        self._debounce.start()

    def commit(self) -> None:
        """Report the edits now instead of after the debounce delay."""
        self._debounce.stop()
        self._emit_changed()

    @Slot()
    def _emit_changed(self) -> None:
        self._store()
        i = self.current_index()
        self.table_model.update_pair(i, self._pairs[i])
        self.pairsChanged.emit()

    @Slot(QModelIndex, QModelIndex)
    def _on_current_row(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if not current.isValid():
            return
        index = self.table_model.pair_index(current.row())
        if index == self._shown:
            return
        self._store()
        self.table_model.update_pair(self._shown, self._pairs[self._shown])
        self._show(index)
        self.currentChanged.emit(index)

    @Slot()
    def _on_add(self) -> None:
        self._store()
        self._pairs.append(self._pairs[self.current_index()])
        self._refresh_list(len(self._pairs) - 1)
        self._show(len(self._pairs) - 1)
        self._emit_changed()

    @Slot()
    def _on_remove(self) -> None:
        if len(self._pairs) > 1:
            i = self.current_index()
            del self._pairs[i]
            self._refresh_list(max(0, i - 1))
            self._show(self.current_index())
            self._emit_changed()

    @Slot(QAction)
    def _on_example(self, action: QAction) -> None:
        self.load_example(int(action.data()))

    @Slot()
    def _on_suggest(self) -> None:
        self.suggestRequested.emit(self.clean.text())
