"""Dialog: generate prompt pairs from a toy-language rule, a built-in template or your own."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLineEdit,
    QPlainTextEdit,
    QSpinBox,
    QVBoxLayout,
)

CUSTOM = "__custom__"


class GenerateDialog(QDialog):
    """Asks for a generator, a count and a seed; :meth:`request` returns them."""

    def __init__(self, generators: list[str], parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Generate prompt pairs")
        self.generator = QComboBox()
        for g in generators:
            self.generator.addItem(g, g)
        self.generator.addItem("Your own template\u2026", CUSTOM)
        self.count = QSpinBox()
        self.count.setRange(1, 100_000)
        self.count.setValue(50)
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.clean = QLineEdit("When {IO} and {S} went to the store, {S} gave a drink to")
        self.corrupted = QLineEdit("When {IO} and {S} went to the store, {IO} gave a drink to")
        self.answer = QLineEdit(" {IO}")
        self.wrong = QLineEdit(" {S}")
        names = "Mary, John, Alice, Bob, Tom, Anna"
        self.slots = QPlainTextEdit(f"IO: {names}\nS: {names}")
        self.slots.setToolTip("One slot per line: NAME: word, word, ... Slots with the same list "
                              "always take different words.")
        self.slots.setMaximumHeight(80)
        self.form = QFormLayout()
        self.form.addRow("&Generator", self.generator)
        self.form.addRow("&Pairs", self.count)
        self.form.addRow("&Seed", self.seed)
        for label, w in (("Clean", self.clean), ("Corrupted", self.corrupted), ("Answer", self.answer),
                         ("Wrong", self.wrong), ("Word lists", self.slots)):
            self.form.addRow(label, w)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(self.form)
        lay.addWidget(buttons)
        self.generator.currentIndexChanged.connect(self._on_generator)
        self._on_generator()

    def _on_generator(self, _i: int = 0) -> None:
        custom = self.generator.currentData() == CUSTOM
        for w in (self.clean, self.corrupted, self.answer, self.wrong, self.slots):
            w.setVisible(custom)
            self.form.labelForField(w).setVisible(custom)

    def request(self):
        """(rule name, n, seed, Template or None); raises ``InputError`` for a bad template."""
        rule = self.generator.currentData()
        template = None
        if rule == CUSTOM:
            from patchlab.core.templates import Template, parse_slots

            slots = parse_slots(self.slots.toPlainText())
            by_list: dict[tuple[str, ...], list[str]] = {}
            for name, words in slots.items():
                by_list.setdefault(tuple(words), []).append(name)
            distinct = [tuple(g) for g in by_list.values() if len(g) > 1]
            template = Template(self.clean.text(), self.corrupted.text(), self.answer.text(),
                                self.wrong.text(), slots, distinct=distinct, name="custom")
        return rule, self.count.value(), self.seed.value(), template
