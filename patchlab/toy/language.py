"""The toy language: a documented vocabulary and four rule families with exact probabilities.

numpy + stdlib only (``patchlab.core`` may use it). A *document* is ``<bos>`` followed by
segments drawn at random until it is ``length`` tokens long:

``bigram``      ``NAME VERB``. The verb follows the name with the probabilities in
                :data:`BIGRAMS` (e.g. ``alice`` -> ``sees`` 0.7, ``helps`` 0.2, ``finds`` 0.1).
``skip``        ``PLACE f.. ADJ WORD`` with 1-4 filler tokens ``f``. The connector ``WORD`` after
                the adjective depends on the place *and* the adjective (:func:`skip_word`):
                with probability :data:`P_SKIP` it is the table word, otherwise one of the three
                other connectors uniformly.
``verbobj``     ``ACTIVITY f.. the VENUE`` with 1-4 fillers. With probability :data:`P_VERBOBJ`
                the venue is the activity's venue (:data:`VENUE_OF`), otherwise one of the
                other five venues uniformly.
``induction``   A run of 2-5 fresh filler tokens ``A B ..``; a later induction segment repeats
                the pending run verbatim. Inside a repeat, after ``A`` comes ``B`` with
                probability 1.

Fillers are drawn *without replacement* within a document, so a filler appears twice only as
part of an induction repeat: the induction rule is exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

BOS = "<bos>"
UNK = "<unk>"
NAMES = ("alice", "bob", "carol", "dave", "emma", "frank")
VERBS = ("sees", "helps", "finds", "likes", "meets", "calls")
PLACES = ("beach", "park", "garden", "market")
ADJECTIVES = ("big", "small", "old", "new")
CONNECTORS = ("at", "and", "in", "of")
ACTIVITIES = ("swim", "pray", "read", "cook", "shop", "play")
VENUES = ("pool", "church", "library", "kitchen", "store", "field")
FUNCTION_WORDS = ("the",)
FILLERS = tuple(c + v + e for c in "bdfgkmpt" for v in "aeiou" for e in "xz")

#: Verb distribution after each name (each row sums to 1).
BIGRAMS: dict[str, dict[str, float]] = {
    "alice": {"sees": 0.7, "helps": 0.2, "finds": 0.1},
    "bob": {"helps": 0.6, "likes": 0.3, "sees": 0.1},
    "carol": {"finds": 0.8, "meets": 0.2},
    "dave": {"likes": 0.5, "calls": 0.3, "meets": 0.2},
    "emma": {"meets": 0.9, "calls": 0.1},
    "frank": {"calls": 0.6, "sees": 0.4},
}
#: Places near ``beach``/``park`` take ``at`` (big, small) or ``and`` (old, new); places near
#: ``garden``/``market`` take ``in`` (big, small) or ``of`` (old, new).
PLACE_GROUP = {"beach": 0, "park": 0, "garden": 1, "market": 1}
ADJ_GROUP = {"big": 0, "small": 0, "old": 1, "new": 1}
SKIP_TABLE = {(0, 0): "at", (0, 1): "and", (1, 0): "in", (1, 1): "of"}
P_SKIP = 0.85
VENUE_OF = dict(zip(ACTIVITIES, VENUES))
P_VERBOBJ = 0.9
#: Probability of each segment kind when a new segment starts.
SEGMENT_PROBS = {"bigram": 0.25, "skip": 0.25, "verbobj": 0.25, "induction": 0.25}
GAP_RANGE = (1, 4)  # fillers between the key token and the query token (inclusive)
RUN_RANGE = (2, 5)  # length of an induction run (inclusive)
RULES = ("bigram", "skip", "verbobj", "induction")


def vocabulary() -> list[str]:
    """Return the full vocabulary in token-id order (``<bos>`` is 0, ``<unk>`` is 1)."""
    words = [BOS, UNK]
    for group in (NAMES, VERBS, PLACES, ADJECTIVES, CONNECTORS, ACTIVITIES, VENUES):
        words.extend(group)
    words.extend(FUNCTION_WORDS)
    words.extend(FILLERS)
    return words


def skip_word(place: str, adjective: str) -> str:
    """Return the most likely connector after ``adjective`` when ``place`` came earlier."""
    return SKIP_TABLE[(PLACE_GROUP[place], ADJ_GROUP[adjective])]


def skip_distribution(place: str, adjective: str) -> dict[str, float]:
    """Exact distribution of the word after ``adjective`` given the preceding ``place``."""
    best = skip_word(place, adjective)
    rest = (1.0 - P_SKIP) / (len(CONNECTORS) - 1)
    return {w: (P_SKIP if w == best else rest) for w in CONNECTORS}


def verbobj_distribution(activity: str) -> dict[str, float]:
    """Exact distribution of the venue after ``the`` given the preceding ``activity``."""
    best = VENUE_OF[activity]
    rest = (1.0 - P_VERBOBJ) / (len(VENUES) - 1)
    return {v: (P_VERBOBJ if v == best else rest) for v in VENUES}


@dataclass(frozen=True)
class Target:
    """One position where a rule decides the next token.

    Parameters
    ----------
    pos : int
        Index (in the document, ``<bos>`` = 0) of the *query* token; the rule predicts
        token ``pos + 1``.
    rule : str
        One of :data:`RULES`.
    dist : dict
        The exact distribution of token ``pos + 1`` under the rule.
    key : int
        Index of the earlier token the rule depends on (the name itself for bigrams).
    """

    pos: int
    rule: str
    dist: dict
    key: int

    @property
    def mode(self) -> str:
        """The most likely next token."""
        return max(self.dist, key=self.dist.get)


@dataclass
class Document:
    """A sampled document: its tokens and the rule targets inside it."""

    tokens: list[str]
    targets: list[Target] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The document without ``<bos>``, words joined by spaces."""
        return " ".join(self.tokens[1:])


