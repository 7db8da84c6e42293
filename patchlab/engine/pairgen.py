"""Generated prompt pairs for a model: the toy language's own sampler, or a template."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from patchlab.core.errors import InputError
from patchlab.core.pairs import PromptPair
from patchlab.core.templates import TEMPLATES, Template, generate
from patchlab.engine.embedded import is_embedded
from patchlab.toy.language import RULES
from patchlab.toy.pairs import make_pair, make_pairs


def _name(model_or_name: Any) -> str:
    if isinstance(model_or_name, str) or model_or_name is None:
        return model_or_name or ""
    from patchlab.engine.loading import model_info  # noqa: PLC0415 - only for a loaded model

    return model_info(model_or_name).name


def available_generators(model_or_name: Any) -> list[str]:
    """Rule and template names :func:`generate_pairs` accepts for this model, best first."""
    toy = is_embedded(_name(model_or_name))
    return [*RULES, *TEMPLATES] if toy else list(TEMPLATES)


def single_token_words(model: Any, template: Template) -> Template:
    """The template with each slot's words cut to those that are one token after a space."""
    def one(word: str) -> bool:
        return int(model.to_tokens(" " + word, prepend_bos=False).shape[-1]) == 1

    kept = {slot: [w for w in words if one(w)] for slot, words in template.slots.items()}
    empty = [s for s, w in kept.items() if not w]
    if empty:
        raise InputError(f"No word of the slot(s) {', '.join(empty)} of template {template.name!r} is a "
                         "single token for this model's tokenizer; give word lists that are.")
    return template.with_words(kept)


def _toy_pairs(rule: str, n: int, seed: int, same_length: bool) -> list[PromptPair]:
    if not same_length:
        return make_pairs(rule, n, seed)
    # the toy tokenizer splits on whitespace: equal word counts are equal token counts
    rng = np.random.default_rng(seed)
    first = make_pair(rule, rng)
    want, pairs = len(first.clean.split()), [first]
    for _ in range(1000 * n):
        if len(pairs) == n:
            break
        pair = make_pair(rule, rng)
        if len(pair.clean.split()) == want:
            pairs.append(pair)
    return pairs


def generate_pairs(model_or_name: Any, rule_or_template: str | Template, n: int = 50, seed: int = 0,
                   same_length: bool = False) -> list[PromptPair]:
    """``n`` fresh prompt pairs for a model, reproducible from ``seed``.

    Parameters
    ----------
    model_or_name : TransformerBridge or str
        A loaded model or a model name. A loaded model also cuts template word lists to words
        that are single tokens for its tokenizer, so every pair has single-token answers and all
        pairs of one template have the same token length.
    rule_or_template : str or Template
        For the embedded toy models, a rule of the toy language (``bigram``, ``skip``,
        ``verbobj``, ``induction``: sampled by :mod:`patchlab.toy.pairs`, answers from the
        language's own rules); for any model, a built-in template name (``ioi``) or a
        :class:`patchlab.core.templates.Template`.
    n : int
        Number of pairs.
    seed : int
        Seed; the same arguments give the same pairs.
    same_length : bool
        Toy rules: keep only pairs with the token length of the first one drawn, so a target
        with a position axis can run on all of them (templates already give one length).

    Returns
    -------
    list of PromptPair
        Named ``<rule>-1``... and grouped by the rule or template name.
    """
    if n < 1:
        raise InputError(f"Ask for at least one pair (got n={n}).")
    name = _name(model_or_name)
    if isinstance(rule_or_template, str) and rule_or_template in RULES:
        if not is_embedded(name):
            raise InputError(f"{rule_or_template!r} is a rule of the embedded toy models' language; for "
                             f"{name or 'this model'} use a template ({', '.join(TEMPLATES)}).")
        pairs = _toy_pairs(rule_or_template, n, seed, same_length)
        return [dataclasses.replace(p, name=f"{rule_or_template}-{i + 1}", group=rule_or_template)
                for i, p in enumerate(pairs)]
    if isinstance(rule_or_template, str):
        if rule_or_template not in TEMPLATES:
            raise InputError(f"No rule or template {rule_or_template!r} for {name or 'this model'}. "
                             f"Choose one of: {', '.join(available_generators(model_or_name))}.")
        template = TEMPLATES[rule_or_template]
    elif isinstance(rule_or_template, Template):
        template = rule_or_template
    else:
        raise InputError(f"Expected a rule name or a Template, got {type(rule_or_template).__name__}.")
    if not isinstance(model_or_name, str) and hasattr(model_or_name, "to_tokens"):
        template = single_token_words(model_or_name, template)
    return generate(template, n, seed)
