"""The pairs table: a ``QAbstractTableModel`` over the pair set plus per-pair scores.

Sorting and the "only pairs the model gets right" filter reorder a numpy index array (the
model's rows point into the pair list), so 10,000 pairs cost no per-row Python work beyond
the rows on screen. Scores arrive in chunks from a worker job (:meth:`set_scores`).
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QStyle, QTableView

from patchlab.core.pairs import PromptPair

# short headers: the table sits in the side panel, which is narrow on a 1280x720 screen (TIPS
# spell them out; the header's context menu names them in full)
COLUMNS = ("#", "name", "tok OK", "len", "P clean", "P corr", "right", "prompt \u2192 answer")
NAMES = ("pair number", "name", "tokens OK", "length", "P(answer | clean)", "P(answer | corrupted)",
         "right on clean", "clean prompt and answer")
TIPS = ("Pair number", "Pair name (from the file or the generator)", "Tokens OK: both prompts tokenise to "
        "the same length with single-token answers", "Length: tokens per prompt", "P(answer) on the clean "
        "prompt", "P(answer) on the corrupted prompt", "Right: the model's top next token on the clean "
        "prompt is the answer", "The clean prompt and its answer (hover a row for all of it)")
COL_PROMPT = len(COLUMNS) - 1
#: The widest value each short column shows (its width is the larger of this and its header).
WIDEST = {0: "00000", 1: "name", 2: "yes", 3: "000", 4: "0.000", 5: "0.000", 6: "yes"}
#: Hidden until asked for (right-click the header): every pair's name is also in its tooltip.
HIDDEN_BY_DEFAULT = (1,)
_INDEX = QModelIndex()


def list_text(i: int, p: PromptPair, width: int = 48) -> str:
    """One line for a pair: the clean prompt cut at a word, an ellipsis where cut."""
    text = p.clean.strip() or "(empty)"
    if len(text) > width:
        cut = text[:width].rsplit(" ", 1)[0] if " " in text[:width] else text[:width]
        text = cut + " \u2026"
    return f"{i + 1}: {text}  \u2192 {p.answer!r}"


def fit_columns(table: QTableView) -> None:
    """Size ``table``'s columns to fit a narrow panel: each short column as wide as its header or
    its widest value, the prompt column stretched into what is left (elided, full text in the
    tooltip), :data:`HIDDEN_BY_DEFAULT` hidden; the header's context menu shows or hides any."""
    header = table.horizontalHeader()
    margin = table.style().pixelMetric(QStyle.PM_HeaderMargin, None, header)
    widths = {col: 2 * margin + 6 + max(header.fontMetrics().horizontalAdvance(COLUMNS[col]),
                                        table.fontMetrics().horizontalAdvance(widest))
              for col, widest in WIDEST.items()}
    # the sort arrow needs room in its column only (as much as QHeaderView's own size hint gives
    # it): that column alone is widened, and the stretched prompt column gives the room back
    arrow = header.sizeHint().height() + margin

    def fit(sorted_col: int, _order=None) -> None:
        for col, width in widths.items():
            header.resizeSection(col, width + (arrow if col == sorted_col else 0))

    header.setMinimumSectionSize(8)
    header.setStretchLastSection(True)
    header.setTextElideMode(Qt.ElideRight)
    header.setDefaultAlignment(Qt.AlignLeft | Qt.AlignVCenter)
    header.sortIndicatorChanged.connect(fit)
    fit(header.sortIndicatorSection() if header.isSortIndicatorShown() else -1)
    table.setTextElideMode(Qt.ElideRight)
    header.setContextMenuPolicy(Qt.ActionsContextMenu)
    for col in range(COL_PROMPT):
        action = QAction(f"Show {NAMES[col]}", header)
        action.setCheckable(True)
        action.setChecked(col not in HIDDEN_BY_DEFAULT)
        action.toggled.connect(lambda on, col=col: table.setColumnHidden(col, not on))
        header.addAction(action)
        table.setColumnHidden(col, col in HIDDEN_BY_DEFAULT)


