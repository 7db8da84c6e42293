"""Fresh clean/corrupted prompt pairs for each rule of the toy language (numpy + stdlib).

Every pair changes exactly one token so the two prompts have the same length:

``bigram``     ``f.. NAME``                 -> the name's likeliest verb; corrupted: another name.
``skip``       ``PLACE f.. ADJ``            -> the connector; corrupted: a place of the other group.
``verbobj``    ``ACTIVITY f.. the``         -> its venue; corrupted: another activity.
``induction``  ``f.. A B f.. A``            -> ``B``; corrupted: ``f.. A C f.. A`` -> ``C``.

Answers carry a leading space (``" pool"``) like GPT-2-style answers; the toy tokenizer splits on
whitespace, so they are single tokens either way.
"""

from __future__ import annotations

import numpy as np

from patchlab.core.pairs import PromptPair
from patchlab.toy.language import (
    ACTIVITIES,
    ADJECTIVES,
    BIGRAMS,
    FILLERS,
    NAMES,
    PLACE_GROUP,
    PLACES,
    RULES,
    VENUE_OF,
    skip_word,
)


def _mode(dist: dict[str, float]) -> str:
    return max(dist, key=dist.get)


def _pick(rng: np.random.Generator, items) -> str:
    return items[int(rng.integers(len(items)))]


def make_pair(rule: str, rng: np.random.Generator) -> PromptPair:
    """Sample one clean/corrupted pair for ``rule`` (one of ``RULES``).

    Parameters
    ----------
    rule : str
        ``"bigram"``, ``"skip"``, ``"verbobj"`` or ``"induction"``.
    rng : numpy.random.Generator
        Source of randomness.

    Returns
    -------
    PromptPair
        Clean and corrupted prompts of equal length; ``answer`` is the clean prompt's likeliest
        next token, ``wrong`` the corrupted prompt's.
    """
    fillers = list(rng.permutation(FILLERS))
    lead = [fillers.pop() for _ in range(int(rng.integers(1, 4)))]
    gap = [fillers.pop() for _ in range(int(rng.integers(1, 5)))]
    if rule == "bigram":
        name = _pick(rng, NAMES)
        others = [n for n in NAMES if _mode(BIGRAMS[n]) != _mode(BIGRAMS[name])]
        other = _pick(rng, others)
        clean, corrupted = [*lead, name], [*lead, other]
        answer, wrong = _mode(BIGRAMS[name]), _mode(BIGRAMS[other])
    elif rule == "skip":
        place, adj = _pick(rng, PLACES), _pick(rng, ADJECTIVES)
        other = _pick(rng, [p for p in PLACES if PLACE_GROUP[p] != PLACE_GROUP[place]])
        clean, corrupted = [*lead, place, *gap, adj], [*lead, other, *gap, adj]
        answer, wrong = skip_word(place, adj), skip_word(other, adj)
    elif rule == "verbobj":
        act = _pick(rng, ACTIVITIES)
        other = _pick(rng, [a for a in ACTIVITIES if a != act])
        clean, corrupted = [*lead, act, *gap, "the"], [*lead, other, *gap, "the"]
        answer, wrong = VENUE_OF[act], VENUE_OF[other]
    elif rule == "induction":
        a, b, c = fillers.pop(), fillers.pop(), fillers.pop()
        gap = gap + [fillers.pop() for _ in range(int(rng.integers(2, 5)))]
        clean, corrupted = [*lead, a, b, *gap, a], [*lead, a, c, *gap, a]
        answer, wrong = b, c
    else:
        raise ValueError(f"Unknown rule {rule!r}; choose one of {', '.join(RULES)}.")
    return PromptPair(" ".join(clean), " ".join(corrupted), " " + answer, " " + wrong)


def make_pairs(rule: str, n: int, seed: int = 0) -> list[PromptPair]:
    """Sample ``n`` fresh pairs for ``rule`` from a generator seeded with ``seed``.

    Parameters
    ----------
    rule : str
        One of :data:`patchlab.toy.language.RULES`.
    n : int
        Number of pairs.
    seed : int
        Seed; the same seed gives the same pairs.

    Returns
    -------
    list of PromptPair
    """
    rng = np.random.default_rng(seed)
    return [make_pair(rule, rng) for _ in range(n)]
