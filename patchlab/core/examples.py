"""Built-in example prompt pairs, read from ``resources/examples/*.jsonl`` (numpy/stdlib only).

Each line of a JSONL file is one example::

    {"model": "toy-attn2", "name": "induction-1", "rule": "induction",
     "description": "...", "clean": "...", "corrupted": "...", "answer": " B", "wrong": " C"}

``model`` tags which model the example is for; one file may hold several models.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from patchlab.core.errors import PairError
from patchlab.core.pairs import PromptPair
from patchlab.core.resources import resource_path

#: The model whose examples ``load_examples(None)`` returns (kept equal to the engine's default).
DEFAULT_EXAMPLES_MODEL = "toy-attn2"


@dataclass(frozen=True)
class Example:
    """A named built-in prompt pair.

    Parameters
    ----------
    name : str
        Short unique name, e.g. ``"ioi-1"``.
    rule : str
        The behaviour it exercises (``"induction"``, ``"ioi"``, ``"greater-than"``, ...).
    description : str
        What the pair tests, including the model's clean P(answer) where measured.
    pair : PromptPair
        The clean/corrupted prompts and the answer/wrong tokens.
    model : str
        Name of the model the example is for.
    """

    name: str
    rule: str
    description: str
    pair: PromptPair
    model: str


def _read(path) -> list[Example]:
    out = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            out.append(Example(name=row["name"], rule=row["rule"],
                               description=row.get("description", ""),
                               pair=PromptPair.from_dict(row), model=row["model"]))
        except (ValueError, KeyError, PairError) as exc:
            raise PairError(f"{path.name} line {lineno}: not a valid example ({exc}).") from exc
    return out


def all_examples() -> list[Example]:
    """Return every built-in example of every model, file by file."""
    folder = resource_path("examples")
    if not folder.is_dir():
        return []
    out: list[Example] = []
    for path in sorted(folder.glob("*.jsonl")):
        out.extend(_read(path))
    return out


def example_models() -> list[str]:
    """Names of the models that have built-in examples."""
    return sorted({e.model for e in all_examples()})


def load_examples(model_name: str | None = None) -> list[Example]:
    """Return the built-in examples for a model.

    Parameters
    ----------
    model_name : str, optional
        Model name as tagged in the files (``"toy-attn2"``, ``"toy-solu1"``, ``"gpt2"``).
        ``None`` means the default toy model. Unknown models give an empty list.

    Returns
    -------
    list of Example
    """
    name = DEFAULT_EXAMPLES_MODEL if model_name is None else model_name
    return [e for e in all_examples() if e.model == name]
