"""Pairs presenter: the editor and the pair switch <-> the state's pair set and pair choice.

Validation tokenises every pair (tokenizer only) and stores each pair's tokens in the state;
the editor's token strip shows the selected pair.
"""

from __future__ import annotations

from collections.abc import Callable

from patchlab.core.errors import PairError
from patchlab.core.pairs import PromptPair
from patchlab.gui import pair_jobs
from patchlab.gui.jobs import Outcome, Status
from patchlab.gui.state import AppState


def validate_pairs(model, pairs: list[PromptPair]):
    """Tokenise every pair; return (per-pair token strings, error message or "").

    The tokens list stops at the first bad pair; for that pair the raw tokenisation of its
    prompts is included when possible, so a length mismatch is visible in the strip.
    """
    from patchlab.engine.tokens import tokenize_pair

    tokens: list[tuple[list[str], list[str]]] = []
    for i, pair in enumerate(pairs):
        try:
            tp = tokenize_pair(model, pair, device="cpu")  # GUI thread: never the model's device
            if pair.clean == pair.corrupted:
                raise PairError("The clean and corrupted prompts are identical: patching between "
                                "them changes nothing. Change one fact in the corrupted prompt.")
        except PairError as exc:
            prefix = f"Pair {i + 1}: " if len(pairs) > 1 else ""
            if pair.clean.strip() and pair.corrupted.strip():
                try:  # still show how the prompts tokenise, so the mismatch is visible
                    tokens.append(([str(t) for t in model.to_str_tokens(pair.clean)],
                                   [str(t) for t in model.to_str_tokens(pair.corrupted)]))
                except Exception:  # noqa: BLE001 - the message below is what matters
                    pass
            return tokens, prefix + str(exc)
        tokens.append((list(tp.clean_str), list(tp.corrupted_str)))
    return tokens, ""


