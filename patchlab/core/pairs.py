"""Prompt pairs: the clean/corrupted inputs of a patching experiment (strings only)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from patchlab.core.errors import PairError


@dataclass(frozen=True)
class PromptPair:
    """A clean and a corrupted prompt with the answer and the wrong answer.

    Parameters
    ----------
    clean, corrupted : str
        The two prompts. They must tokenise to the same number of tokens.
    answer : str
        The correct next token for the clean prompt (e.g. ``" Mary"``).
    wrong : str
        The competing token, usually the correct answer for the corrupted prompt.
    name : str, optional
        A short label for the pair (shown in tables and per-pair plots).
    group : str, optional
        A free-form group (a template, a rule, a token length) to filter or split by.

    Only checks that need no tokenizer run here (see :meth:`check`); tokenizer-dependent
    checks live in ``patchlab.engine.tokens``.
    """

    clean: str
    corrupted: str
    answer: str
    wrong: str
    name: str = ""
    group: str = ""

    def check(self) -> PromptPair:
        """Raise :class:`PairError` for problems visible without a tokenizer."""
        for field in ("clean", "corrupted", "answer", "wrong", "name", "group"):
            value = getattr(self, field)
            if not isinstance(value, str):
                raise PairError(f"The {field} text must be a string, got {type(value).__name__}.")
        if not self.clean.strip():
            raise PairError("The clean prompt is empty: type the prompt the model should solve.")
        if not self.corrupted.strip():
            raise PairError(
                "The corrupted prompt is empty: type a prompt that changes one fact of the clean one."
            )
        if self.clean == self.corrupted:
            raise PairError(
                f"The clean and corrupted prompts are identical ({self.clean!r}): patching one "
                "into the other changes nothing. Change one fact in the corrupted prompt "
                "(e.g. swap a name)."
            )
        if self.answer == "":
            raise PairError("The answer is empty: give the token the model should predict.")
        if self.wrong == "":
            raise PairError("The wrong answer is empty: give the competing token.")
        if self.answer == self.wrong:
            raise PairError(
                f"The answer and the wrong answer are both {self.answer!r}: "
                "the logit difference would always be 0. Pick two different tokens."
            )
        return self

    def to_dict(self) -> dict:
        """The four texts, plus ``name`` and ``group`` only when set (old readers keep working)."""
        data = asdict(self)
        for key in ("name", "group"):
            if not data[key]:
                del data[key]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> PromptPair:
        try:
            return cls(
                clean=data["clean"],
                corrupted=data["corrupted"],
                answer=data["answer"],
                wrong=data["wrong"],
                name=data.get("name") or "",
                group=data.get("group") or "",
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise PairError(
                f"A prompt pair needs the fields clean, corrupted, answer and wrong; got {data!r}."
            ) from exc
