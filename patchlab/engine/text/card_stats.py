"""Measure the weight and text analyses on the embedded toy models and write them on their cards.

Usage::

    python -m patchlab.engine.text.card_stats --models resources/models

Adds (or replaces) one key, ``text_analyses``, in each toy card; nothing else is touched. Every
number is measured here on freshly sampled toy text (seeded), against the generator's ground
truth (which tokens are induction continuations).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
import torch

COMPARE_SEED, ABLATE_SEED, N_DOCS = 4242, 4243, 200


def _rules(corpus) -> dict[tuple[int, int], str]:
    return {(i, t.pos + 1): t.rule for i, d in enumerate(corpus.toy_docs) for t in d.targets}


def measure(models: Path) -> dict[str, dict]:
    """``card name -> text_analyses`` for toy-attn1 and toy-attn2."""
    from patchlab.engine.text.ablate import ablate
    from patchlab.engine.text.corpus import toy_corpus
    from patchlab.engine.text.losses import compare_models
    from patchlab.engine.weights import composition_scores
    from patchlab.toy.io import load_bridge

    a1, a2 = (load_bridge(models / n, name=n) for n in ("toy-attn1", "toy-attn2"))
    for m in (a1, a2):
        m.enable_compatibility_mode()  # what patchlab.load_model does by default
    corpus = toy_corpus(N_DOCS, seed=COMPARE_SEED)
    cmp_ = compare_models(a1, a2, corpus, floor=-5.0)
    rules = _rules(corpus)
    kinds = Counter(rules.get((h.doc, h.pos), "none") for h in cmp_.top(50))
    by_rule = {}
    for rule in ("bigram", "skip", "verbobj", "induction"):
        pos = [p for p, r in rules.items() if r == rule]
        by_rule[rule] = round(float(np.nanmean([cmp_.docs[d].values[p] for d, p in pos])), 4)
    comparison = {
        "what": "compare_models(toy-attn1, toy-attn2) on sampled toy text: per token max(logp_attn2, -5) - "
                "max(logp_attn1, -5)",
        "documents": N_DOCS, "seed": COMPARE_SEED, "tokens": cmp_.meta["n_tokens"],
        "top50_by_rule": dict(kinds), "top50_induction_fraction": kinds["induction"] / 50,
        "mean_difference": round(cmp_.mean(), 4), "mean_difference_by_rule": by_rule,
    }
    abl_corpus = toy_corpus(N_DOCS // 2, seed=ABLATE_SEED)
    abl = ablate(a2, abl_corpus, components="heads", method="mean")
    ind = [p for p, r in _rules(abl_corpus).items() if r == "induction"]
    on = abl.mean_on(ind)
    order = np.argsort(-on.ravel())
    n_h = on.shape[1]
    ablation = {
        "what": "mean ablation of each head of toy-attn2 over sampled toy text: mean loss change (nats)",
        "documents": N_DOCS // 2, "seed": ABLATE_SEED, "clean_loss": round(abl.meta["clean_loss"], 4),
        "all_tokens": {lab: round(v, 4) for lab, v, _, _ in abl.ranked()},
        "induction_tokens": {f"L{i // n_h}H{i % n_h}": round(float(on.ravel()[i]), 4) for i in order},
    }
    k = composition_scores(a2, "k")
    comp = {
        "what": "K-composition of each layer-0 head into each layer-1 head (TransformerLens's score), with "
                "the score of random Gaussian matrices of the same shapes",
        "baseline_mean": round(k.baseline_mean, 4), "baseline_p99": round(k.baseline_p99, 4),
        "top": [[s, d, round(v, 4)] for s, d, v in k.ranked(6)],
    }
    return {"toy-attn2": {"compare_with_toy_attn1": comparison, "head_ablation": ablation,
                          "k_composition": comp},
            "toy-attn1": {"compare_with_toy_attn2": comparison}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path("resources/models"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    for name, stats in measure(args.models).items():
        path = args.models / name / "card.json"
        card = json.loads(path.read_text())
        card["text_analyses"] = stats
        path.write_text(json.dumps(card, indent=2) + "\n")
        print(f"{path}: text_analyses written")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
