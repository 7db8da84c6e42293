"""Single-run readouts: probabilities, top-k tokens, a patched cell, attention patterns."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from patchlab.core.errors import InputError
from patchlab.core.pairs import PromptPair
from patchlab.core.targets import get_target
from patchlab.engine.context import hook_name, row_shape, source_and_base
from patchlab.engine.generic import set_cells
from patchlab.engine.quantities import last_quantities, top_k
from patchlab.engine.tokens import TokenizedPair, tokenize_pair


def _summary(model: Any, last: torch.Tensor, tp: TokenizedPair, tokens: list[str], k: int) -> dict[str, Any]:
    q = last_quantities(last[None], tp.answer_id, tp.wrong_id)
    out: dict[str, Any] = {name: float(v[0]) for name, v in q.items()}
    out["top_k"] = [[tok, p] for tok, p in top_k(last, model, k)]
    out["tokens"] = list(tokens)
    return out


def run_readout(model: Any, pair: PromptPair, k: int = 10) -> dict[str, dict[str, Any]]:
    """P(answer), P(wrong), logit difference and top-``k`` tokens of the clean and corrupted runs."""
    tp = tokenize_pair(model, pair)
    out = {}
    with torch.inference_mode():
        for which, toks, strs in (("clean", tp.clean, tp.clean_str), ("corrupted", tp.corrupted, tp.corrupted_str)):
            out[which] = _summary(model, model(toks)[0, -1], tp, strs, k)
    return out


def patched_readout(
    model: Any,
    pair: PromptPair,
    *,
    target: str,
    index: tuple[int, ...],
    direction: str = "denoise",
    k: int = 10,
) -> dict[str, Any]:
    """The same readout for one patched cell (``index`` in the target's axis order)."""
    tgt = get_target(target)
    tp = tokenize_pair(model, pair)
    shape = (int(model.cfg.n_layers), *row_shape(model, tgt, tp.n_pos))
    if len(index) != len(shape):
        raise InputError(f"A {tgt.name} cell has {len(shape)} indices ({', '.join(tgt.axes)}), got {tuple(index)}.")
    if any(not 0 <= int(i) < n for i, n in zip(index, shape)):
        raise InputError(f"The cell {tuple(index)} is outside the {tgt.name} grid of shape {shape}.")
    src_run, base_run = source_and_base(direction)
    base, src_toks = tp.tokens(base_run), tp.tokens(src_run)
    name = hook_name(tgt, int(index[0]))
    cells = torch.tensor([list(index[1:])], dtype=torch.long, device=base.device)
    with torch.inference_mode():
        _, cache = model.run_with_cache(src_toks, names_filter=lambda n: n == name)
        src = cache[name]

        def hook(act, hook):  # noqa: ARG001
            set_cells(act, src, tgt.axes, tgt.act, cells)
            return act

        logits = model.run_with_hooks(base, fwd_hooks=[(name, hook)])
    strs = tp.clean_str if base_run == "clean" else tp.corrupted_str
    return _summary(model, logits[0, -1], tp, strs, k)


def attention_patterns(model: Any, pair: PromptPair, layer: int, head: int) -> dict[str, Any]:
    """Attention pattern ``[dest, src]`` of one head on both prompts."""
    tp = tokenize_pair(model, pair)
    name = f"blocks.{int(layer)}.attn.hook_pattern"
    out: dict[str, Any] = {"clean_tokens": tp.clean_str, "corrupted_tokens": tp.corrupted_str}
    with torch.inference_mode():
        for which, toks in (("clean", tp.clean), ("corrupted", tp.corrupted)):
            _, cache = model.run_with_cache(toks, names_filter=lambda n: n == name)
            out[which] = cache[name][0, int(head)].float().cpu().numpy().copy()
    return out


def suggest_answers(model: Any, prompt: str, k: int = 8) -> list[tuple[str, float]]:
    """The model's top-``k`` next tokens after ``prompt`` (answer suggestions)."""
    if not prompt.strip():
        return []
    with torch.inference_mode():
        last = model(model.to_tokens(prompt))[0, -1]
    return top_k(last, model, k)


def as_float_array(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)
