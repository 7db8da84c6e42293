"""Induction pairs that test the previous-token head (numpy + stdlib).

The built-in induction pairs corrupt B in ``f.. A B f.. A`` (the copied token), which the
previous-token head never sees as different. These corrupt the *first* A instead:
clean ``f.. A B f.. A`` -> ``B`` by the exact induction rule; corrupted ``f.. X B f.. A``, where
only the previous-token head can tell the induction head that B no longer follows an A.
"""

from __future__ import annotations

import numpy as np

from patchlab.core.pairs import PromptPair
from patchlab.toy.language import FILLERS


def prev_token_pairs(n: int, seed: int = 0) -> list[PromptPair]:
    """``n`` pairs from a generator seeded with ``seed``; answer B, wrong X (the corrupted token).

    Parameters
    ----------
    n : int
        Number of pairs.
    seed : int
        The same seed gives the same pairs.

    Returns
    -------
    list of PromptPair
        Clean and corrupted prompts of equal length (one token differs).
    """
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        f = list(rng.permutation(FILLERS))
        lead = [f.pop() for _ in range(int(rng.integers(1, 4)))]
        a, b, x = f.pop(), f.pop(), f.pop()
        gap = [f.pop() for _ in range(int(rng.integers(3, 6)))]
        out.append(PromptPair(" ".join([*lead, a, b, *gap, a]), " ".join([*lead, x, b, *gap, a]), " " + b, " " + x))
    return out
