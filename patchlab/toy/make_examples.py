"""Write the built-in example pairs of the toy models to ``resources/examples/<model>.jsonl``.

Usage::

    python -m patchlab.toy.make_examples --models resources/models --out resources/examples

For each model and rule it samples fresh pairs (:mod:`patchlab.toy.pairs`) and keeps the first
ones the model gets right on the clean prompt (top-1 = answer), recording the measured clean
P(answer) and corrupted P(wrong) in the description. Where a model cannot solve a rule (a
1-layer model and induction) it keeps the best pairs it found and says so.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from patchlab.toy.language import RULES
from patchlab.toy.pairs import make_pairs

PER_RULE = 4
WHAT = {
    "bigram": "Bigram: the name decides the verb (direct path).",
    "skip": "Skip-trigram: the earlier place and the adjective decide the connector.",
    "verbobj": "Verb-object: the earlier activity decides the venue after 'the'.",
    "induction": "Induction: the repeated filler A was followed by B earlier, so B comes next.",
}


@torch.no_grad()
def _probs(bridge, text: str, token: str) -> tuple[float, bool]:
    logits = bridge(bridge.to_tokens(text))[0, -1]
    probs = logits.softmax(-1)
    tok = int(bridge.to_tokens(token, prepend_bos=False)[0, 0])
    return float(probs[tok]), int(probs.argmax()) == tok


def select(bridge, model_name: str, seed: int = 2024) -> list[dict]:
    """Pick ``PER_RULE`` example pairs per rule for ``bridge`` and return them as JSON rows."""
    rows = []
    for r_i, rule in enumerate(RULES):
        scored = []
        for i, pair in enumerate(make_pairs(rule, 60, seed=seed + r_i)):
            p_clean, top = _probs(bridge, pair.clean, pair.answer)
            p_wrong, top_c = _probs(bridge, pair.corrupted, pair.wrong)
            scored.append((top and top_c, p_clean, i, pair, p_wrong))
        good = [s for s in scored if s[0]]
        chosen = good[:PER_RULE] if len(good) >= PER_RULE else sorted(
            scored, key=lambda s: -s[1])[:PER_RULE]
        for k, (ok, p_clean, _, pair, p_wrong) in enumerate(chosen, start=1):
            note = "" if ok else (" The model does NOT solve this rule (its top-1 is another "
                                  "token): a negative control.")
            row = {
                "model": model_name, "name": f"{rule}-{k}", "rule": rule,
                "description": f"{WHAT[rule]} Clean P(answer) = {p_clean:.3f}; corrupted "
                               f"P(wrong) = {p_wrong:.3f} (measured by make_examples).{note}",
                **pair.to_dict(),
            }
            rows.append((not ok, row))
    # lead with the rules the model solves, the most structured first (induction), so the
    # first example (what the app and CLI open with) shows a circuit worth looking at
    order = {rule: i for i, rule in enumerate(("induction", "skip", "verbobj", "bigram"))}
    rows.sort(key=lambda r: (r[0] and r[1]["rule"] == "induction", order[r[1]["rule"]]))
    return [row for _, row in rows]


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path("resources/models"))
    parser.add_argument("--out", type=Path, default=Path("resources/examples"))
    args = parser.parse_args(argv)
    from patchlab.toy.io import load_bridge

    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    for folder in sorted(p for p in args.models.iterdir() if (p / "config.json").is_file()):
        rows = select(load_bridge(folder, name=folder.name), folder.name)
        path = args.out / f"{folder.name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        print(f"{path}: {len(rows)} examples")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