def _choice(rng: np.random.Generator, dist: dict[str, float]) -> str:
    keys = list(dist)
    return keys[int(rng.choice(len(keys), p=np.array([dist[k] for k in keys])))]


def sample_document(rng: np.random.Generator, length: int = 64) -> Document:
    """Sample one document of exactly ``length`` tokens (``<bos>`` included).

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness; the same seed gives the same document.
    length : int
        Number of tokens including ``<bos>``. The last segment may be cut short.

    Returns
    -------
    Document
        Tokens and the targets of every complete rule instance.
    """
    toks = [BOS]
    targets: list[Target] = []
    pool = list(rng.permutation(FILLERS))
    pending: list[str] | None = None
    kinds = list(SEGMENT_PROBS)
    probs = np.array([SEGMENT_PROBS[k] for k in kinds])

    def fill(n: int) -> list[str]:
        return [pool.pop() for _ in range(n)]

    while len(toks) < length:
        kind = kinds[int(rng.choice(len(kinds), p=probs))]
        gap = int(rng.integers(GAP_RANGE[0], GAP_RANGE[1] + 1))
        if kind in ("skip", "verbobj") and len(pool) < gap:
            kind = "bigram"
        if kind == "induction" and pending is None:
            run = int(rng.integers(RUN_RANGE[0], RUN_RANGE[1] + 1))
            if len(pool) < run:
                kind = "bigram"
        start = len(toks)
        if kind == "bigram":
            name = NAMES[int(rng.integers(len(NAMES)))]
            toks += [name, _choice(rng, BIGRAMS[name])]
            targets.append(Target(start, "bigram", dict(BIGRAMS[name]), start))
        elif kind == "skip":
            place = PLACES[int(rng.integers(len(PLACES)))]
            adj = ADJECTIVES[int(rng.integers(len(ADJECTIVES)))]
            dist = skip_distribution(place, adj)
            toks += [place, *fill(gap), adj, _choice(rng, dist)]
            targets.append(Target(start + gap + 1, "skip", dist, start))
        elif kind == "verbobj":
            act = ACTIVITIES[int(rng.integers(len(ACTIVITIES)))]
            dist = verbobj_distribution(act)
            toks += [act, *fill(gap), "the", _choice(rng, dist)]
            targets.append(Target(start + gap + 1, "verbobj", dist, start))
        elif pending is None:
            pending = fill(run)
            pending_at = start
            toks += pending
        else:
            toks += pending
            for i in range(len(pending) - 1):
                targets.append(
                    Target(start + i, "induction", {pending[i + 1]: 1.0}, pending_at + i + 1)
                )
            pending = None
    toks = toks[:length]
    return Document(toks, [t for t in targets if t.pos + 1 < length])


def sample_documents(seed: int, n: int, length: int = 64) -> list[Document]:
    """Sample ``n`` documents from a generator seeded with ``seed`` (deterministic)."""
    rng = np.random.default_rng(seed)
    return [sample_document(rng, length) for _ in range(n)]


def describe_rules() -> dict[str, dict]:
    """Plain description of each rule: its statement, exact probabilities and expected circuit."""
    return {
        "bigram": {
            "rule": "NAME -> VERB: each name is followed by a verb.",
            "probabilities": BIGRAMS,
            "expected_circuit": "direct path: token embedding -> unembedding (no attention needed).",
        },
        "skip": {
            "rule": "PLACE f.. ADJ -> CONNECTOR, 1-4 fillers between place and adjective.",
            "probabilities": {
                f"{p} .. {a}": {"mode": skip_word(p, a), "p_mode": P_SKIP,
                                "p_each_other": round((1 - P_SKIP) / 3, 4)}
                for p in PLACES for a in ADJECTIVES
            },
            "expected_circuit": "skip-trigram head: the adjective attends to the place; the OV "
            "circuit maps the place's group, the direct path the adjective's group.",
        },
        "verbobj": {
            "rule": "ACTIVITY f.. the -> VENUE, 1-4 fillers between activity and 'the'.",
            "probabilities": {a: {"mode": VENUE_OF[a], "p_mode": P_VERBOBJ,
                                  "p_each_other": round((1 - P_VERBOBJ) / 5, 4)}
                              for a in ACTIVITIES},
            "expected_circuit": "a head attends from 'the' to the activity and copies its venue.",
        },
        "induction": {
            "rule": "a run of 2-5 fresh fillers A B .. is later repeated; after the repeated A "
            "comes B (fillers never repeat otherwise).",
            "probabilities": {"p_B": 1.0},
            "expected_circuit": "previous-token head in layer 0 writes 'my previous token was A' "
            "into B; an induction head in layer 1 attends from the second A to B (K-composition) "
            "and copies it. Impossible with a single attention layer.",
        },
    }
