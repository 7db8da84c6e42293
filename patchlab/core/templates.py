"""Prompt-pair templates: text with ``{SLOTS}``, word lists, and rules for the answers.

A :class:`Template` holds a clean and a corrupted text over the same slots, the answer and the
wrong answer as texts over those slots, and groups of slots that must take different words.
:func:`generate` fills it ``n`` times from a seeded generator. :data:`IOI` is the indirect-object
identification template of Wang et al. (2022) for GPT-2: names, places and objects from their
dataset (single GPT-2 tokens with a leading space). NumPy + stdlib only.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from patchlab.core.errors import InputError
from patchlab.core.pairs import PromptPair


def _slots_of(text: str) -> set[str]:
    try:
        return {name for _, name, _, _ in string.Formatter().parse(text) if name}
    except ValueError as exc:
        raise InputError(f"The template text {text!r} is malformed ({exc}); write slots as {{NAME}}.") from None


@dataclass(frozen=True)
class Template:
    """A prompt-pair template.

    Parameters
    ----------
    clean, corrupted : str
        Texts with ``{SLOT}`` placeholders, e.g. ``"When {IO} and {S} went to the {PLACE}, {S}
        gave a {OBJECT} to"`` and the same with ``{IO}`` as the giver. Use the same slots in
        words of the same token length so both prompts line up.
    answer, wrong : str
        The correct and the competing next token as texts over the slots (``" {IO}"``).
    slots : mapping of str to sequence of str
        The word list of each slot.
    distinct : sequence of sequences of str
        Groups of slots that must take different words (e.g. ``[("IO", "S")]``); slots of one
        group share a word list.
    name : str
        Short name; pairs are named ``name-1``, ``name-2``... and grouped under ``name``.
    """

    clean: str
    corrupted: str
    answer: str
    wrong: str
    slots: Mapping[str, Sequence[str]]
    distinct: Sequence[Sequence[str]] = ()
    name: str = "template"
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        # one canonical form (tuples) so equal templates compare equal however they were built
        object.__setattr__(self, "slots", {str(k): tuple(v) for k, v in dict(self.slots).items()})
        object.__setattr__(self, "distinct", tuple(tuple(g) for g in self.distinct))

    def check(self) -> Template:
        """Raise :class:`InputError` when a slot has no word list, or a rule cannot be met."""
        used = set().union(*(_slots_of(t) for t in (self.clean, self.corrupted, self.answer, self.wrong)))
        missing = sorted(used - set(self.slots))
        if missing:
            raise InputError(f"The template {self.name!r} uses the slot(s) {', '.join(missing)} but gives no "
                             "word list for them.")
        for slot, words in self.slots.items():
            if not words:
                raise InputError(f"The slot {slot} of template {self.name!r} has no words.")
        for group in self.distinct:
            unknown = [s for s in group if s not in self.slots]
            if unknown:
                raise InputError(f"The distinct group {tuple(group)} names unknown slot(s) {', '.join(unknown)}.")
            lists = {tuple(self.slots[s]) for s in group}
            if len(lists) > 1:
                raise InputError(f"The slots {', '.join(group)} must differ, so they need one shared word list.")
            if len(set(next(iter(lists)))) < len(group):
                raise InputError(f"The slots {', '.join(group)} must differ but their list has only "
                                 f"{len(set(next(iter(lists))))} distinct word(s).")
        if self.clean == self.corrupted:
            raise InputError(f"The template {self.name!r} has the same clean and corrupted text.")
        return self

    def fill(self, words: Mapping[str, str], index: int = 0) -> PromptPair:
        """The pair for one assignment of words to slots."""
        return PromptPair(
            clean=self.clean.format(**words), corrupted=self.corrupted.format(**words),
            answer=self.answer.format(**words), wrong=self.wrong.format(**words),
            name=f"{self.name}-{index + 1}", group=self.name,
        )

    def to_dict(self) -> dict:
        return {"name": self.name, "clean": self.clean, "corrupted": self.corrupted, "answer": self.answer,
                "wrong": self.wrong, "slots": {k: list(v) for k, v in self.slots.items()},
                "distinct": [list(g) for g in self.distinct], "description": self.description}

    @classmethod
    def from_dict(cls, data: dict) -> Template:
        try:
            return cls(clean=data["clean"], corrupted=data["corrupted"], answer=data["answer"],
                       wrong=data["wrong"], slots={str(k): [str(w) for w in v] for k, v in data["slots"].items()},
                       distinct=[tuple(g) for g in data.get("distinct", ())], name=data.get("name", "template"),
                       description=data.get("description", ""))
        except (KeyError, TypeError, AttributeError) as exc:
            raise InputError(f"A template needs clean, corrupted, answer, wrong and slots ({exc}).") from None

    def with_words(self, slots: Mapping[str, Sequence[str]]) -> Template:
        """A copy with other word lists (e.g. filtered to a tokenizer's single tokens)."""
        return Template(self.clean, self.corrupted, self.answer, self.wrong, dict(slots),
                        self.distinct, self.name, self.description)


def generate(template: Template, n: int, seed: int = 0) -> list[PromptPair]:
    """Fill ``template`` ``n`` times with words drawn from a generator seeded with ``seed``.

    Slots of a ``distinct`` group are drawn without replacement; the others independently.
    The same template, ``n`` and ``seed`` give the same pairs.
    """
    template.check()
    if n < 1:
        raise InputError(f"Ask for at least one pair (got n={n}).")
    rng = np.random.default_rng(seed)
    grouped = [list(g) for g in template.distinct]
    free = [s for s in template.slots if not any(s in g for g in grouped)]
    pairs = []
    for i in range(n):
        words: dict[str, str] = {}
        for group in grouped:
            pool = list(dict.fromkeys(template.slots[group[0]]))
            picks = rng.choice(len(pool), size=len(group), replace=False)
            words.update({s: pool[int(k)] for s, k in zip(group, picks)})
        for s in free:
            pool = list(template.slots[s])
            words[s] = pool[int(rng.integers(len(pool)))]
        pairs.append(template.fill(words, i).check())
    return pairs


def parse_slots(text: str) -> dict[str, list[str]]:
    """Word lists typed as one slot a line: ``NAME: Mary, John, Tom`` (commas or spaces)."""
    slots: dict[str, list[str]] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        name, sep, words = line.partition(":")
        if not sep or not name.strip().isidentifier():
            raise InputError(f"Word lists, line {n}: write 'SLOT: word, word, ...' (got {line.strip()!r}).")
        items = [w for w in words.replace(",", " ").split() if w]
        if not items:
            raise InputError(f"Word lists, line {n}: the slot {name.strip()} has no words.")
        slots[name.strip()] = items
    return slots


# Wang et al. (2022), "Interpretability in the Wild", ioi_dataset.py: single GPT-2 tokens
IOI_NAMES = (
    "Aaron", "Adam", "Alan", "Alex", "Alice", "Amy", "Anderson", "Andre", "Andrew", "Andy", "Anna",
    "Anthony", "Arthur", "Austin", "Blake", "Brandon", "Brian", "Carter", "Charles", "Charlie",
    "Christian", "Christopher", "Clark", "Cole", "Collins", "Connor", "Crew", "Crystal", "Daniel",
    "David", "Dean", "Edward", "Elizabeth", "Emily", "Eric", "Eva", "Ford", "Frank", "George",
    "Georgia", "Graham", "Grant", "Henry", "Ian", "Jack", "Jacob", "Jake", "James", "Jamie", "Jane",
    "Jason", "Jay", "Jennifer", "Jeremy", "Jessica", "John", "Jonathan", "Jordan", "Joseph",
    "Joshua", "Justin", "Kate", "Kelly", "Kevin", "Kyle", "Laura", "Leon", "Lewis", "Lisa", "Louis",
    "Luke", "Madison", "Marco", "Marcus", "Maria", "Mark", "Martin", "Mary", "Matthew", "Max",
    "Michael", "Michelle", "Morgan", "Patrick", "Paul", "Peter", "Prince", "Rachel", "Richard",
    "River", "Robert", "Roman", "Rose", "Ruby", "Russell", "Ryan", "Sarah", "Scott", "Sean",
    "Simon", "Stephen", "Steven", "Sullivan", "Taylor", "Thomas", "Tyler", "Victoria", "Warren",
    "William",
)
IOI_PLACES = ("store", "garden", "restaurant", "school", "hospital", "office", "house", "station")
IOI_OBJECTS = ("ring", "kiss", "bone", "basketball", "computer", "drink", "snack", "book")

IOI = Template(
    clean="When {IO} and {S} went to the {PLACE}, {S} gave a {OBJECT} to",
    corrupted="When {IO} and {S} went to the {PLACE}, {IO} gave a {OBJECT} to",
    answer=" {IO}",
    wrong=" {S}",
    slots={"IO": IOI_NAMES, "S": IOI_NAMES, "PLACE": IOI_PLACES, "OBJECT": IOI_OBJECTS},
    distinct=[("IO", "S")],
    name="ioi",
    description="Indirect object identification (Wang et al. 2022): the corrupted prompt makes the "
                "other name the giver, so its answer is the subject.",
)

#: Built-in templates by name.
TEMPLATES: dict[str, Template] = {"ioi": IOI}


def get_template(name: str) -> Template:
    if name not in TEMPLATES:
        raise InputError(f"No template {name!r}. Built in: {', '.join(TEMPLATES)}; or pass a Template.")
    return TEMPLATES[name]
