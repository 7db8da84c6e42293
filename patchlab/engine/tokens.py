"""Tokenise and validate prompt pairs against a model's tokenizer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from patchlab.core.errors import PairError
from patchlab.core.pairs import PromptPair
from patchlab.core.pairset import mixed_length_message


@dataclass
class TokenizedPair:
    """A validated pair with its tokens (``[1, pos]`` tensors) and answer token ids."""

    pair: PromptPair
    clean: torch.Tensor
    corrupted: torch.Tensor
    answer_id: int
    wrong_id: int
    clean_str: list[str]
    corrupted_str: list[str]

    @property
    def n_pos(self) -> int:
        return int(self.clean.shape[-1])

    def tokens(self, which: str) -> torch.Tensor:
        return self.clean if which == "clean" else self.corrupted


def _str_tokens(model: Any, text: str, prepend_bos: bool | None = None) -> list[str]:
    kwargs = {} if prepend_bos is None else {"prepend_bos": prepend_bos}
    return [str(t) for t in model.to_str_tokens(text, **kwargs)]


def single_token_id(model: Any, text: str, role: str) -> int:
    """Token id of ``text`` or a :class:`PairError` showing how it tokenises."""
    toks = model.to_tokens(text, prepend_bos=False)[0]
    if toks.numel() == 1:
        return int(toks[0])
    pieces = _str_tokens(model, text, prepend_bos=False)
    msg = f"The {role} {text!r} is {len(pieces)} tokens {pieces}, but it must be a single token."
    if not text.startswith(" "):
        spaced = model.to_tokens(" " + text, prepend_bos=False)[0]
        if spaced.numel() == 1:
            msg += f" Try {' ' + text!r} with a leading space: that is one token."
    elif text.strip() and model.to_tokens(text.strip(), prepend_bos=False)[0].numel() == 1:
        msg += f" Try {text.strip()!r} without the leading space: that is one token."
    else:
        msg += f" Use only its first token, {pieces[0]!r}, or pick another word."
    raise PairError(msg)


def tokenize_pair(model: Any, pair: PromptPair, device: Any = None) -> TokenizedPair:
    """Validate ``pair`` for ``model`` and return its tokens.

    ``device``: where the token tensors go (default: the model's device). The GUI validates
    every edit with ``device="cpu"`` so its thread never waits on an accelerator.

    Raises
    ------
    PairError
        Empty prompt, different token lengths (shows both token lists and the first
        differing position), multi-token answers (with a suggestion), identical answers,
        or a prompt longer than the model's context.
    """
    if not isinstance(pair, PromptPair):
        raise PairError(f"Expected a PromptPair, got {type(pair).__name__}.")
    pair.check()
    device = _model_device(model) if device is None else torch.device(device)
    clean = model.to_tokens(pair.clean, truncate=False).to(device)
    corrupted = model.to_tokens(pair.corrupted, truncate=False).to(device)
    clean_str = _str_tokens(model, pair.clean)
    corrupted_str = _str_tokens(model, pair.corrupted)
    if clean.shape[-1] != corrupted.shape[-1]:
        first = next(
            (i for i, (a, b) in enumerate(zip(clean_str, corrupted_str)) if a != b),
            min(len(clean_str), len(corrupted_str)),
        )
        raise PairError(
            f"The clean prompt is {clean.shape[-1]} tokens and the corrupted prompt is "
            f"{corrupted.shape[-1]} tokens; they must have the same length so positions line up. "
            f"They first differ at position {first} "
            f"({_at(clean_str, first)} vs {_at(corrupted_str, first)}).\n"
            f"clean:     {clean_str}\ncorrupted: {corrupted_str}\n"
            "Change the corrupted prompt so that each changed word is as many tokens as the one it replaces."
        )
    if torch.equal(clean, corrupted):
        raise PairError(
            f"The clean and corrupted prompts tokenise identically ({clean_str}): patching one into "
            "the other changes nothing. Change one fact in the corrupted prompt."
        )
    n_ctx = getattr(model.cfg, "n_ctx", None)
    if n_ctx and clean.shape[-1] > n_ctx:
        raise PairError(
            f"The prompts are {clean.shape[-1]} tokens, longer than the model's context of {n_ctx} "
            "tokens. Shorten them."
        )
    answer_id = single_token_id(model, pair.answer, "answer")
    wrong_id = single_token_id(model, pair.wrong, "wrong answer")
    if answer_id == wrong_id:
        raise PairError(
            f"The answer {pair.answer!r} and the wrong answer {pair.wrong!r} are the same token; "
            "pick two different tokens."
        )
    return TokenizedPair(pair, clean, corrupted, answer_id, wrong_id, clean_str, corrupted_str)


def tokenize_pairs(model: Any, pairs: PromptPair | Sequence[PromptPair]) -> list[TokenizedPair]:
    """Validate one pair or a list; errors name the pair that failed."""
    if isinstance(pairs, PromptPair):
        pairs = [pairs]
    # a PairList from a pairs file names the line of a bad pair
    from_file = hasattr(pairs, "where")
    where = pairs.where if from_file else (lambda i: f"Pair {i + 1}")  # type: ignore[union-attr]
    pairs = list(pairs)
    if not pairs:
        raise PairError("No prompt pairs given: add at least one clean/corrupted pair.")
    out = []
    for i, pair in enumerate(pairs):
        try:
            out.append(tokenize_pair(model, pair))
        except PairError as exc:
            if len(pairs) == 1 and not from_file:
                raise
            raise PairError(f"{where(i)}{f' ({pair.name})' if pair.name else ''}: {exc}") from None
    return out


def check_equal_lengths(tps: Sequence[TokenizedPair], target: str) -> None:
    """Pairs on a target with a position axis must share one token length; say which differ."""
    lengths = [tp.n_pos for tp in tps]
    if len(set(lengths)) > 1:
        raise PairError(mixed_length_message(target, lengths))


def _at(tokens: list[str], i: int) -> str:
    return repr(tokens[i]) if i < len(tokens) else "end of prompt"


def _model_device(model: Any) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")