class PairsPresenter:
    """Keeps the pair editor, the pair switch and the state in step.

    Parameters
    ----------
    state : AppState
    editor : PairEditor
    scope_bar : PairScopeBar
    model : callable() -> model or None
    on_validated : callable(bool)
        Called after each validation (e.g. to enable Run).
    """

    def __init__(self, state: AppState, editor, scope_bar, model: Callable[[], object],
                 on_validated: Callable[[bool], None]) -> None:
        self.state = state
        self.editor = editor
        self.scope_bar = scope_bar
        self.model = model
        self.on_validated = on_validated
        editor.pairsChanged.connect(self.pull)
        editor.currentChanged.connect(state.set_pair_index)
        scope_bar.modeChanged.connect(state.set_pair_mode)
        scope_bar.indexChanged.connect(state.set_pair_index)
        state.pairChoiceChanged.connect(self.show_choice)
        state.scopeChanged.connect(self.show_choice)
        state.pairsChanged.connect(self.push)

    # -- pair files -----------------------------------------------------------------------
    def load_file(self, path) -> list[PromptPair]:
        """Replace the pairs with those of a CSV/TSV/JSONL file; raises PairError (line named)."""
        from patchlab.core.pairset import load_pairs

        pairs = list(load_pairs(path))
        self.editor.set_pairs(pairs)
        return pairs

    def set_pairs(self, pairs: list[PromptPair]) -> list[PromptPair]:
        """Replace the pairs (generated ones, for example)."""
        self.editor.set_pairs(list(pairs))
        return list(pairs)

    def mixed_lengths(self, target: str) -> str:
        """The message when ``target`` has a position axis and the pairs differ in length, else ""."""
        from patchlab.core.pairset import mixed_length_message
        from patchlab.core.targets import TARGETS

        lengths = [len(t[0]) for t in self.state.tokens]
        if "pos" not in TARGETS[target].axes or len(set(lengths)) <= 1:
            return ""
        return mixed_length_message(target, lengths)

    def keep_largest_length_group(self) -> list[PromptPair]:
        """Keep only the pairs of the most common token length (so a by-position target runs)."""
        from patchlab.core.pairset import group_by_length

        groups = group_by_length(self.state.pairs, [len(t[0]) for t in self.state.tokens])
        best = max(groups.values(), key=len)
        self.editor.set_pairs(best)
        return best

    def save_file(self, path):
        """Write the pairs (format by suffix); raises PairError / PatchlabError with the reason."""
        from patchlab.core.pairset import save_pairs

        return save_pairs(self.editor.pairs(), path)

    def paste(self, text: str) -> list[PromptPair]:
        """Append pasted rows (tab-separated or CSV); an empty first pair is replaced."""
        from patchlab.core.pairset import parse_pairs_text

        new = parse_pairs_text(text)
        old = [p for p in self.editor.pairs() if p.clean.strip() or p.corrupted.strip()]
        self.editor.set_pairs(old + new, len(old))
        return new

    def pull(self) -> None:
        """The editor changed: copy its pairs into the state and validate."""
        self.state.set_pairs(self.editor.pairs())
        if self.editor.current_index() != self.state.pair_index:
            self.state.set_pair_index(self.editor.current_index())
        self.validate()

    def push(self) -> None:
        """The state's pairs changed (a session, a file): show them in the editor."""
        if self.editor.pairs() != self.state.pairs and self.state.pairs:
            self.editor.set_pairs(self.state.pairs, self.state.pair_index)

    def show_choice(self) -> None:
        st = self.state
        self.editor.set_current(st.pair_index)
        self.scope_bar.set_scope(st.pair_mode, st.pair_index, len(st.pairs), st.scope(len(st.pairs)).text())
        tokens = st.tokens
        if st.pair_index < len(tokens):
            self.editor.show_tokens(*tokens[st.pair_index])

    def validate(self) -> bool:
        """Tokenise the pairs (tokenizer only, fast) and show the result inline."""
        st = self.state
        pairs = st.pairs
        model = self.model()
        if model is None:
            st.set_validation([], False)
            self.editor.show_message("Load a model to check the prompts.", error=False)
        else:
            try:
                tokens, error = validate_pairs(model, pairs)
            except RuntimeError as exc:  # e.g. the tokenizer is busy in the worker: try later
                tokens, error = [], f"Could not check the prompts yet ({exc}); retrying\u2026"
                self._retries = getattr(self, "_retries", 0) + 1
                if self._retries <= 20:  # a busy tokenizer frees up soon; Run re-enables then
                    from PySide6.QtCore import QTimer

                    QTimer.singleShot(250, self.validate)
            else:
                self._retries = 0
            shown = tokens[min(st.pair_index, len(tokens) - 1)] if tokens else None
            if shown:
                self.editor.show_tokens(*shown)
            lens = sorted({len(t[0]) for t in tokens})
            n_tok = (f"{lens[0]}" if len(lens) == 1 else f"{lens[0]}-{lens[-1]}") if lens else "0"
            self.editor.show_message(error or f"{len(pairs)} pair(s) OK, {n_tok} tokens.",
                                     error=bool(error))
            st.set_validation(tokens, not error)
        self.on_validated(st.pairs_ok)
        return st.pairs_ok


class ScorePresenter:
    """Scores every pair in the background (job "score") and streams rows into the table.

    The job yields to every other job (``background=True``); when it was stopped for one, the
    rest is submitted again, from the first pair without scores.
    """

    def __init__(self, state: AppState, controller, table_model) -> None:
        self.state = state
        self.controller = controller
        self.table = table_model
        controller.on_progress("score", self._progress)
        controller.on_done("score", self._done)
        state.tokensChanged.connect(self.request)

    def request(self) -> None:
        start = self.table.first_unscored()
        if self.controller.model is None or start is None or not self.state.pairs:
            return
        pairs = self.state.pairs
        self.controller.submit("score", pair_jobs.score_pairs_job,
                               dict(model=self.controller.model, pairs=pairs, start=start, stop=None),
                               context=tuple(pairs), background=True)

    def _progress(self, chunk) -> None:
        self.table.set_scores(chunk.rows)

    def _done(self, out: Outcome) -> None:
        if out.status is Status.OK and tuple(self.state.pairs) == out.context:
            self.request()  # stopped for another job: score the rest