class PairsTableModel(QAbstractTableModel):
    """Rows: pairs (sorted/filtered view of them); columns: :data:`COLUMNS`."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._pairs: list[PromptPair] = []
        self._order = np.zeros(0, dtype=np.int64)  # view row -> pair index
        self._sort: tuple[int, Qt.SortOrder] | None = None
        self.only_right = False
        self._reset_scores(0)

    def _reset_scores(self, n: int) -> None:
        self.n_tokens = np.zeros(n, dtype=np.int64)
        self.tokens_ok = np.full(n, -1, dtype=np.int8)  # -1 unknown, 0 no, 1 yes
        self.clean_p = np.full(n, np.nan)
        self.corrupted_p = np.full(n, np.nan)
        self.right = np.full(n, -1, dtype=np.int8)
        self.errors: dict[int, str] = {}

    # -- data in --------------------------------------------------------------------------
    def set_pairs(self, pairs: list[PromptPair]) -> None:
        """A new pair set: scores are dropped, sort and filter kept."""
        self.beginResetModel()
        self._pairs = list(pairs)
        self._reset_scores(len(self._pairs))
        self._order = self._compute_order()
        self.endResetModel()

    def update_pair(self, i: int, pair: PromptPair) -> None:
        """Pair ``i`` was edited: its scores are unknown again."""
        if not 0 <= i < len(self._pairs) or self._pairs[i] == pair:
            return
        self._pairs[i] = pair
        self.tokens_ok[i], self.right[i] = -1, -1
        self.clean_p[i] = self.corrupted_p[i] = np.nan
        self.errors.pop(i, None)
        row = self.row_of(i)
        if row is not None:
            self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1))

    def set_scores(self, rows: list[dict]) -> None:
        """Per-pair rows from the scoring job (see ``pair_jobs.score_pairs_job``)."""
        for r in rows:
            i = int(r["index"])
            if i >= len(self._pairs) or r.get("pair", self._pairs[i]) != self._pairs[i]:
                continue  # scored before an edit: stale
            self.n_tokens[i] = int(r.get("n_tokens") or 0)
            self.tokens_ok[i] = 1 if r.get("tokens_ok") else 0
            self.clean_p[i] = r.get("clean_answer_prob", np.nan)
            self.corrupted_p[i] = r.get("corrupted_answer_prob", np.nan)
            cc = r.get("clean_correct")
            self.right[i] = -1 if cc is None else int(bool(cc))
            if r.get("error"):
                self.errors[i] = str(r["error"])
        if self.only_right or self._sort is not None and self._sort[0] >= 2:
            self._relayout()
        elif rows:
            self.dataChanged.emit(self.index(0, 2), self.index(self.rowCount() - 1, len(COLUMNS) - 1))

    def first_unscored(self) -> int | None:
        """The first pair without scores, or None when all are scored."""
        hits = np.flatnonzero(self.tokens_ok < 0)
        return int(hits[0]) if hits.size else None

    def set_only_right(self, on: bool) -> None:
        """Show only pairs the model gets right on the clean prompt (unscored pairs hidden)."""
        self.only_right = bool(on)
        self._relayout()

    # -- rows <-> pairs ---------------------------------------------------------------------
    def pair_index(self, row: int) -> int:
        return int(self._order[row])

    def row_of(self, pair_index: int) -> int | None:
        hits = np.flatnonzero(self._order == pair_index)
        return int(hits[0]) if hits.size else None

    def visible_pairs(self) -> list[int]:
        return [int(i) for i in self._order]

    # -- sorting and filtering ------------------------------------------------------------
    def _key(self, column: int) -> np.ndarray:
        n = len(self._pairs)
        if column == 0:
            return np.arange(n)
        if column == 1:
            return np.array([p.name.lower() if hasattr(p, "name") else "" for p in self._pairs], dtype=object)
        if column == 2:
            return self.tokens_ok.astype(float)
        if column == 3:
            return self.n_tokens.astype(float)
        if column == 4:
            return self.clean_p
        if column == 5:
            return self.corrupted_p
        if column == 6:
            return self.right.astype(float)
        return np.array([p.clean for p in self._pairs], dtype=object)

    def _compute_order(self) -> np.ndarray:
        idx = np.arange(len(self._pairs))
        if self.only_right:
            idx = idx[self.right == 1]
        if self._sort is not None:
            column, order = self._sort
            key = self._key(column)[idx]
            if key.dtype == object:
                ranks = np.argsort(key.astype(str), kind="stable")
            else:
                ranks = np.argsort(np.where(np.isnan(key), np.inf, key), kind="stable")  # unknown last
            if order == Qt.DescendingOrder:
                ranks = ranks[::-1] if key.dtype == object else np.concatenate(
                    [ranks[~np.isnan(key[ranks])][::-1], ranks[np.isnan(key[ranks])]])
            idx = idx[ranks]
        return idx

    def _relayout(self) -> None:
        self.layoutAboutToBeChanged.emit()
        old = self._order
        persistent = self.persistentIndexList()
        pairs_of = [int(old[p.row()]) if 0 <= p.row() < len(old) else -1 for p in persistent]
        self._order = self._compute_order()
        pos = np.full(len(self._pairs) + 1, -1, dtype=np.int64)
        pos[self._order] = np.arange(len(self._order))
        for p, pair in zip(persistent, pairs_of):
            row = int(pos[pair]) if pair >= 0 else -1
            self.changePersistentIndex(p, self.index(row, p.column()) if row >= 0 else QModelIndex())
        self.layoutChanged.emit()

    def sort(self, column: int, order: Qt.SortOrder = Qt.AscendingOrder) -> None:  # noqa: D102
        self._sort = (int(column), order)
        self._relayout()

    # -- Qt model API ---------------------------------------------------------------------
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = _INDEX) -> int:  # noqa: N802, D102
        return 0 if parent.isValid() else len(self._order)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = _INDEX) -> int:  # noqa: N802, D102
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.DisplayRole):  # noqa: N802, D102
        if orientation == Qt.Horizontal and role in (Qt.DisplayRole, Qt.ToolTipRole):
            return COLUMNS[section] if role == Qt.DisplayRole else TIPS[section]
        return None

    def data(self, index, role=Qt.DisplayRole):  # noqa: D102
        if not index.isValid():
            return None
        i = int(self._order[index.row()])
        col = index.column()
        p = self._pairs[i]
        if role == Qt.ToolTipRole:
            name = f"{p.name}: " if getattr(p, "name", "") else ""
            return self.errors.get(i) or f"{name}{p.clean}  \u2192 {p.answer!r} (wrong {p.wrong!r})"
        if role != Qt.DisplayRole:
            return None
        if col == 0:
            return str(i + 1)
        if col == 1:
            return getattr(p, "name", "")
        if col == 2:
            return {-1: "", 0: "no", 1: "yes"}[int(self.tokens_ok[i])]
        if col == 3:
            return str(int(self.n_tokens[i])) if self.tokens_ok[i] >= 0 else ""
        if col in (4, 5):
            v = (self.clean_p if col == 4 else self.corrupted_p)[i]
            return "" if np.isnan(v) else f"{v:.3f}"
        if col == 6:
            return {-1: "", 0: "no", 1: "yes"}[int(self.right[i])]
        return list_text(i, p)
