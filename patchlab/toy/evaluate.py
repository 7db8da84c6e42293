"""Measure a toy model: per-rule accuracy on held-out text and attention-pattern head scores."""

from __future__ import annotations

import numpy as np
import torch

from patchlab.toy.language import FILLERS, RULES, Document, vocabulary
from patchlab.toy.specs import SPECS, full_config

IDS = {w: i for i, w in enumerate(vocabulary())}


@torch.no_grad()
def rule_accuracy(bridge, docs: list[Document], batch: int = 200) -> dict[str, dict]:
    """Top-1 accuracy and mean probabilities on every rule target of ``docs``.

    Parameters
    ----------
    bridge : TransformerBridge
        The model.
    docs : list of Document
        Held-out documents (all the same length).
    batch : int
        Documents per forward pass.

    Returns
    -------
    dict
        ``rule -> {"n", "top1_accuracy", "mean_prob", "true_prob"}`` where ``top1_accuracy`` is
        the fraction of targets where the model's most likely token is the rule's most likely
        token, ``mean_prob`` the model's mean probability of that token and ``true_prob`` its
        mean probability under the generator.
    """
    stats = {r: {"hit": [], "p": [], "true": []} for r in RULES}
    for start in range(0, len(docs), batch):
        chunk = docs[start:start + batch]
        toks = torch.tensor([[IDS[t] for t in d.tokens] for d in chunk])
        probs = bridge(toks).softmax(-1)
        top = probs.argmax(-1)
        for i, doc in enumerate(chunk):
            for t in doc.targets:
                mode = IDS[t.mode]
                s = stats[t.rule]
                s["hit"].append(int(top[i, t.pos]) == mode)
                s["p"].append(float(probs[i, t.pos, mode]))
                s["true"].append(t.dist[t.mode])
    return {
        r: {
            "n": len(s["hit"]),
            "top1_accuracy": round(float(np.mean(s["hit"])), 4) if s["hit"] else None,
            "mean_prob": round(float(np.mean(s["p"])), 4) if s["p"] else None,
            "true_prob": round(float(np.mean(s["true"])), 4) if s["true"] else None,
        }
        for r, s in stats.items()
    }


def repeated_random_tokens(seed: int, n: int = 20, half: int = 20) -> torch.Tensor:
    """``[n, 1 + 2*half]`` ids: ``<bos>`` then ``half`` distinct random fillers, repeated."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        run = [IDS[f] for f in rng.choice(FILLERS, size=half, replace=False)]
        rows.append([IDS["<bos>"], *run, *run])
    return torch.tensor(rows)


@torch.no_grad()
def patterns(bridge, tokens: torch.Tensor) -> list[torch.Tensor]:
    """Attention patterns ``[batch, head, q, k]`` of every layer."""
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(bridge.cfg.n_layers)]
    _, cache = bridge.run_with_cache(tokens, names_filter=lambda n: n in names)
    return [cache[n] for n in names]


def sequence_scores(bridge, seed: int = 0, half: int = 20) -> dict[str, np.ndarray]:
    """Previous-token and induction scores ``[layer, head]`` on repeated random fillers.

    The previous-token score is the mean attention from each position to the one before it;
    the induction score the mean attention from each second-half position to the token after
    its earlier copy.
    """
    toks = repeated_random_tokens(seed, half=half)
    prev, ind = [], []
    q2 = torch.arange(half + 1, 2 * half + 1)
    for pat in patterns(bridge, toks):
        q = torch.arange(1, pat.shape[-1])
        prev.append(pat[:, :, q, q - 1].mean((0, 2)).numpy())
        ind.append(pat[:, :, q2, q2 - half + 1].mean((0, 2)).numpy())
    return {"previous_token": np.array(prev), "induction": np.array(ind)}


def rule_attention(bridge, docs: list[Document], rule: str, offset: int = 0) -> np.ndarray:
    """Mean attention ``[layer, head]`` from each ``rule`` query token to its key token.

    ``offset=1`` measures attention to the token right after the key instead (where a
    previous-token head has copied the key: a two-hop route to the same information).
    """
    toks = torch.tensor([[IDS[t] for t in d.tokens] for d in docs])
    pats = patterns(bridge, toks)
    out = np.zeros((len(pats), pats[0].shape[1]))
    count = 0
    for i, doc in enumerate(docs):
        for t in doc.targets:
            if t.rule != rule:
                continue
            count += 1
            for layer, pat in enumerate(pats):
                if t.key + offset < t.pos:
                    out[layer] += pat[i, :, t.pos, t.key + offset].numpy()
    return out / max(count, 1)


def _best(scores: np.ndarray, layer: int | None = None) -> tuple[str, float]:
    s = scores.copy()
    if layer is not None:
        mask = np.full_like(s, -np.inf)
        mask[layer] = 0
        s = s + mask
    layer_i, head = np.unravel_index(int(np.argmax(s)), s.shape)
    return f"L{layer_i}H{head}", round(float(scores[layer_i, head]), 3)


def make_card(name: str, description: str, model_dir, info: dict, heldout: list[Document]) -> dict:
    """Measure the saved model in ``model_dir`` and return its card (a JSON-able dict)."""
    from patchlab.toy.io import load_bridge
    from patchlab.toy.language import describe_rules

    bridge = load_bridge(model_dir, name=name)
    acc = rule_accuracy(bridge, heldout)
    seq = sequence_scores(bridge)
    sub = heldout[:300]
    heads = {
        "previous_token": seq["previous_token"],
        "induction": seq["induction"],
        "skip_query_to_place": rule_attention(bridge, sub, "skip"),
        "skip_query_to_after_place": rule_attention(bridge, sub, "skip", offset=1),
        "verbobj_query_to_activity": rule_attention(bridge, sub, "verbobj"),
    }
    n_layers = bridge.cfg.n_layers
    found = {
        "previous_token_head": _best(heads["previous_token"], 0),
        "skip_trigram_head": _best(np.maximum(heads["skip_query_to_place"], heads["skip_query_to_after_place"])),
        "verb_object_head": _best(heads["verbobj_query_to_activity"]),
    }
    if n_layers > 1:
        found["induction_head"] = _best(heads["induction"], n_layers - 1)
    circuits = [f"{k.replace('_', ' ')}: {h} (score {s})" for k, (h, s) in found.items()]
    return {
        "name": name,
        "description": description,
        "architecture": full_config(name),
        "training": {**info, "data": "documents sampled from patchlab.toy.language "
                     "(seeded); loss on every next token"},
        "rules": describe_rules(),
        "evaluation": {"heldout_documents": len(heldout), "per_rule": acc},
        "head_scores": {k: np.round(v, 3).tolist() for k, v in heads.items()},
        "circuits_found": circuits,
        "found_heads": {k: v[0] for k, v in found.items()},
        "notes": SPECS[name].get("notes", []),
    }
