"""Ablated text: the effect on a target at one position of removing each earlier token in turn."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from patchlab._version import __version__
from patchlab.core.errors import InputError
from patchlab.core.text_result import DocScores, TokenScores
from patchlab.engine.text.corpus import Doc
from patchlab.engine.text.losses import model_meta
from patchlab.engine.text.stream import bos_id, tokenize_docs
from patchlab.engine.text.targets import parse_target, read_target

METHODS = ("delete", "replace", "mask")


def _mask_hooks(model: Any, js: list[int]) -> list:
    """Block attention to key ``js[r]`` from every later query, in row ``r``, in every layer.

    Scores are set to -inf before the softmax; where a bridge ignores edits of the scores (the
    embedded models' native attention), the pattern is edited instead (zeroed and renormalised).
    Both edits agree, so running both is exact either way.
    """
    rows = torch.arange(len(js))
    cols = torch.tensor(js)

    def scores(s, hook):
        q = torch.arange(s.shape[-2], device=s.device)
        later = q[None, :] > cols[:, None].to(s.device)  # [rows, q]
        sel = s[rows, :, :, cols]  # [rows, head, q]
        s[rows, :, :, cols] = torch.where(later[:, None, :], torch.full_like(sel, float("-inf")), sel)
        return s

    def pattern(p, hook):
        q = torch.arange(p.shape[-2], device=p.device)
        later = q[None, :] > cols[:, None].to(p.device)
        sel = p[rows, :, :, cols]
        p[rows, :, :, cols] = torch.where(later[:, None, :], torch.zeros_like(sel), sel)
        return p / p.sum(-1, keepdim=True)

    hooks = []
    for layer in range(int(model.cfg.n_layers)):
        hooks += [(f"blocks.{layer}.attn.hook_attn_scores", scores), (f"blocks.{layer}.attn.hook_pattern", pattern)]
    return hooks


def token_ablation(model: Any, text: str, position: int, target: Any, method: str = "delete",
                   *, replacement: str | None = None) -> TokenScores:
    """Remove each earlier token in turn and measure the change of a target at ``position``.

    Parameters
    ----------
    model : TransformerBridge
    text : str
        The text (the model's BOS is prepended when it uses one; BOS is never ablated).
    position : int
        Token index in the tokenised text (BOS = 0; negative counts from the end, -1 = last).
    target : str or tuple
        ``"logprob: TOKEN"``, ``"logit: TOKEN"`` (the next-token prediction at ``position``),
        ``"head: L1H3"`` (the head's output norm there) or ``"neuron: L0N12"``.
    method : {"delete", "replace", "mask"}
        ``delete`` drops the token (later tokens move up one position); ``replace`` swaps it for
        ``replacement`` (default: the tokenizer's unknown, else pad, else BOS token); ``mask``
        blocks attention to it from every later position in every layer.

    Returns
    -------
    TokenScores
        One document: ``values[j]`` = target with token ``j`` ablated minus the target on the
        full text (NaN for BOS and for tokens at or after ``position``); ``meta["base_value"]``.
    """
    t0 = time.perf_counter()
    if method not in METHODS:
        raise InputError(f"Unknown method {method!r}: use delete, replace or mask.")
    if not isinstance(text, str) or not text.strip():
        raise InputError("Give a non-empty text.")
    tgt = parse_target(model, target)
    dt = tokenize_docs(model, [Doc(0, text)])[0]
    ids, n = dt.ids, len(dt.ids)
    if n > int(model.cfg.n_ctx):
        raise InputError(f"The text is {n} tokens, longer than the model's context ({int(model.cfg.n_ctx)}). Shorten it.")
    pos = position + n if isinstance(position, int) and position < 0 else position
    first = 1 if bos_id(model) is not None else 0
    if not isinstance(pos, int) or not 0 <= pos < n:
        raise InputError(f"Position {position} is outside the text: the "
                         f"text has {n} tokens (0-{n - 1}"
                         + (", 0 is BOS" if first else "") + f"): {dt.tokens}.")
    js = list(range(first, pos))
    if not js:
        raise InputError(f"Position {position} has no earlier token to ablate (tokens: {dt.tokens}).")
    base_tok = torch.tensor([ids], device=model.cfg.device)
    base = float(read_target(model, tgt, base_tok)[0, pos])
    meta_extra: dict[str, Any] = {}
    if method == "delete":
        rows = torch.tensor([ids[:j] + ids[j + 1:] for j in js], device=model.cfg.device)
        vals = read_target(model, tgt, rows)[:, pos - 1]
    elif method == "replace":
        rep_id = _replacement_id(model, replacement)
        meta_extra["replacement"] = model.tokenizer.decode([rep_id])
        rows = torch.tensor([ids[:j] + [rep_id] + ids[j + 1:] for j in js], device=model.cfg.device)
        vals = read_target(model, tgt, rows)[:, pos]
    else:
        rows = base_tok.repeat(len(js), 1)
        vals = read_target(model, tgt, rows, fwd_hooks=_mask_hooks(model, js))[:, pos]
    values = np.full(n, np.nan)
    values[js] = vals.cpu().numpy() - base
    meta = {"kind": "token_ablation", "method": method, "target": tgt.label, "position": pos,
            "position_token": dt.tokens[pos], "base_value": base,
            "value_label": f"change of {tgt.label} at position {pos} when the token is {method}d"
            if method != "mask" else f"change of {tgt.label} at position {pos} when the token is masked",
            **meta_extra, **model_meta(model), "elapsed_s": time.perf_counter() - t0,
            "patchlab_version": __version__}
    return TokenScores([DocScores(dt.tokens, values, 0, 0, 1)], meta)


def _replacement_id(model: Any, replacement: str | None) -> int:
    tok = model.tokenizer
    if replacement is not None:
        from patchlab.engine.tokens import single_token_id

        return single_token_id(model, replacement, "replacement token")
    for cand in (tok.unk_token_id, tok.pad_token_id, tok.bos_token_id, tok.eos_token_id):
        if cand is not None:
            return int(cand)
    raise InputError("This tokenizer has no unknown, pad or BOS token: give replacement=' the' or use "
                     "method='delete' or 'mask'.")
