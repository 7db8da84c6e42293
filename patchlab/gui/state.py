"""The application state: what the window shows, in one place, with a change signal per field.

No widgets here (tests change the state without a window). Views never read each other; the
presenters read this state and call the views' setters. Modelled on napari's ``ViewerModel``
beside ``QtViewer``: the window is one view of this object.

Which pair(s) a panel shows is a property of the state (:attr:`AppState.pair_mode` and
:attr:`AppState.pair_index`), never of a widget, so every panel names the same pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, Signal

from patchlab.core.pairs import PromptPair

#: :attr:`AppState.pair_mode` values.
ALL_PAIRS = "all"
ONE_PAIR = "one"


@dataclass(frozen=True)
class RunSpec:
    """The inputs of a run, frozen when Run is pressed (the worker never reads widgets).

    ``tokens`` holds each pair's ``(clean_str, corrupted_str)`` token strings, as validation
    produced them; position labels come from here.
    """

    model: str
    pairs: tuple[PromptPair, ...]
    target: str
    metric: str
    direction: str
    method: str
    preview: bool = False
    tokens: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = ()

    @property
    def n_pairs(self) -> int:
        return len(self.pairs)


@dataclass(frozen=True)
class Scope:
    """Which pairs a panel shows: all of them (``index`` None) or one (0-based ``index``)."""

    n_pairs: int
    index: int | None = None

    @property
    def is_mean(self) -> bool:
        return self.index is None

    def text(self) -> str:
        """``"mean of 24 pairs"``, ``"pair 3 of 24"`` (1-based) or ``"1 pair"``."""
        if self.n_pairs <= 1:
            return "1 pair" if self.n_pairs == 1 else "no pairs"
        if self.index is None:
            return f"mean of {self.n_pairs} pairs"
        return f"pair {self.index + 1} of {self.n_pairs}"

    def indices(self) -> list[int]:
        return list(range(self.n_pairs)) if self.index is None else [self.index]


class AppState(QObject):
    """Model info, pair set, pair choice, frozen run spec, results and selected cell.

    Every field is a property; setting it to a new value emits its signal (setting the same
    object again emits nothing). Signals carry no arguments except where noted: read the state.

    Signals
    -------
    modelChanged, pairsChanged, tokensChanged, pairChoiceChanged, runSpecChanged,
    resultChanged, estimateChanged, decompositionChanged, cellChanged
    scopeChanged
        Emitted after ``pairChoiceChanged`` and ``pairsChanged``: the pairs a panel shows may
        have changed. Panels that name their pairs listen to this one.
    """

    modelChanged = Signal()
    pairsChanged = Signal()
    tokensChanged = Signal()
    pairChoiceChanged = Signal()
    scopeChanged = Signal()
    runSpecChanged = Signal()
    resultChanged = Signal()
    estimateChanged = Signal()
    decompositionChanged = Signal()
    cellChanged = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._model: Any = None
        self._pairs: list[PromptPair] = []
        self._tokens: list[tuple[list[str], list[str]]] = []
        self._pairs_ok = False
        self._mode = ALL_PAIRS
        self._index = 0
        self._spec: RunSpec | None = None
        self._result: Any = None
        self._estimate: Any = None
        self._decomposition: Any = None
        self._cell: tuple[int, ...] | None = None
        self._previous: tuple[RunSpec | None, Any] | None = None

    # -- model ----------------------------------------------------------------------------
    @property
    def model_info(self) -> Any:
        """The loaded model's ``ModelInfo`` (engine dataclass) or None."""
        return self._model

    def set_model_info(self, info: Any) -> None:
        self._model = info
        self.modelChanged.emit()

    # -- pairs ----------------------------------------------------------------------------
    @property
    def pairs(self) -> list[PromptPair]:
        """The pair set being edited (a copy)."""
        return list(self._pairs)

    def set_pairs(self, pairs: list[PromptPair]) -> None:
        pairs = list(pairs)
        if pairs == self._pairs:
            return
        self._pairs = pairs
        self._tokens = []
        self._pairs_ok = False
        if self._index >= len(pairs):
            self._index = max(0, len(pairs) - 1)
        self.pairsChanged.emit()
        self.scopeChanged.emit()

    @property
    def tokens(self) -> list[tuple[list[str], list[str]]]:
        """Per pair ``(clean tokens, corrupted tokens)`` of the last validation."""
        return list(self._tokens)

    @property
    def pairs_ok(self) -> bool:
        """True when every pair tokenised without a problem."""
        return self._pairs_ok

    def set_validation(self, tokens: list[tuple[list[str], list[str]]], ok: bool) -> None:
        self._tokens = list(tokens)
        self._pairs_ok = bool(ok)
        self.tokensChanged.emit()

    # -- pair choice ----------------------------------------------------------------------
    @property
    def pair_mode(self) -> str:
        """:data:`ALL_PAIRS` (panels show the mean) or :data:`ONE_PAIR` (``pair_index``)."""
        return self._mode

    @property
    def pair_index(self) -> int:
        """The selected pair (0-based): edited in the editor, shown in ``ONE_PAIR`` mode."""
        return self._index

    def set_pair_mode(self, mode: str) -> None:
        if mode not in (ALL_PAIRS, ONE_PAIR):
            raise ValueError(f"pair mode must be {ALL_PAIRS!r} or {ONE_PAIR!r}, not {mode!r}")
        if mode != self._mode:
            self._mode = mode
            self.pairChoiceChanged.emit()
            self.scopeChanged.emit()

    def set_pair_index(self, index: int) -> None:
        index = int(index)
        if not 0 <= index < max(1, len(self._pairs)):
            raise IndexError(f"pair {index + 1} does not exist ({len(self._pairs)} pairs)")
        if index != self._index:
            self._index = index
            self.pairChoiceChanged.emit()
            if self._mode == ONE_PAIR:
                self.scopeChanged.emit()

    def select_pair(self, index: int) -> None:
        """Show one pair everywhere (``ONE_PAIR`` mode on pair ``index``)."""
        self.blockSignals(True)
        try:
            changed = index != self._index or self._mode != ONE_PAIR
            self.set_pair_index(index)
            self._mode = ONE_PAIR
        finally:
            self.blockSignals(False)
        if changed:
            self.pairChoiceChanged.emit()
            self.scopeChanged.emit()

    def scope(self, n_pairs: int | None = None) -> Scope:
        """The pairs panels show, out of ``n_pairs`` (default: the run's, else the editor's)."""
        if n_pairs is None:
            n_pairs = self._spec.n_pairs if self._spec is not None else len(self._pairs)
        if self._mode == ALL_PAIRS or n_pairs <= 1 or self._index >= n_pairs:
            return Scope(n_pairs, None if n_pairs > 1 else (0 if n_pairs == 1 else None))
        return Scope(n_pairs, self._index)

    def current_pair(self) -> PromptPair | None:
        return self._pairs[self._index] if 0 <= self._index < len(self._pairs) else None

    def shown_pairs(self) -> list[PromptPair]:
        """The editor's pairs the panels show: all, or the selected one."""
        sc = self.scope(len(self._pairs))
        return [self._pairs[i] for i in sc.indices()]

    # -- run ------------------------------------------------------------------------------
    @property
    def run_spec(self) -> RunSpec | None:
        return self._spec

    def start_run(self, spec: RunSpec) -> None:
        """A new run: the spec is frozen; the last complete result becomes :attr:`previous`."""
        if self._result is not None and getattr(self._result, "complete", False):
            self._previous = (self._spec, self._result)
        self._spec = spec
        self._result = None
        self._estimate = None
        self._cell = None
        self.runSpecChanged.emit()
        self.resultChanged.emit()
        self.estimateChanged.emit()
        self.cellChanged.emit()
        self.scopeChanged.emit()

    @property
    def result(self) -> Any:
        """The exact (or the chosen method's) ``PatchResult``; partial when cancelled."""
        return self._result

    def set_result(self, result: Any) -> None:
        if result is not self._result:
            self._result = result
            self.resultChanged.emit()

    @property
    def previous(self) -> tuple[RunSpec | None, Any] | None:
        """(spec, result) of the run before the current one (for difference maps), or None."""
        return self._previous

    @property
    def estimate(self) -> Any:
        """The attribution ``PatchResult`` previewed before the exact run, or None."""
        return self._estimate

    def set_estimate(self, estimate: Any) -> None:
        if estimate is not self._estimate:
            self._estimate = estimate
            self.estimateChanged.emit()

    @property
    def decomposition(self) -> Any:
        return self._decomposition

    def set_decomposition(self, decomposition: Any) -> None:
        if decomposition is not self._decomposition:
            self._decomposition = decomposition
            self.decompositionChanged.emit()

    def restore_run(self, spec: RunSpec | None, result: Any, estimate: Any) -> None:
        """Put a saved run back (sessions): spec, result and estimate at once."""
        self._spec = spec
        self._result = result
        self._estimate = estimate
        self._cell = None
        self.runSpecChanged.emit()
        self.estimateChanged.emit()
        self.resultChanged.emit()
        self.cellChanged.emit()
        self.scopeChanged.emit()

    # -- selection ------------------------------------------------------------------------
    @property
    def cell(self) -> tuple[int, ...] | None:
        """The selected cell of the result (index in its axis order), or None."""
        return self._cell

    def set_cell(self, cell: tuple[int, ...] | None) -> None:
        cell = None if cell is None else tuple(int(i) for i in cell)
        if cell != self._cell:
            self._cell = cell
            self.cellChanged.emit()
